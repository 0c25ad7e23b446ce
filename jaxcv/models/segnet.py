"""SegNet (Badrinarayanan, Kendall & Cipolla 2017): an encoder-decoder that upsamples with the
encoder's max-pooling indices.

Encoder: VGG-16's 13 convs (3x3, BatchNorm, ReLU) in 5 stages, each ending in a 2x2/2 max pool
that also returns the position of every maximum (`jaxcv.layers.max_pool_with_indices`).
Decoder: the mirror image; decoder stage i first max-unpools (`jaxcv.layers.max_unpool`) with
encoder stage i's indices, which puts each value back where its maximum came from (zeros
elsewhere), then densifies the sparse map with 3x3 conv + BN + ReLU. As in the authors' Caffe
model, the last conv of decoder stage i changes the width to that of stage i - 1, and the
last conv of decoder stage 1 is the per-pixel classifier (`head`, 3x3, no BN), so the decoder
also has 13 convs. Only indices go from encoder to decoder (no feature maps, unlike U-Net).

The encoder's modules are named as in `jaxcv.models.vgg` (`stageK/conv1`, `stageK/bn1`, ...,
convs with bias), so `vgg16_bn` parameters (e.g. converted ImageNet weights) load into it.

Params: `stage1`..`stageN` (encoder), `decoderN`..`decoder1`, `head`.
Registered: `segnet` (VGG-16 layout, `width` 64); `stage_sizes` and `width` shrink it.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers import pooling
from jaxcv.layers.conv_norm_act import torch_conv
from jaxcv.models import common
from jaxcv.models.backbones.vgg import CONFIGS, STAGE_WIDTHS
from jaxcv.models.registry import register

ModuleDef = Any
# VGG-16: convs per stage (the paper's widths are STAGE_WIDTHS, scaled by width / 64).
VGG16_STAGES = CONFIGS["vgg16"]


def _conv(features: int, dtype, name: str) -> nn.Conv:
  return torch_conv(features, 3, use_bias=True, dtype=dtype, name=name)


class ConvBlock(nn.Module):
  """`len(widths)` x (3x3 conv with bias, BN, ReLU): `[B, H, W, Cin]` -> `[B, H, W, widths[-1]]`.

  Submodules `conv1`, `bn1`, `conv2`, ... (the names of `jaxcv.models.backbones.vgg.ConvStage`).
  """
  widths: Sequence[int]
  norm: ModuleDef
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i, features in enumerate(self.widths, 1):
      x = _conv(features, self.dtype, f"conv{i}")(x)
      x = nn.relu(self.norm(name=f"bn{i}")(x))
    return x


class SegNet(nn.Module):
  """SegNet. `x`: float `[B, H, W, 3]` with H and W divisible by `2**len(stage_sizes)`.

  Returns `(logits [B, H, W, num_classes] float32, intermediates)`; intermediates:
  `stage1`..`stageN` (encoder outputs after pooling, strides 2..2**N), `decoderN`..`decoder2`
  (decoder stage outputs, strides 2**(N-1)..2), `decoder1` = `pre_logits` (the features the
  classifier sees, full resolution). With `mutable=["intermediates"]` the model also sows,
  per stage i, `encoder{i}` (the features before pool i), `decoded{i}` (what unpool i puts
  back: the pooled values for the deepest stage, else the output of decoder stage i + 1) and
  `unpooled{i}` (the sparse map after unpool i).

  `stage_sizes`: convs per stage (VGG-16: 2, 2, 3, 3, 3); `width`: first-stage width (64 in
  the paper); stage k has `STAGE_WIDTHS[k] * width // 64` channels.
  """
  stage_sizes: Sequence[int] = VGG16_STAGES
  num_classes: int = 21
  width: int = 64
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    n = len(self.stage_sizes)
    if not 1 <= n <= len(STAGE_WIDTHS) or min(self.stage_sizes) < 1:
      raise ValueError(f"SegNet: stage_sizes must be 1..{len(STAGE_WIDTHS)} positive conv "
                       f"counts; got {tuple(self.stage_sizes)}")
    if self.width < 1 or self.num_classes < 1:
      raise ValueError(f"SegNet: width and num_classes must be >= 1; got {self.width}, "
                       f"{self.num_classes}")
    common.check_input(x, "SegNet", min_size=2**n)
    h, w = x.shape[1:3]
    if h % 2**n or w % 2**n:
      raise ValueError(f"SegNet with {n} pooling stages needs H and W divisible by {2**n}; "
                       f"got {h}x{w}")
    encoders = [f"stage{i}" for i in range(1, n + 1)]
    decoders = [f"decoder{i}" for i in range(n, 0, -1)]
    common.check_frozen(self.frozen_stages, encoders + decoders + ["head"], "SegNet")
    norm = lambda stage: common.batch_norm(train, stage, self.frozen_stages, self.dtype)
    widths = [max(1, c * self.width // 64) for c in STAGE_WIDTHS[:n]]

    out, pools = {}, []
    x = x.astype(self.dtype)
    for i, (name, convs) in enumerate(zip(encoders, self.stage_sizes), 1):
      x = ConvBlock([widths[i - 1]] * convs, norm(name), self.dtype, name=name)(x)
      self.sow("intermediates", f"encoder{i}", x)
      size = x.shape[1:3]
      x, indices = pooling.max_pool_with_indices(x, 2, 2)
      pools.append((indices, size))
      out[name] = x

    for i in range(n, 0, -1):
      name = f"decoder{i}"
      self.sow("intermediates", f"decoded{i}", x)
      indices, size = pools[i - 1]
      x = pooling.max_unpool(x, indices, size)
      self.sow("intermediates", f"unpooled{i}", x)
      convs = self.stage_sizes[i - 1]
      # Decoder stage i mirrors encoder stage i; its last conv narrows to stage i - 1's width.
      # In stage 1 that last conv is the classifier, outside the block.
      block = ([widths[i - 1]] * (convs - 1) + [widths[i - 2]] if i > 1
               else [widths[0]] * (convs - 1))
      if block:
        x = ConvBlock(block, norm(name), self.dtype, name=name)(x)
      out[name] = x
    out["pre_logits"] = x
    logits = _conv(self.num_classes, self.dtype, "head")(x)
    return logits.astype(jnp.float32), out


register("segnet", functools.partial(SegNet, stage_sizes=VGG16_STAGES))
