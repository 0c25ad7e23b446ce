"""SSDlite's MobileNetV3-Large feature extractor, torchvision's
`SSDLiteFeatureExtractorMobileNet` (from `_mobilenet_extractor`): six maps, finest first.

1. C4, the expansion output of the last strided block (`block13_expand`: the 112 -> 672 1x1
   conv + BN + Hardswish of features.13, stride 16; section 6.3 of the MobileNetV3 paper);
2. `last_conv` (stride 32: 960 channels, 480 with `reduced_tail`);
3.-6. four extra blocks (`_extra_block`, widths 512, 256, 256, 128): a 1x1 conv to half the
   width, a 3x3 stride-2 depthwise conv, a 1x1 conv to the width, each with BN and ReLU6.

Built inside the detector's `nn.compact` method, so that its modules are the detector's
top-level `stem`, `block1`..`block15`, `last_conv` (the parameter names of jaxcv's
`mobilenet_v3_large` classifier: its weights load into the detector as they are) and
`extra1`..`extra4` (`reduce`, `depthwise`, `project`; each `conv`, `bn`). For a 320x320
input the maps are 20, 10, 5, 3, 2, 1; the 3x3/2 convs with padding 1 take any map down to
1x1, so no input size is too small for the extra blocks (as torchvision).

`width_mult` scales the MobileNetV3 only (torchvision's builder passes it to
`mobilenet_v3_large`; the extractor's own `width_mult` stays 1.0, so the extra blocks keep
their widths). Init: torchvision's `_normal_init` (normal(0, 0.03) weights, zero biases) for
the stem, `last_conv` and the extra blocks; the inverted residual blocks keep jaxcv
MobileNetV3's kaiming fan-out init (`mobilenetv3.InvertedResidual` fixes it), where
torchvision re-initialises them normal(0, 0.03) when it builds SSDlite without an ImageNet
backbone (the init only matters for training from scratch).

`trainable_layers` (0..6) is torchvision's `_mobilenet_extractor`'s: the stages start at
features 0, 2, 4, 7, 13 (the strided blocks) and 16 (`last_conv`); the last that many train
and the modules before them get no gradient (their BatchNorm statistics still move in
training, as torch's `requires_grad_(False)`). The extra blocks always train.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import ConvNormAct
from jaxcv.models.mobilenetv3 import InvertedResidual, block_configs, is_cn

EXTRA_WIDTHS = (512, 256, 256, 128)
normal_init = nn.initializers.normal(0.03)  # torchvision's ssdlite `_normal_init`


def stage_starts(arch: str = "large") -> tuple[int, ...]:
  """torchvision's `stage_indices`: features index of the stem, each strided block and the
  last conv (Large: 0, 2, 4, 7, 13, 16)."""
  strided = [k for k, cn in enumerate(is_cn(arch), 1) if cn]
  return (0, *strided, len(is_cn(arch)) + 1)


def check_extractor(trainable_layers: int, model: str) -> None:
  stages = len(stage_starts())
  if not (isinstance(trainable_layers, int) and not isinstance(trainable_layers, bool)
          and 0 <= trainable_layers <= stages):
    raise ValueError(f"{model}: trainable_backbone_layers must be an int in [0, {stages}] "
                     f"(torchvision's); got {trainable_layers!r}")


def ssdlite_mobilenet_features(x: jax.Array, *, norm: Callable[[str], Any],
                               width_mult: float = 1.0, reduced_tail: bool = True,
                               trainable_layers: int = 6, dtype: Any = jnp.float32,
                               model: str = "SSDLite") -> list[jax.Array]:
  """The six SSDlite maps of `x` `[B, H, W, 3]` (see the module doc), built in the calling
  module's compact method; `norm(stage)` gives the BatchNorm constructor of a top-level
  module (its train / frozen mode)."""
  check_extractor(trainable_layers, model)
  blocks, _ = block_configs("large", width_mult, reduced_tail)
  starts = stage_starts()
  frozen = (len(blocks) + 2 if trainable_layers == 0
            else starts[len(starts) - trainable_layers])  # modules (features) before: no grad

  def grad(k, v):  # features.k's output
    return jax.lax.stop_gradient(v) if k < frozen else v

  conv = functools.partial(ConvNormAct, act=nn.hard_swish, kernel_init=normal_init, dtype=dtype)
  x = grad(0, conv(blocks[0].in_channels, 3, 2, norm=norm("stem"), name="stem")(x))
  c4 = None
  for k, cfg in enumerate(blocks, 1):
    x, expanded = InvertedResidual(cfg, norm(f"block{k}"), dtype, name=f"block{k}")(x)
    x = grad(k, x)
    if k == starts[-2]:  # the last strided block: C4 is its expansion output
      c4 = grad(k, expanded)
  x = grad(len(blocks) + 1, conv(6 * blocks[-1].out_channels, 1, norm=norm("last_conv"),
                                  name="last_conv")(x))
  maps = [c4, x]
  for k, width in enumerate(EXTRA_WIDTHS, 1):
    x = ExtraBlock(width, norm(f"extra{k}"), dtype, name=f"extra{k}")(x)
    maps.append(x)
  return maps


class ExtraBlock(nn.Module):
  """torchvision's ssdlite `_extra_block`: `reduce` (1x1 to `features // 2`), `depthwise`
  (3x3, stride 2, groups = channels), `project` (1x1 to `features`), each conv + BN + ReLU6
  (torch's Sequential 0, 1, 2)."""
  features: int
  norm: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(ConvNormAct, norm=self.norm, act=jax.nn.relu6,
                             kernel_init=normal_init, dtype=self.dtype)
    half = self.features // 2
    x = conv(half, 1, name="reduce")(x)
    x = conv(half, 3, 2, groups=half, name="depthwise")(x)
    return conv(self.features, 1, name="project")(x)
