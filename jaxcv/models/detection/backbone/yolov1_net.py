"""YOLOv1's convolutional network (Redmon et al. 2016, "You Only Look Once", Figure 3): 24
convolutions, leaky ReLU (slope 0.1) after each, 1x1 reduction layers between 3x3 ones:

    stage1  conv1   7x7x64 /2                                    maxpool 2x2 /2
    stage2  conv2   3x3x192                                      maxpool 2x2 /2
    stage3  conv3..6    1x1x128, 3x3x256, 1x1x256, 3x3x512       maxpool 2x2 /2
    stage4  conv7..16   {1x1x256, 3x3x512} x 4, 1x1x512, 3x3x1024 maxpool 2x2 /2
    stage5  conv17..20  {1x1x512, 3x3x1024} x 2
    stage6  conv21..24  3x3x1024, 3x3x1024 /2, 3x3x1024, 3x3x1024

conv1..conv20 are the layers the paper pretrains on ImageNet; stage6 holds the four it adds
for detection. Built inside the detector's `nn.compact` method, so `stage1`..`stage6` are the
detector's top-level modules (params `stageK/conv{i}/conv/kernel`, `i` the paper's layer
number 1..24; `stageK/conv{i}/bn` with BatchNorm). Convolutions pad `k // 2` (darknet's
`pad=1`), so the six downsampling steps (conv1, the four max pools, conv22) divide the input
by 64: 448 -> 7.

`width` scales every width (64: the paper's; 8 gives 8..128 channels). `num_downsamplings`
(1..6, default 6) keeps the first that many downsampling steps and makes the later ones
identity (a pool is left out, conv22 gets stride 1), so a small input keeps a useful grid
(128 px at 16x: 8x8). `norm` None (the paper: conv with bias) or "batch" (BatchNorm before
the activation, as darknet's later yolov1 cfgs; BN for `frozen_stages` in inference mode).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import ConvNormAct
from jaxcv.layers.norm import batch_norm

# per stage: the (features, kernel, stride) of its convolutions, and whether a max pool ends it
STAGES = (
    (((64, 7, 2),), True),
    (((192, 3, 1),), True),
    (((128, 1, 1), (256, 3, 1), (256, 1, 1), (512, 3, 1)), True),
    (((256, 1, 1), (512, 3, 1)) * 4 + ((512, 1, 1), (1024, 3, 1)), True),
    (((512, 1, 1), (1024, 3, 1)) * 2, False),
    (((1024, 3, 1), (1024, 3, 2), (1024, 3, 1), (1024, 3, 1)), False),
)
STAGE_NAMES = tuple(f"stage{i + 1}" for i in range(len(STAGES)))
NUM_CONVS = sum(len(convs) for convs, _ in STAGES)          # 24
MAX_DOWNSAMPLINGS = 6                                       # total stride 64
NORMS = (None, "batch")
# He init for leaky ReLU (slope 0.1), fan in: the no-BatchNorm net keeps its scale through 24
# layers
leaky_init = nn.initializers.variance_scaling(2.0 / (1 + 0.1 ** 2), "fan_in", "normal")


def leaky(x: jax.Array) -> jax.Array:
  return jax.nn.leaky_relu(x, 0.1)


def out_channels(width: int) -> int:
  """Channels of the last feature map (1024 at the paper's width 64)."""
  return 1024 * width // 64


class YOLOv1Stage(nn.Module):
  """Convolutions `(features, kernel, stride, layer number)` then an optional 2x2 max pool."""
  convs: Sequence[tuple[int, int, int, int]]
  pool: bool
  norm: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for features, kernel, stride, index in self.convs:
      x = ConvNormAct(features, kernel, stride, norm=self.norm, act=leaky,
                      kernel_init=leaky_init, dtype=self.dtype, name=f"conv{index}")(x)
    if self.pool:
      x = nn.max_pool(x, (2, 2), (2, 2))
    return x


def yolov1_features(x: jax.Array, *, width: int = 64, norm: str | None = None,
                    num_downsamplings: int = MAX_DOWNSAMPLINGS, train: bool = False,
                    frozen_stages: Sequence[str] = (), dtype: Any = jnp.float32,
                    model: str = "YOLOv1") -> jax.Array:
  """`[B, H, W, 3]` -> the last map `[B, H / 2^d, W / 2^d, out_channels(width)]`, built in the
  calling module's compact method (module docstring); `d = num_downsamplings`."""
  if norm not in NORMS:
    raise ValueError(f"{model}: norm must be one of {list(NORMS)}; got {norm!r}")
  if not (isinstance(num_downsamplings, int) and 1 <= num_downsamplings <= MAX_DOWNSAMPLINGS):
    raise ValueError(f"{model}: num_downsamplings must be an int in 1..{MAX_DOWNSAMPLINGS}; "
                     f"got {num_downsamplings!r}")
  steps, index = 0, 0
  for name, (convs, pool) in zip(STAGE_NAMES, STAGES):
    layers = []
    for features, kernel, stride in convs:
      index += 1
      if stride > 1:
        steps += 1
        stride = stride if steps <= num_downsamplings else 1
      layers.append((features * width // 64, kernel, stride, index))
    if pool:
      steps += 1
      pool = steps <= num_downsamplings
    bn = batch_norm(train, name, frozen_stages, dtype) if norm == "batch" else None
    x = YOLOv1Stage(tuple(layers), pool, bn, dtype, name=name)(x)
  return x
