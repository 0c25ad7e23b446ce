"""ResNet v1.5 (He et al. 2016; torchvision's variant), layer for layer as torchvision.

v1.5: a bottleneck block strides on its 3x3 conv, not on the first 1x1. Paddings are torch's
explicit ones (flax 'SAME' pads differently on stride 2), so converted torchvision weights
(`jaxcv.weights.torchvision`) give the same outputs.

Params: `stem` (conv, bn), `stage1`..`stage4` (`block1`.. with `conv1`, `bn1`, ...,
`downsample_conv`, `downsample_bn`), `head` (Dense).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv import conv_general_dilated
from jaxcv.models import common
from jaxcv.models.registry import register

ModuleDef = Any


def _conv(features, kernel, strides, padding, dtype, name, dilation=1):
  return nn.Conv(features, (kernel, kernel), (strides, strides), padding=((padding, padding),) * 2,
                 kernel_dilation=(dilation, dilation), use_bias=False, dtype=dtype,
                 kernel_init=common.kaiming_fan_out, name=name,
                 conv_general_dilated=conv_general_dilated)


class BasicBlock(nn.Module):
  """Two 3x3 convs; `[B, H, W, Cin]` -> `[B, H/s, W/s, features]`.

  `dilation` > 1 (atrous, padding = dilation) is a jaxcv extension: torchvision's BasicBlock
  refuses it; DeepLabv3+ on a small ResNet uses it.
  """
  features: int
  strides: int
  norm: ModuleDef
  dtype: Any = jnp.float32
  dilation: int = 1
  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x):
    d = self.dilation
    y = _conv(self.features, 3, self.strides, d, self.dtype, "conv1", d)(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = _conv(self.features, 3, 1, d, self.dtype, "conv2", d)(y)
    y = self.norm(name="bn2")(y)
    return nn.relu(_shortcut(self, x, y.shape[-1]) + y)


class BottleneckBlock(nn.Module):
  """1x1 -> 3x3 (strided, v1.5) -> 1x1; `[B, H, W, Cin]` -> `[B, H/s, W/s, 4*features]`.

  `dilation`: the 3x3 conv's dilation and padding (torchvision's `dilation` argument).
  """
  features: int
  strides: int
  norm: ModuleDef
  dtype: Any = jnp.float32
  dilation: int = 1
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x):
    y = _conv(self.features, 1, 1, 0, self.dtype, "conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = _conv(self.features, 3, self.strides, self.dilation, self.dtype, "conv2",
              self.dilation)(y)
    y = nn.relu(self.norm(name="bn2")(y))
    y = _conv(self.features * 4, 1, 1, 0, self.dtype, "conv3")(y)
    y = self.norm(name="bn3")(y)
    return nn.relu(_shortcut(self, x, y.shape[-1]) + y)


def _shortcut(block: nn.Module, x: jax.Array, features: int) -> jax.Array:
  """Identity, or torchvision's `downsample` (1x1 strided conv + BN) when the shape changes."""
  if x.shape[-1] == features and block.strides == 1:
    return x
  x = _conv(features, 1, block.strides, 0, block.dtype, "downsample_conv")(x)
  return block.norm(name="downsample_bn")(x)


class Stem(nn.Module):
  """7x7/2 conv, BN, ReLU, 3x3/2 max pool: `[B, H, W, 3]` -> `[B, H/4, W/4, width]`."""
  width: int
  norm: ModuleDef
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = _conv(self.width, 7, 2, 3, self.dtype, "conv")(x)
    x = nn.relu(self.norm(name="bn")(x))
    return common.max_pool(x, 3, 2, padding=1)


class ResNetStage(nn.Module):
  """`num_blocks` blocks; the first one strides and changes the width.

  Dilated stages (torchvision's `replace_stride_with_dilation`): the first block keeps the
  previous stage's dilation (`first_dilation`), the others use `dilation`.
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


class ResNet(nn.Module):
  """ResNet classifier. `x`: float `[B, H, W, 3]`, H, W >= 32, unnormalised by the model.

  Returns `(logits [B, num_classes] float32, intermediates)` with intermediates `stem`
  (stride 4, after the max pool), `stage1`..`stage4` (strides 4, 8, 16, 32) and
  `pre_logits` (`[B, 8*width]` basic, `[B, 32*width]` bottleneck).
  `width` is the stem/stage1 width (64 in the paper); stages double it.
  `replace_stride_with_dilation` (3 bools for stages 2-4, torchvision's argument) trades a
  stage's stride for dilation (`stage_plan`); the parameters are the same.
  """
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_classes: int = 1000
  width: int = 64
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()
  replace_stride_with_dilation: Sequence[bool] = ()

  @nn.compact
  def __call__(self, x, train: bool = False):
    common.check_input(x, "ResNet", min_size=32)
    plan = stage_plan(len(self.stage_sizes), self.replace_stride_with_dilation)
    stages = ["stem"] + [f"stage{i + 1}" for i in range(len(self.stage_sizes))] + ["head"]
    common.check_frozen(self.frozen_stages, stages, "ResNet")
    norm: Callable[[str], ModuleDef] = lambda stage: common.batch_norm(
        train, stage, self.frozen_stages, self.dtype)
    out = {}
    x = out["stem"] = Stem(self.width, norm("stem"), self.dtype, name="stem")(x)
    for i, num_blocks in enumerate(self.stage_sizes):
      name = f"stage{i + 1}"
      strides, first_dilation, dilation = plan[i]
      x = out[name] = ResNetStage(self.block_cls, num_blocks, self.width * 2**i, strides,
                                  norm(name), self.dtype, dilation, first_dilation, name=name)(x)
    x = out["pre_logits"] = common.global_avg_pool(x)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits.astype(jnp.float32), out


ResNet18 = register("resnet18", functools.partial(ResNet, stage_sizes=(2, 2, 2, 2),
                                                  block_cls=BasicBlock))
ResNet34 = register("resnet34", functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                                                  block_cls=BasicBlock))
ResNet50 = register("resnet50", functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                                                  block_cls=BottleneckBlock))
ResNet101 = register("resnet101", functools.partial(ResNet, stage_sizes=(3, 4, 23, 3),
                                                    block_cls=BottleneckBlock))
