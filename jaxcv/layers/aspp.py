"""Atrous spatial pyramid pooling (DeepLabv3, Chen et al. 2017; torchvision's `ASPP`) and the
atrous separable conv-norm-act of DeepLabv3+ (Chen et al. 2018). Features NHWC.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import ConvNormAct
from jaxcv.layers.conv_variants import SeparableConv

ModuleDef = Any


class SepConvNormAct(nn.Module):
  """Atrous separable conv: depthwise 3x3 (dilation, "same" padding), BN, ReLU, pointwise
  1x1, norm, act (TF DeepLabv3+'s `split_separable_conv2d`). `[B, h, w, C]` ->
  `[B, h, w, features]`.

  Submodules `sepconv` (`SeparableConv`: `depthwise`, `bn`, `pointwise`) and `bn` (`norm`).
  The BatchNorm inside `sepconv` uses batch statistics when called with `train_bn`.
  """
  features: int
  norm: ModuleDef
  dilation: int = 1
  dtype: Any = jnp.float32
  act: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x, train_bn: bool):
    x = SeparableConv(self.features, 3, dilation=self.dilation, mid_norm=True, mid_relu=True,
                      dtype=self.dtype, name="sepconv")(x, train=train_bn)
    return self.act(self.norm(name="bn")(x))


class ASPP(nn.Module):
  """Atrous spatial pyramid pooling: `[B, h, w, C]` -> `[B, h, w, features]`.

  Branches `conv1x1`, `atrous1`.. (one per rate: 3x3 `ConvNormAct` with that dilation, or
  `SepConvNormAct` when `separable`), `pooling` (global mean, 1x1 ConvNormAct, broadcast back
  to h x w, which is what torch's bilinear upsampling of a 1x1 map gives), concatenated in
  that order and projected by `project` (1x1 ConvNormAct) and dropout (rng `dropout`).
  `norm`: a norm constructor (`jaxcv.layers.norm_layer`); `train_bn`: batch statistics in the
  separable branches' inner BatchNorm. torchvision's `DeepLabHead` uses rates (12, 24, 36).
  """
  rates: Sequence[int]
  features: int
  norm: ModuleDef
  separable: bool = False
  dropout: float = 0.5
  train_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    b, h, w, _ = x.shape
    conv = lambda kernel, name, dilation=1: ConvNormAct(  # noqa: E731
        self.features, kernel, dilation=dilation, norm=self.norm, dtype=self.dtype, name=name)
    branches = [conv(1, "conv1x1")(x)]
    for i, rate in enumerate(self.rates):
      name = f"atrous{i + 1}"
      if self.separable:
        y = SepConvNormAct(self.features, self.norm, rate, self.dtype, name=name)(x,
                                                                                  self.train_bn)
      else:
        y = conv(3, name, rate)(x)
      branches.append(y)
    pooled = conv(1, "pooling")(jnp.mean(x, axis=(1, 2), keepdims=True))
    branches.append(jnp.broadcast_to(pooled, (b, h, w, self.features)))
    y = conv(1, "project")(jnp.concatenate(branches, axis=-1))
    return nn.Dropout(self.dropout, deterministic=not train)(y)
