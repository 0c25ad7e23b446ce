"""DeepLabv3 (Chen et al. 2017) as torchvision's `deeplabv3_resnet50`, and DeepLabv3+ (Chen et
al. 2018: atrous separable convolutions, decoder with low-level features) on ResNets.

Every model maps float NHWC images `[B, H, W, 3]` (raw, normalised by the task) to
`(logits [B, H, W, num_classes] float32, intermediates)`.

`deeplabv3_resnet50`: torchvision's `deeplabv3_resnet50(weights=None, aux_loss=True)` layer
for layer: ResNet-50 with `replace_stride_with_dilation=(False, True, True)` (output stride
8), `DeepLabHead` (`head`: ASPP with a 1x1 branch, 3x3 branches at rates 12, 24, 36 and an
image pooling branch (global mean, 1x1 conv, BN, ReLU, bilinear upsample of the 1x1 map, i.e.
a broadcast), each 256 wide, concatenated, projected by a 1x1 conv + BN + ReLU + Dropout(0.5);
then 3x3 conv, BN, ReLU and a 1x1 conv with bias), the auxiliary `FCNHead` on stage3 (`aux`,
when `aux_loss`, returned as `intermediates["aux"]`), both upsampled to the input size with
`F.interpolate(bilinear, align_corners=False)` semantics (`jaxcv.layers.resize`). Any input
size works, as in torchvision. `jaxcv.weights.torchvision.convert("deeplabv3_resnet50", sd)`
loads torchvision's weights.

DeepLabv3+ (`deeplabv3plus_resnet50`, `deeplabv3plus_resnet18`): a ResNet with output
stride 16 (stage4 dilated; `output_stride=8` dilates stage3 too), ASPP (`aspp`) whose three
atrous branches are atrous separable convolutions (depthwise 3x3 at rates 6, 12, 18 (24, 36
doubled at stride 8), BN, ReLU, pointwise 1x1, BN, ReLU: the paper's code's
`split_separable_conv2d`) plus the 1x1 and image pooling branches, projected to 256 with
Dropout(0.1); the decoder (`decoder`) reduces the stride-4 stage1 features to 48 channels
(1x1 conv, BN, ReLU), upsamples the ASPP output 4x (bilinear, to stage1's size),
concatenates, and applies two 3x3 separable convs (256, BN, ReLU); the classifier `head`
(1x1 conv) and a bilinear upsample to the input size follow. H and W must be divisible by
the output stride (checked), so that the 4x upsampled ASPP map lines up with stage1. `width`
scales the backbone and every head width (256 and 48 at width 64).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.aspp import ASPP, SepConvNormAct
from jaxcv.layers.conv_norm_act import ConvNormAct, lecun_normal, torch_conv
from jaxcv.layers.residual import BasicBlock, BottleneckBlock
from jaxcv.layers.upsample import resize
from jaxcv.models import common
from jaxcv.models.backbones.resnet import dilation_for_output_stride, resnet_body
from jaxcv.models.registry import register
from jaxcv.models.simple_segmentation import SimpleSegmentation

ModuleDef = Any
STAGES = ["stem", "stage1", "stage2", "stage3", "stage4"]


class DeepLabHead(nn.Module):
  """torchvision's `DeepLabHead(in, num_classes)`: `aspp` (rates 12, 24, 36), `conv` (3x3,
  no bias), `bn`, ReLU, `cls` (1x1 with bias). `[B, h, w, in]` -> `[B, h, w, num_classes]`."""
  num_classes: int
  features: int
  norm: ModuleDef
  rates: Sequence[int] = (12, 24, 36)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = ASPP(self.rates, self.features, self.norm, dtype=self.dtype, name="aspp")(x, train)
    x = torch_conv(self.features, 3, dtype=self.dtype, kernel_init=lecun_normal, name="conv")(x)
    x = nn.relu(self.norm(name="bn")(x))
    return torch_conv(self.num_classes, 1, use_bias=True, dtype=self.dtype,
                      kernel_init=lecun_normal, name="cls")(x)


class DeepLabV3(SimpleSegmentation):
  """torchvision's DeepLabv3 on a dilated ResNet (output stride 8): `SimpleSegmentation` with
  a `DeepLabHead` (`head`) on stage4. `x`: `[B, H, W, 3]`, any size.

  Returns `(out [B, H, W, num_classes] float32, intermediates)`: `aux` (auxiliary FCNHead
  logits on stage3 at the input size, float32, only when `aux_loss`), `stem`,
  `stage1`..`stage4`. `width` scales the backbone (64 as torchvision) and the ASPP width
  (256 * width / 64).
  """
  model_name = "deeplabv3"

  def main_head(self, norm) -> nn.Module:
    return DeepLabHead(self.num_classes, 256 * self.width // 64, norm, dtype=self.dtype,
                       name="head")


DeepLabV3ResNet50 = register("deeplabv3_resnet50", DeepLabV3)


class DeepLabV3Plus(nn.Module):
  """DeepLabv3+ on a ResNet (see the module docstring). `x`: `[B, H, W, 3]`, H and W
  divisible by `output_stride` (16 or 8).

  Returns `(logits [B, H, W, num_classes] float32, intermediates)` with `stem`,
  `stage1`..`stage4`, `aspp` (`[B, H/os, W/os, aspp_features]`) and `decoder`
  (`[B, H/4, W/4, decoder_features]`). Widths default to 256 (ASPP, decoder) and 48 (the
  low-level reduction) scaled by `width / 64`. `atrous_rates` are the ASPP's dilations
  (default (6, 12, 18) at output stride 16 and (12, 24, 36) at 8, as the paper's 513-pixel
  crops; smaller images want smaller rates, as a dilation beyond the feature map's size
  leaves only the centre tap).
  """
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block_cls: ModuleDef = BottleneckBlock
  num_classes: int = 21
  width: int = 64
  output_stride: int = 16
  aspp_features: int | None = None
  low_level_features: int | None = None
  decoder_features: int | None = None
  atrous_rates: Sequence[int] | None = None
  aspp_dropout: float = 0.1
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.output_stride not in (8, 16):
      raise ValueError(f"DeepLabv3+ output_stride must be 8 or 16; got {self.output_stride}")
    common.check_image(x, "DeepLabv3+", self.output_stride)
    common.check_frozen(self.frozen_stages, STAGES + ["aspp", "decoder", "head"], "DeepLabv3+")
    size = x.shape[1:3]

    def norm(stage):
      return common.batch_norm(train, stage, self.frozen_stages, self.dtype)

    out = resnet_body(x, stage_sizes=self.stage_sizes, block_cls=self.block_cls,
                      width=self.width, norm=norm, dtype=self.dtype,
                      replace_stride_with_dilation=dilation_for_output_stride(
                          self.output_stride, len(self.stage_sizes)))

    def train_bn(stage):
      return train and stage not in self.frozen_stages

    scale = self.width / 64
    aspp_features = self.aspp_features or max(8, round(256 * scale))
    low_features = self.low_level_features or max(4, round(48 * scale))
    dec_features = self.decoder_features or max(8, round(256 * scale))
    rates = self.atrous_rates or ((6, 12, 18) if self.output_stride == 16 else (12, 24, 36))
    y = out["aspp"] = ASPP(rates, aspp_features, norm("aspp"), separable=True,
                           dropout=self.aspp_dropout, train_bn=train_bn("aspp"),
                           dtype=self.dtype, name="aspp")(out["stage4"], train)
    y = out["decoder"] = Decoder(low_features, dec_features, norm("decoder"),
                                 train_bn("decoder"), self.dtype, name="decoder")(
                                     y, out["stage1"])
    y = torch_conv(self.num_classes, 1, use_bias=True, dtype=self.dtype,
                   kernel_init=lecun_normal, name="head")(y)
    return resize(y.astype(jnp.float32), size), out


class Decoder(nn.Module):
  """DeepLabv3+'s decoder: `reduce` (1x1 ConvNormAct of the low-level features to
  `low_level_features`), bilinear upsample of `x` to their size, concat `[x, low]`, `sep1`,
  `sep2` (3x3 `SepConvNormAct`, `features`). Returns `[B, h_low, w_low, features]`."""
  low_level_features: int
  features: int
  norm: ModuleDef
  train_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, low: jax.Array) -> jax.Array:
    low = ConvNormAct(self.low_level_features, 1, norm=self.norm, dtype=self.dtype,
                      name="reduce")(low)
    x = resize(x, low.shape[1:3]).astype(low.dtype)
    x = jnp.concatenate([x, low], axis=-1)
    x = SepConvNormAct(self.features, self.norm, dtype=self.dtype, name="sep1")(x, self.train_bn)
    return SepConvNormAct(self.features, self.norm, dtype=self.dtype, name="sep2")(
        x, self.train_bn)


DeepLabV3PlusResNet50 = register("deeplabv3plus_resnet50", DeepLabV3Plus)
DeepLabV3PlusResNet18 = register("deeplabv3plus_resnet18", functools.partial(
    DeepLabV3Plus, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock))
