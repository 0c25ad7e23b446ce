"""The VGG conv stages (Simonyan & Zisserman 2015, torchvision's layout), shared by the VGG
classifiers and FCN-32s/16s/8s; SegNet's encoder follows the same table.

The variants differ only in how many 3x3 convs each of the 5 stages has (`CONFIGS`); stage i
has width `STAGE_WIDTHS[i]` (64 * 2**i capped at 512), scaled by `width / 64`.
Params: `stage1`..`stage5` (`conv1`, [`bn1`], `conv2`, ...).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import torch_conv
from jaxcv.models import common

ModuleDef = Any
CONFIGS = {"vgg11": (1, 1, 2, 2, 2), "vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
STAGE_WIDTHS = (64, 128, 256, 512, 512)


class ConvStage(nn.Module):
  """`num_convs` x (3x3 conv with bias, [norm], ReLU), then 2x2 max pool: halves H and W
  (`pool` False: no pool; `ceil_mode`: torch's, as SSD's third pool)."""
  num_convs: int
  features: int
  norm: Any = None  # a norm constructor (BatchNorm for the `_bn` variants), or None
  dtype: Any = jnp.float32
  pool: bool = True
  ceil_mode: bool = False

  @nn.compact
  def __call__(self, x):
    for i in range(1, self.num_convs + 1):
      x = torch_conv(self.features, 3, use_bias=True, dtype=self.dtype, name=f"conv{i}")(x)
      if self.norm is not None:
        x = self.norm(name=f"bn{i}")(x)
      x = nn.relu(x)
    return common.max_pool(x, 2, 2, ceil_mode=self.ceil_mode) if self.pool else x


def vgg_body(x: jax.Array, *, stage_sizes: Sequence[int], width: int,
             norm: Callable[[str], ModuleDef | None], dtype: Any = jnp.float32
             ) -> dict[str, jax.Array]:
  """VGG's conv stages, built inside the calling module's `nn.compact` method (parameters
  `stage1`.. at its top level). `norm(stage)`: a norm constructor or None (plain VGG).
  Returns `{"stage1": [B, H/2, W/2, width], ...}`, the pooled stage outputs, strides 2..32."""
  out = {}
  for i, (num_convs, base) in enumerate(zip(stage_sizes, STAGE_WIDTHS)):
    name = f"stage{i + 1}"
    x = out[name] = ConvStage(num_convs, base * width // 64, norm(name), dtype, name=name)(x)
  return out
