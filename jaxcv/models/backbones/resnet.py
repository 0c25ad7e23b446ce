"""The ResNet body (He et al. 2016, v1.5 as torchvision's): stem and residual stages, with
torchvision's `replace_stride_with_dilation` (or an output stride) for dense prediction.

One stage loop for the whole code base: the ResNet classifiers, FCN-ResNet, DeepLabv3 and
v3+ call `resnet_body` inside their own `nn.compact` method, so the stem and stages are their
top-level modules (`stem`, `stage1`..`stage4`: the names `jaxcv.weights.torchvision` maps to
torchvision's `conv1`/`bn1`/`layerK`); models that nest a backbone (detectors with an FPN)
use `ResNetBackbone`, whose own parameters have the same names.

Params: `stem` (`conv`, `bn`), `stageK` (`block1`.. of `jaxcv.layers.BasicBlock` /
`BottleneckBlock`: `conv1`, `bn1`, ..., `downsample_conv`, `downsample_bn`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import torch_conv
from jaxcv.layers.norm import NORM_KINDS, batch_norm, norm_layer
from jaxcv.layers.residual import BottleneckBlock, ResNetStage, stage_plan
from jaxcv.models import common

ModuleDef = Any


class Stem(nn.Module):
  """7x7/2 conv, norm, ReLU, 3x3/2 max pool: `[B, H, W, 3]` -> `[B, H/4, W/4, width]`."""
  width: int
  norm: ModuleDef
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = torch_conv(self.width, 7, 2, dtype=self.dtype, name="conv")(x)
    x = nn.relu(self.norm(name="bn")(x))
    return common.max_pool(x, 3, 2, padding=1)


def dilation_for_output_stride(output_stride: int, num_stages: int = 4) -> tuple[bool, ...]:
  """`replace_stride_with_dilation` flags that give `output_stride`: stages whose stride
  would exceed it dilate instead. ResNet-50 (4 stages): 32 -> (False, False, False),
  16 -> (False, False, True) (DeepLabv3+), 8 -> (False, True, True) (torchvision's FCN and
  DeepLabv3)."""
  strides = [4 * 2**k for k in range(num_stages)]  # stage k + 1's stride without dilation
  if output_stride not in strides:
    raise ValueError(f"output_stride of a {num_stages}-stage ResNet must be one of {strides}; "
                     f"got {output_stride!r}")
  return tuple(s > output_stride for s in strides[1:])


def resnet_body(x: jax.Array, *, stage_sizes: Sequence[int], block_cls: ModuleDef, width: int,
                norm: Callable[[str], ModuleDef], dtype: Any = jnp.float32,
                replace_stride_with_dilation: Sequence[bool] = (),
                no_gradient_through: int = 0) -> dict[str, jax.Array]:
  """Stem and stages of a ResNet, built inside the calling module's `nn.compact` method, so
  that their parameters are its top-level `stem`, `stage1`, ... `x`: `[B, H, W, 3]`.

  `norm(stage)` gives the norm constructor of each top-level module (e.g. BatchNorm in
  inference mode for frozen stages). Stage k has width `width * 2**(k - 1)` (times the
  block's expansion). Returns `{"stem": [B, H/4, W/4, width], "stage1": .., ...}`, strides 4,
  4, 8, 16, 32 (torch's rounding up), with dilated stages keeping the previous stride
  (`jaxcv.layers.stage_plan`).

  `no_gradient_through`: the first this many top-level modules (stem, stage1, ...) get no
  gradient (`lax.stop_gradient` on the output of the last of them): torchvision's
  `trainable_backbone_layers = 5 - no_gradient_through` for detectors.
  """
  out = {}
  x = Stem(width, norm("stem"), dtype, name="stem")(x)
  if no_gradient_through >= 1:
    x = jax.lax.stop_gradient(x)
  out["stem"] = x
  plan = stage_plan(len(stage_sizes), replace_stride_with_dilation)
  for i, num_blocks in enumerate(stage_sizes):
    name = f"stage{i + 1}"
    strides, first_dilation, dilation = plan[i]
    x = ResNetStage(block_cls, num_blocks, width * 2**i, strides, norm(name), dtype,
                    dilation, first_dilation, name=name)(x)
    if no_gradient_through >= i + 2:
      x = jax.lax.stop_gradient(x)
    out[name] = x
  return out


class ResNetBackbone(nn.Module):
  """The ResNet body as a module: `x` float `[B, H, W, 3]` -> the `resnet_body` features.

  `norm`: "batch" (BatchNorm; stages in `frozen_stages` in inference mode), "frozen_batch"
  (torchvision's FrozenBatchNorm2d everywhere, as its detectors on pretrained backbones),
  "group" (GroupNorm with `num_groups`). `output_stride` (32, 16, 8, 4) or
  `replace_stride_with_dilation` (not both) trades strides for dilation. The parameters are
  those of the ResNet classifier without `head`, so converted torchvision weights load.
  """
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block_cls: ModuleDef = BottleneckBlock
  width: int = 64
  output_stride: int | None = None
  replace_stride_with_dilation: Sequence[bool] = ()
  norm: str = "batch"
  num_groups: int = 32
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    common.check_input(x, "ResNetBackbone")
    stages = ["stem"] + [f"stage{i + 1}" for i in range(len(self.stage_sizes))]
    common.check_frozen(self.frozen_stages, stages, "ResNetBackbone")
    if self.norm not in NORM_KINDS or self.norm is None:
      raise ValueError(f"ResNetBackbone norm must be one of {list(NORM_KINDS[:-1])}; got "
                       f"{self.norm!r}")
    dilate = self.replace_stride_with_dilation
    if self.output_stride is not None:
      if dilate:
        raise ValueError("ResNetBackbone takes output_stride or replace_stride_with_dilation, "
                         "not both")
      dilate = dilation_for_output_stride(self.output_stride, len(self.stage_sizes))

    def norm(stage):
      if self.norm == "batch":
        return batch_norm(train, stage, self.frozen_stages, self.dtype)
      return norm_layer(self.norm, train, self.dtype, num_groups=self.num_groups)

    return resnet_body(x, stage_sizes=self.stage_sizes, block_cls=self.block_cls,
                       width=self.width, norm=norm, dtype=self.dtype,
                       replace_stride_with_dilation=dilate)
