"""ResNet v1.5 (He et al. 2016; torchvision's variant) classifiers, layer for layer as
torchvision: the shared ResNet body (`jaxcv.models.backbones.resnet_body`: stem, residual
stages of `jaxcv.layers.BasicBlock` / `BottleneckBlock`), global average pooling, `head`.

v1.5: a bottleneck block strides on its 3x3 conv, not on the first 1x1. Paddings are torch's
explicit ones (flax 'SAME' pads differently on stride 2), so converted torchvision weights
(`jaxcv.weights.torchvision`) give the same outputs.

Params: `stem` (conv, bn), `stage1`..`stage4` (`block1`.. with `conv1`, `bn1`, ...,
`downsample_conv`, `downsample_bn`), `head` (Dense).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxcv.layers.residual import BasicBlock, BottleneckBlock
from jaxcv.models import common
from jaxcv.models.backbones.resnet import resnet_body
from jaxcv.models.registry import register

ModuleDef = Any


class ResNet(nn.Module):
  """ResNet classifier. `x`: float `[B, H, W, 3]`, H, W >= 32, unnormalised by the model.

  Returns `(logits [B, num_classes] float32, intermediates)` with intermediates `stem`
  (stride 4, after the max pool), `stage1`..`stage4` (strides 4, 8, 16, 32) and
  `pre_logits` (`[B, 8*width]` basic, `[B, 32*width]` bottleneck).
  `width` is the stem/stage1 width (64 in the paper); stages double it.
  `replace_stride_with_dilation` (3 bools for stages 2-4, torchvision's argument) trades a
  stage's stride for dilation (`jaxcv.layers.stage_plan`); the parameters are the same.
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
    stages = ["stem"] + [f"stage{i + 1}" for i in range(len(self.stage_sizes))] + ["head"]
    common.check_frozen(self.frozen_stages, stages, "ResNet")
    out = resnet_body(
        x, stage_sizes=self.stage_sizes, block_cls=self.block_cls, width=self.width,
        norm=lambda stage: common.batch_norm(train, stage, self.frozen_stages, self.dtype),
        dtype=self.dtype, replace_stride_with_dilation=self.replace_stride_with_dilation)
    x = out["pre_logits"] = common.global_avg_pool(out[stages[-2]])
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
