"""Convolution with torch's padding, and conv-norm-act (torchvision's `Conv2dNormActivation`).

Features are NHWC, kernels HWIO. Every convolution here goes through
`jaxcv.layers.conv.conv_general_dilated` (XLA's convolution; on the CPU, faster kernel
gradients for 1x1 convs and shifted sums for depthwise ones; same forward values).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv import conv_general_dilated

ModuleDef = Any
# torchvision's conv init for ResNet and VGG: kaiming normal, fan_out, for ReLU.
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# flax's own default (lecun normal): the init of the heads that torchvision leaves at torch's
# default and jaxcv at flax's (ASPP, FCNHead).
lecun_normal = nn.initializers.lecun_normal()


def torch_conv(features: int, kernel: int, strides: int = 1, dilation: int = 1, *,
               use_bias: bool = False, groups: int = 1, dtype: Any = jnp.float32,
               kernel_init: Callable = kaiming_fan_out,
               bias_init: Callable = nn.initializers.zeros, name: str | None = None) -> nn.Conv:
  """`nn.Conv` as torch `Conv2d(k, stride, padding=dilation * (k - 1) // 2, dilation, groups)`.

  Explicit symmetric padding (flax's 'SAME' pads stride-2 convs differently from torch, so
  converted weights would see shifted inputs); bias off by default (a norm follows).
  """
  pad = dilation * (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), (strides, strides), padding=((pad, pad),) * 2,
                 kernel_dilation=(dilation, dilation), feature_group_count=groups,
                 use_bias=use_bias, dtype=dtype, kernel_init=kernel_init, bias_init=bias_init,
                 name=name,
                 conv_general_dilated=conv_general_dilated)


class ConvNormAct(nn.Module):
  """`torch_conv`, norm, activation: `[B, H, W, C]` -> `[B, H/s, W/s, features]`.

  `norm`: a constructor from `jaxcv.layers.norm_layer` / `batch_norm` (BatchNorm, frozen
  BatchNorm, GroupNorm) called with `name=norm_name`, or None. `act`: any elementwise
  function (`nn.relu`, `nn.silu`, ...), or None. `use_bias` defaults to "only without a
  norm", as torchvision's. `kernel_init` defaults to flax's lecun normal (the heads' init:
  ASPP, the DeepLabv3+ decoder); backbones pass `kaiming_fan_out` (torchvision's).
  Submodules `conv` and `bn` (torchvision's Sequential 0 and 1).
  """
  features: int
  kernel: int = 3
  strides: int = 1
  dilation: int = 1
  norm: ModuleDef | None = None
  act: Callable[[jax.Array], jax.Array] | None = nn.relu
  use_bias: bool | None = None
  groups: int = 1
  kernel_init: Callable = lecun_normal
  norm_name: str = "bn"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    use_bias = self.norm is None if self.use_bias is None else self.use_bias
    x = torch_conv(self.features, self.kernel, self.strides, self.dilation, use_bias=use_bias,
                   groups=self.groups, dtype=self.dtype, kernel_init=self.kernel_init,
                   name="conv")(x)
    if self.norm is not None:
      x = self.norm(name=self.norm_name)(x)
    return x if self.act is None else self.act(x)
