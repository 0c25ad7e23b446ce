"""SSD's heads, torchvision's `SSDHead`: per feature map its own 3x3 conv to `A_l * K` class
logits and one to `A_l * 4` box codes (xavier-uniform weights, zero biases), outputs flattened
in torchvision's order (level, row, column, default box) as `dense_heads.flatten_levels`:
logits `[B, N, K]` (`K` = torchvision's `num_classes`, the background column 0 included:
SSD's softmax needs it), codes `[B, N, 4]`. Params `cls_logits/level{l}`,
`bbox_reg/level{l}` (torchvision's `classification_head.module_list.l`,
`regression_head.module_list.l`).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import torch_conv
from jaxcv.models.detection.dense_heads.retinanet_head import flatten_levels

xavier = nn.initializers.xavier_uniform()


class LevelConvs(nn.Module):
  """One 3x3 conv per level to `num_anchors[l] * columns` channels: `level{l}`."""
  num_anchors: Sequence[int]
  columns: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> jax.Array:
    out = [torch_conv(a * self.columns, 3, use_bias=True, dtype=self.dtype, kernel_init=xavier,
                      name=f"level{l}")(f)
           for l, (f, a) in enumerate(zip(features, self.num_anchors, strict=True))]
    return flatten_levels(out, self.columns)


class SSDHead(nn.Module):
  """`features` (list of `[B, H_l, W_l, C_l]`) -> `(cls_logits [B, N, K], codes [B, N, 4])`."""
  num_anchors: Sequence[int]
  num_classes: int            # K: torchvision's num_classes (background column included)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    return (LevelConvs(self.num_anchors, self.num_classes, self.dtype, name="cls_logits")(features),
            LevelConvs(self.num_anchors, 4, self.dtype, name="bbox_reg")(features))
