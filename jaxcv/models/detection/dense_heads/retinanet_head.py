"""Dense heads shared over the FPN levels: torchvision's `RetinaNetHead` (Lin et al. 2017)
and the conv tower that RetinaNet's and FCOS's heads are made of.

`ConvTower`: `depth` 3x3 convs of the input's width, each followed by the norm (None: v1,
convs with bias; "group": v2's GroupNorm(32), convs without bias) and ReLU, weights
normal(std 0.01), biases 0 (torchvision's `Conv2dNormActivation` blocks `conv.i.0/1`).

`RetinaNetHead`: a classification tower ending in a 3x3 conv to `A * K` logits (bias
`-log((1 - prior) / prior)`, the prior-probability init that keeps the focal loss finite at
the start) and a regression tower ending in a 3x3 conv to `A * 4` deltas (bias 0). Outputs
flattened in torchvision's order (level, row, column, anchor): logits `[B, N, K]`, deltas
`[B, N, 4]` with `N = sum_l H_l W_l A`, float32 whatever the compute dtype. `K` is
torchvision's `num_classes`: the object classes plus a background column 0 that no anchor is
ever assigned to (its weights' layout; `jaxcv` detectors drop it at test time).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import ConvNormAct, torch_conv
from jaxcv.layers.norm import norm_layer

normal_001 = nn.initializers.normal(0.01)


class ConvTower(nn.Module):
  """`[B, H, W, C]` -> `[B, H, W, C]`: `depth` conv-norm-ReLU blocks `conv{i}` (submodules
  `conv`, `bn`). `conv_bias`: None for torchvision's rule (a bias only without a norm);
  FCOS's towers have both (`Conv2d` with bias, then GroupNorm)."""
  depth: int = 4
  norm: str | None = None
  num_groups: int = 32
  conv_bias: bool | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    norm = norm_layer(self.norm, False, self.dtype, num_groups=self.num_groups)
    for i in range(self.depth):
      x = ConvNormAct(x.shape[-1], 3, norm=norm, use_bias=self.conv_bias,
                      kernel_init=normal_001, dtype=self.dtype, name=f"conv{i}")(x)
    return x


def flatten_levels(per_level: Sequence[jax.Array], last: int) -> jax.Array:
  """NHWC maps `[B, H_l, W_l, A * last]` -> `[B, sum_l H_l W_l A, last]` (level, row, column,
  anchor order)."""
  return jnp.concatenate([p.reshape(p.shape[0], -1, last) for p in per_level],
                         axis=1).astype(jnp.float32)


class RetinaNetHead(nn.Module):
  """`features` (list of `[B, H_l, W_l, C]`) -> `(cls_logits [B, N, K], deltas [B, N, 4])`.
  Params `classification/{tower, cls_logits}`, `regression/{tower, bbox_reg}`."""
  num_anchors: int
  num_classes: int            # K: torchvision's num_classes (background column included)
  norm: str | None = None
  num_groups: int = 32
  prior_probability: float = 0.01
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    a, k = self.num_anchors, self.num_classes
    bias = -math.log((1 - self.prior_probability) / self.prior_probability)
    cls_tower = ConvTower(4, self.norm, self.num_groups, dtype=self.dtype, name="cls_tower")
    reg_tower = ConvTower(4, self.norm, self.num_groups, dtype=self.dtype, name="reg_tower")
    cls = torch_conv(a * k, 3, use_bias=True, dtype=self.dtype, kernel_init=normal_001,
                     bias_init=nn.initializers.constant(bias), name="cls_logits")
    reg = torch_conv(a * 4, 3, use_bias=True, dtype=self.dtype, kernel_init=normal_001,
                     name="bbox_reg")
    logits = [cls(cls_tower(f)) for f in features]
    deltas = [reg(reg_tower(f)) for f in features]
    return flatten_levels(logits, k), flatten_levels(deltas, 4)
