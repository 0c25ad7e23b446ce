"""Feature Pyramid Network (Lin et al. 2017) exactly as torchvision's
`ops.FeaturePyramidNetwork` with `LastLevelMaxPool` or `LastLevelP6P7`.

For input maps `C_2 .. C_k` (finest first): a lateral 1x1 conv per level (`inner{i}`), a
top-down pathway that adds the nearest-neighbour upsampled coarser sum (torch
`F.interpolate(mode="nearest", size=...)`), and a 3x3 conv per level (`layer{i}`) on each
sum. Extra levels: `"maxpool"` appends `max_pool(P_k, kernel 1, stride 2)` (Faster R-CNN's
"pool" level, P6); `"p6p7"` appends P6 = 3x3/2 conv of P_k and P7 = 3x3/2 conv of ReLU(P6)
(torchvision's `LastLevelP6P7(256, 256)`: RetinaNet v1, FCOS); `"p6p7_c5"` the same with P6
on the last input map C_k (`LastLevelP6P7(2048, 256)`: RetinaNet v2).

`norm`: None (v1: convs with bias) or a norm constructor (`jaxcv.layers.norm_layer`, v2's
BatchNorm: convs without bias, then the norm). Params: `inner{i}/conv`, `inner{i}/bn`,
`layer{i}/conv`, `layer{i}/bn` for i = 0..k-2 (torchvision's `inner_blocks.i.0/1`,
`layer_blocks.i.0/1`), `p6`, `p7`.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import ConvNormAct, torch_conv
from jaxcv.layers.upsample import resize
from jaxcv.models import common

EXTRA_BLOCKS = ("maxpool", "p6p7", "p6p7_c5", None)

# torchvision's FPN convs: kaiming_uniform_(a=1) weights, zero bias.
kaiming_uniform_a1 = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


class FPN(nn.Module):
  """`features` (finest first, NHWC) -> list of `out_channels` maps, finest first, plus the
  extra levels. See the module docstring."""
  out_channels: int = 256
  extra_blocks: str | None = "maxpool"
  norm: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> list[jax.Array]:
    if self.extra_blocks not in EXTRA_BLOCKS:
      raise ValueError(f"FPN extra_blocks must be one of {list(EXTRA_BLOCKS)}; got "
                       f"{self.extra_blocks!r}")

    def block(i, kind, x):
      k = 1 if kind == "inner" else 3
      return ConvNormAct(self.out_channels, k, norm=self.norm, act=None,
                         kernel_init=kaiming_uniform_a1, dtype=self.dtype,
                         name=f"{kind}{i}")(x)

    last = len(features) - 1
    inner = block(last, "inner", features[last])
    results = [block(last, "layer", inner)]
    for i in range(last - 1, -1, -1):
      lateral = block(i, "inner", features[i])
      inner = lateral + resize(inner, lateral.shape[1:3], "nearest")
      results.insert(0, block(i, "layer", inner))
    if self.extra_blocks == "maxpool":
      results.append(common.max_pool(results[-1], 1, 2))
    elif self.extra_blocks in ("p6p7", "p6p7_c5"):
      src = results[-1] if self.extra_blocks == "p6p7" else features[last]
      p6 = torch_conv(self.out_channels, 3, 2, use_bias=True, dtype=self.dtype,
                      kernel_init=kaiming_uniform_a1, name="p6")(src)
      p7 = torch_conv(self.out_channels, 3, 2, use_bias=True, dtype=self.dtype,
                      kernel_init=kaiming_uniform_a1, name="p7")(nn.relu(p6))
      results += [p6, p7]
    return results
