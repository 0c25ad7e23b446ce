"""Residual blocks and stages of ResNet v1.5 (He et al. 2016; torchvision's variant).

v1.5: a bottleneck block strides on its 3x3 conv, not on the first 1x1. Convs are
`torch_conv` (torch's explicit padding, kaiming fan-out init), so converted torchvision
weights give torchvision's outputs. `norm` is a norm constructor (`jaxcv.layers.norm_layer`,
`batch_norm`: BatchNorm, frozen BatchNorm or GroupNorm), called with the names below.

Params of a block: `conv1`, `bn1`, `conv2`, `bn2` (+ `conv3`, `bn3` in a bottleneck),
`downsample_conv`, `downsample_bn` where the shape changes; a stage: `block1`, `block2`, ...
(torchvision's `layerK.0`, `layerK.1`, ...).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import torch_conv

ModuleDef = Any


class ResidualBlock(nn.Module):
  """What `ResNetStage` builds a block from: `block_cls(features, strides, norm, dtype,
  dilation=...)`; the output has `expansion * features` channels."""
  features: int
  strides: int
  norm: ModuleDef
  dtype: Any = jnp.float32
  dilation: int = 1
  expansion: ClassVar[int] = 1


class BasicBlock(ResidualBlock):
  """Two 3x3 convs; `[B, H, W, Cin]` -> `[B, H/s, W/s, features]`.

  `dilation` > 1 (atrous, padding = dilation) is a jaxcv extension: torchvision's BasicBlock
  refuses it; DeepLabv3+ on a small ResNet uses it.
  """

  @nn.compact
  def __call__(self, x):
    d = self.dilation
    y = torch_conv(self.features, 3, self.strides, d, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = torch_conv(self.features, 3, 1, d, dtype=self.dtype, name="conv2")(y)
    y = self.norm(name="bn2")(y)
    return nn.relu(_shortcut(self, x, y.shape[-1]) + y)


class BottleneckBlock(ResidualBlock):
  """1x1 -> 3x3 (strided, v1.5) -> 1x1; `[B, H, W, Cin]` -> `[B, H/s, W/s, 4*features]`.

  torchvision's `Bottleneck`. `dilation`: the 3x3 conv's dilation and padding.
  """
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x):
    y = torch_conv(self.features, 1, dtype=self.dtype, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = torch_conv(self.features, 3, self.strides, self.dilation, dtype=self.dtype,
                   name="conv2")(y)
    y = nn.relu(self.norm(name="bn2")(y))
    y = torch_conv(self.features * self.expansion, 1, dtype=self.dtype, name="conv3")(y)
    y = self.norm(name="bn3")(y)
    return nn.relu(_shortcut(self, x, y.shape[-1]) + y)


def _shortcut(block: ResidualBlock, x: jax.Array, features: int) -> jax.Array:
  """Identity, or torchvision's `downsample` (1x1 strided conv + norm) when the shape changes."""
  if x.shape[-1] == features and block.strides == 1:
    return x
  x = torch_conv(features, 1, block.strides, dtype=block.dtype, name="downsample_conv")(x)
  return block.norm(name="downsample_bn")(x)


class ResNetStage(nn.Module):
  """`num_blocks` blocks of `block_cls` (torchvision's `_make_layer`); the first one strides
  and changes the width: `[B, H, W, Cin]` -> `[B, H/s, W/s, expansion * features]`.

  Dilated stages (torchvision's `replace_stride_with_dilation`, see `stage_plan`): the first
  block keeps the previous stage's dilation (`first_dilation`), the others use `dilation`.
  A stride-1, undilated stage is a plain stack of blocks (HRNet's branches and stage 1).
  """
  block_cls: ModuleDef
  num_blocks: int
  features: int
  strides: int
  norm: ModuleDef
  dtype: Any = jnp.float32
  dilation: int = 1
  first_dilation: int | None = None

  @nn.compact
  def __call__(self, x):
    first = self.dilation if self.first_dilation is None else self.first_dilation
    for i in range(self.num_blocks):
      x = self.block_cls(self.features, self.strides if i == 0 else 1, self.norm, self.dtype,
                         dilation=first if i == 0 else self.dilation, name=f"block{i + 1}")(x)
    return x


def stage_plan(num_stages: int, replace_stride_with_dilation: Sequence[bool] = ()
               ) -> list[tuple[int, int, int]]:
  """`(strides, first_dilation, dilation)` of each stage, as torchvision's `_make_layer`.

  `replace_stride_with_dilation[i]` (for stages 2..) turns that stage's stride 2 into
  dilation: stride 1, the running dilation doubles; the stage's first block keeps the
  previous dilation. E.g. `(False, True, True)` (torchvision's segmentation backbones):
  strides (1, 2, 1, 1), dilations (1, 1, 2, 4), first blocks (1, 1, 1, 2): output stride 8.
  """
  flags = tuple(replace_stride_with_dilation) or (False,) * (num_stages - 1)
  if len(flags) != num_stages - 1:
    raise ValueError(f"replace_stride_with_dilation needs {num_stages - 1} flags (stages 2 to "
                     f"{num_stages}); got {replace_stride_with_dilation!r}")
  plan, dilation = [(1, 1, 1)], 1
  for flag in flags:
    previous = dilation
    if flag:
      dilation *= 2
    plan.append((1 if flag else 2, previous, dilation))
  return plan
