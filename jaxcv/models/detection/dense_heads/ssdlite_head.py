"""SSDlite's heads, torchvision's `SSDLiteHead` (section 6.2 of the MobileNetV2 paper): per
feature map a `_prediction_block`, a 3x3 depthwise conv + BatchNorm + ReLU6 (`depthwise`:
`conv`, `bn`) then a 1x1 conv with bias (`project`) to `A_l * K` class logits or `A_l * 4`
box codes; weights normal(0, 0.03), biases zero (`_normal_init`). Outputs flattened in
torchvision's order (level, row, column, default box) as `SSDHead`'s: logits `[B, N, K]`
(`K` = torchvision's `num_classes`, background column 0 included), codes `[B, N, 4]`.
Params `cls_logits/level{l}`, `bbox_reg/level{l}` (torchvision's
`classification_head.module_list.l.{0,1}`, `regression_head.module_list.l.{0,1}`).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import ConvNormAct, torch_conv
from jaxcv.models.detection.dense_heads.retinanet_head import flatten_levels

normal_init = nn.initializers.normal(0.03)


class PredictionBlock(nn.Module):
  """`depthwise` (3x3, groups = channels, BN, ReLU6), `project` (1x1 with bias)."""
  features: int
  norm: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    x = ConvNormAct(c, 3, groups=c, norm=self.norm, act=jax.nn.relu6, kernel_init=normal_init,
                    dtype=self.dtype, name="depthwise")(x)
    return torch_conv(self.features, 1, use_bias=True, dtype=self.dtype,
                      kernel_init=normal_init, name="project")(x)


class LevelBlocks(nn.Module):
  """One `PredictionBlock` per level to `num_anchors[l] * columns` channels: `level{l}`."""
  num_anchors: Sequence[int]
  columns: int
  norm: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> jax.Array:
    out = [PredictionBlock(a * self.columns, self.norm, self.dtype, name=f"level{l}")(f)
           for l, (f, a) in enumerate(zip(features, self.num_anchors, strict=True))]
    return flatten_levels(out, self.columns)


class SSDLiteHead(nn.Module):
  """`features` (list of `[B, H_l, W_l, C_l]`) -> `(cls_logits [B, N, K], codes [B, N, 4])`;
  `norm`: the BatchNorm constructor (its train / frozen mode decided by the detector)."""
  num_anchors: Sequence[int]
  num_classes: int            # K: torchvision's num_classes (background column included)
  norm: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    return (LevelBlocks(self.num_anchors, self.num_classes, self.norm, self.dtype,
                        name="cls_logits")(features),
            LevelBlocks(self.num_anchors, 4, self.norm, self.dtype, name="bbox_reg")(features))
