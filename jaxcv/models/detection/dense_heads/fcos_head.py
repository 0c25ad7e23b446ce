"""torchvision's `FCOSHead` (Tian et al. 2019): per location a classification tower (4 x
Conv2d with bias, GroupNorm(32), ReLU: `ConvTower(conv_bias=True)`) ending in a 3x3 conv to
`A * K` logits (prior-probability bias), and a regression tower ending in two 3x3 convs:
the box codes `A * 4` through a ReLU (non-negative distances) and the centre-ness logit `A`.
Weights normal(std 0.01), biases 0. Outputs flattened in torchvision's (level, row, column,
anchor) order, float32: `cls_logits [B, N, K]`, `bbox_regression [B, N, 4]`, `bbox_ctrness
[B, N]` (A = 1: FCOS has one "anchor", a square of the level's stride, per location).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import torch_conv
from jaxcv.models.detection.dense_heads.retinanet_head import (ConvTower, flatten_levels,
                                                               normal_001)


class FCOSHead(nn.Module):
  """Params `cls_tower`, `cls_logits`, `reg_tower`, `bbox_reg`, `bbox_ctrness`."""
  num_anchors: int
  num_classes: int            # K: torchvision's num_classes (background column included)
  num_convs: int = 4
  norm: str | None = "group"
  num_groups: int = 32
  prior_probability: float = 0.01
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> dict:
    a, k = self.num_anchors, self.num_classes
    bias = -math.log((1 - self.prior_probability) / self.prior_probability)
    tower = lambda name: ConvTower(self.num_convs, self.norm, self.num_groups, True,  # noqa: E731
                                   self.dtype, name=name)
    cls_tower, reg_tower = tower("cls_tower"), tower("reg_tower")

    def conv(n, name, **kw):
      return torch_conv(n, 3, use_bias=True, dtype=self.dtype, kernel_init=normal_001,
                        name=name, **kw)
    cls = conv(a * k, "cls_logits", bias_init=nn.initializers.constant(bias))
    reg, ctr = conv(a * 4, "bbox_reg"), conv(a, "bbox_ctrness")
    logits, deltas, ctrness = [], [], []
    for f in features:
      logits.append(cls(cls_tower(f)))
      t = reg_tower(f)
      deltas.append(nn.relu(reg(t)))
      ctrness.append(ctr(t))
    return {"cls_logits": flatten_levels(logits, k), "bbox_regression": flatten_levels(deltas, 4),
            "bbox_ctrness": flatten_levels(ctrness, 1)[..., 0]}
