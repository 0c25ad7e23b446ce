"""Box heads on pooled RoI features `[K, 7, 7, C]` -> `[K, representation]`.

- `TwoMLPHead` (torchvision's, v1): flatten in torch's (C, H, W) order
  (`common.flatten_chw`, so converted fc6 weights need no permutation), `fc6`, ReLU, `fc7`,
  ReLU.
- `ConvFCHead` (torchvision's `FastRCNNConvFCHead`, v2): `conv{i}` 3x3 convs without bias,
  each with a norm and ReLU, then flatten and `fc{j}` + ReLU. With BatchNorm in training the
  statistics are taken over the valid RoIs only (`mask`): padding rows of the static-shape
  sample must not shift them.

Linear layers use torch's default init (uniform, bound 1/sqrt(fan_in)).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import kaiming_fan_out, torch_conv
from jaxcv.layers.norm import norm_layer
from jaxcv.models import common

torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_dense(features: int, name: str, dtype: Any) -> nn.Dense:
  """`nn.Dense` with torch `nn.Linear`'s default weight init (bias: zeros)."""
  return nn.Dense(features, dtype=dtype, kernel_init=torch_linear_init, name=name)


def conv_norm_relu_stack(x: jax.Array, channels: Sequence[int], norm: str | None,
                         num_groups: int, train: bool, mask: jax.Array | None, dtype: Any,
                         dilation: int = 1) -> jax.Array:
  """torchvision's `Conv2dNormActivation` 3x3 layers (bias only without a norm) on RoI
  features `[K, h, w, C]`, as submodules `conv{i}` / `bn{i}` of the calling module (the box,
  mask and keypoint heads). BatchNorm in training takes its statistics over the rows where
  `mask [K]` is True: the padding RoIs of a static-shape sample must not shift them."""
  for i, c in enumerate(channels):
    x = torch_conv(c, 3, dilation=dilation, use_bias=norm is None, dtype=dtype,
                   kernel_init=kaiming_fan_out, name=f"conv{i}")(x)
    if norm == "batch":
      bn = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        dtype=dtype, name=f"bn{i}")
      full = None if mask is None else jnp.broadcast_to(mask[:, None, None, None], x.shape)
      x = bn(x, mask=full if train else None)
    elif norm is not None:
      x = norm_layer(norm, train, dtype, num_groups=num_groups)(name=f"bn{i}")(x)
    x = nn.relu(x)
  return x


class TwoMLPHead(nn.Module):
  representation_size: int = 1024
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None):
    del train, mask
    x = common.flatten_chw(x)
    x = nn.relu(torch_dense(self.representation_size, "fc6", self.dtype)(x))
    return nn.relu(torch_dense(self.representation_size, "fc7", self.dtype)(x))


class ConvFCHead(nn.Module):
  conv_layers: Sequence[int] = (256, 256, 256, 256)
  fc_layers: Sequence[int] = (1024,)
  norm: str | None = "batch"
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None):
    x = conv_norm_relu_stack(x, self.conv_layers, self.norm, self.num_groups, train, mask,
                             self.dtype)
    x = common.flatten_chw(x)
    for j, c in enumerate(self.fc_layers):
      x = nn.relu(torch_dense(c, f"fc{j}", self.dtype)(x))
    return x
