"""torchvision's segmentation assembly (`_SimpleSegmentationModel`), shared by `fcn_resnet50`
(`jaxcv.models.fcn`) and `deeplabv3_resnet50` (`jaxcv.models.deeplab`): a dilated ResNet
body (`jaxcv.models.backbones.resnet_body`, output stride 8), a main head on stage4 and the
auxiliary `FCNHead` on stage3, each upsampled to the input size with
`F.interpolate(bilinear, align_corners=False)` (`jaxcv.layers.resize`).

Params: `stem`, `stage1`..`stage4` (the ResNet's names), `head` (the main head), `aux` (when
`aux_loss`); `jaxcv.weights.torchvision` maps them to `backbone.*`, `classifier.*`,
`aux_classifier.*`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import lecun_normal, torch_conv
from jaxcv.layers.residual import BottleneckBlock
from jaxcv.layers.upsample import resize
from jaxcv.models import common
from jaxcv.models.backbones.resnet import resnet_body

ModuleDef = Any


class FCNHead(nn.Module):
  """torchvision's `FCNHead(in, num_classes)`: 3x3 conv in -> in / 4 (no bias), BN, ReLU,
  Dropout(0.1), 1x1 conv with bias. `[B, h, w, in]` -> `[B, h, w, num_classes]`.

  Submodules `conv`, `bn`, `cls` (torch indices 0, 1, 4).
  """
  num_classes: int
  norm: ModuleDef
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = torch_conv(x.shape[-1] // 4, 3, dtype=self.dtype, kernel_init=lecun_normal,
                   name="conv")(x)
    x = nn.relu(self.norm(name="bn")(x))
    x = nn.Dropout(0.1, deterministic=not train)(x)
    return torch_conv(self.num_classes, 1, use_bias=True, dtype=self.dtype,
                      kernel_init=lecun_normal, name="cls")(x)


class SimpleSegmentation(nn.Module):
  """A dilated ResNet with a main head and an auxiliary FCNHead. `x`: `[B, H, W, 3]`, any size.

  Returns `(out [B, H, W, num_classes] float32, intermediates)`: `aux` (the auxiliary head's
  logits on stage3, `[B, H, W, num_classes]` float32, only when `aux_loss`), `stem`,
  `stage1`..`stage4`. `width` scales the backbone (64 as torchvision). The main head
  (`main_head(norm)`, the module named `head` on stage4) is an `FCNHead`, as torchvision's
  FCN; subclasses replace it (DeepLabv3: a `DeepLabHead`) and set `model_name`.
  """
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block_cls: ModuleDef = BottleneckBlock
  num_classes: int = 21
  width: int = 64
  aux_loss: bool = True
  replace_stride_with_dilation: Sequence[bool] = (False, True, True)
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  model_name = "simple_segmentation"  # in error messages

  def main_head(self, norm) -> nn.Module:
    return FCNHead(self.num_classes, norm, self.dtype, name="head")

  @nn.compact
  def __call__(self, x, train: bool = False):
    common.check_image(x, self.model_name)
    common.check_frozen(self.frozen_stages, ["stem", "stage1", "stage2", "stage3", "stage4",
                                             "head", "aux"], self.model_name)
    size = x.shape[1:3]

    def norm(stage):
      return common.batch_norm(train, stage, self.frozen_stages, self.dtype)

    out = resnet_body(x, stage_sizes=self.stage_sizes, block_cls=self.block_cls,
                      width=self.width, norm=norm, dtype=self.dtype,
                      replace_stride_with_dilation=self.replace_stride_with_dilation)
    y = self.main_head(norm("head"))(out["stage4"], train)
    if self.aux_loss:
      aux = FCNHead(self.num_classes, norm("aux"), self.dtype, name="aux")(out["stage3"], train)
      out["aux"] = resize(aux.astype(jnp.float32), size)
    return resize(y.astype(jnp.float32), size), out
