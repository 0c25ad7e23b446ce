"""HRNetV2 for semantic segmentation (Wang et al. 2020, "Deep High-Resolution Representation
Learning for Visual Recognition"), as in the official HRNet-Semantic-Segmentation code
(`lib/models/seg_hrnet.py`).

Why: instead of going down to a coarse map and back up (FCN, SegNet, U-Net), HRNet keeps a
1/4-resolution branch through the whole network and adds lower-resolution branches stage by
stage, exchanging information between all of them again and again ("fusion"), so the output
map is both high-resolution and semantically strong.

Layout (W = `width`; official W18 / W32 / W48 configs: modules 1, 1, 4, 3 per stage, 4 blocks
per branch, branch widths W, 2W, 4W, 8W):
- `stem`: two 3x3 stride-2 convs (64 channels), BN, ReLU: stride 4.
- `stage1`: 4 bottleneck blocks (64 -> 256 channels), stride 4.
- `stage2`..`stage4`: 2, 3, 4 parallel branches at strides 4, 8, 16, 32 made of basic blocks.
  Each stage starts with the transition of the official code (a 3x3 conv + BN + ReLU where a
  kept branch changes width; a new branch is made from the previous stage's lowest-resolution
  output by stride-2 3x3 convs + BN + ReLU), then repeats HR modules: every branch runs its
  blocks, then each output branch i sums all branches j brought to its resolution -- j > i:
  1x1 conv + BN, then bilinear resize to branch i's size; j < i: i - j stride-2 3x3 convs
  (BN, ReLU between them, BN only after the last) -- followed by a ReLU.
- `neck`: branches 2..4 bilinearly resized to branch 1's size and concatenated (15W
  channels), 1x1 conv (with bias) + BN + ReLU.
- `head`: 1x1 conv (with bias) to `num_classes`, bilinearly resized to the input size (the
  official code resizes in its loss and at test time; here the model does it).

Bilinear resizes use `jaxcv.layers.resize` (torch `F.interpolate`) with `align_corners=True` by
default, as the official pytorch-v1.1 and HRNet-OCR branches whose released Cityscapes weights
use it ("we use align_corners = True for upsampling in HRNet", their README); the older master
branch (PyTorch 0.4.1) resized with torch's default, `align_corners=False`.
Blocks, stages and convs are the shared ones (`jaxcv.layers.BasicBlock`, `BottleneckBlock`,
`ResNetStage` at stride 1, `torch_conv`, `ConvNormAct`). BatchNorm: torch momentum 0.1, eps
1e-5. Convs: kaiming normal (fan_out) init rather than the official N(0, 0.001), which is
meant for ImageNet-pretrained starts and trains slowly from scratch. Any input size of at
least 32 works (strides round up, as in torch with padding 1).

Params: `stem` (conv1, bn1, conv2, bn2), `stage1` (block1..), `stage2`..`stage4`
(`transition{i}`, `module{m}` with `branch{i}` (block1..) and `fuse{i}_{j}`, 1-based), `neck`,
`head`. Registered: `hrnet_w18`, `hrnet_w32`, `hrnet_w48`; `width`, `stem_width`,
`num_modules` and `num_blocks` shrink them for tests.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import ConvNormAct, kaiming_fan_out, torch_conv
from jaxcv.layers.residual import BasicBlock, BottleneckBlock, ResNetStage
from jaxcv.layers.upsample import resize
from jaxcv.models import common
from jaxcv.models.registry import register

ModuleDef = Any


class ConvBN(nn.Module):
  """`len(widths)` x (3x3 conv of stride `strides`, BN, ReLU); no ReLU after the last one
  when `last_relu` is False. Submodules `conv1`, `bn1`, ... Also the stem (two convs at
  stride 2: `[B, H, W, 3]` -> `[B, H/4, W/4, stem_width]`) and a fusion path from branch j
  down to branch i (`i - j` convs at stride 2)."""
  widths: Sequence[int]
  strides: int
  norm: ModuleDef
  last_relu: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for k, features in enumerate(self.widths, 1):
      x = torch_conv(features, 3, self.strides, dtype=self.dtype, name=f"conv{k}")(x)
      x = self.norm(name=f"bn{k}")(x)
      if self.last_relu or k < len(self.widths):
        x = nn.relu(x)
    return x


class HRModule(nn.Module):
  """One multi-resolution module: basic blocks on every branch, then fusion.

  `xs`: branch features `[B, H_i, W_i, channels[i]]`, H_{i+1} = ceil(H_i / 2). Returns the
  fused branches, same shapes.
  """
  channels: Sequence[int]
  num_blocks: int
  norm: ModuleDef
  align_corners: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, xs):
    xs = list(xs)
    for i, c in enumerate(self.channels):
      xs[i] = ResNetStage(BasicBlock, self.num_blocks, c, 1, self.norm, self.dtype,
                          name=f"branch{i + 1}")(xs[i])
    if len(xs) == 1:
      return xs
    fused = []
    for i, ci in enumerate(self.channels):
      y = None
      for j, cj in enumerate(self.channels):
        name = f"fuse{i + 1}_{j + 1}"
        if j == i:
          z = xs[j]
        elif j > i:  # lower resolution: 1x1 conv + BN, then up to branch i's size
          z = ConvNormAct(ci, 1, norm=self.norm, act=None, kernel_init=kaiming_fan_out,
                          dtype=self.dtype, name=name)(xs[j])
          z = resize(z, xs[i].shape[1:3], "bilinear", self.align_corners)
        else:  # higher resolution: i - j stride-2 3x3 convs
          z = ConvBN([cj] * (i - j - 1) + [ci], 2, self.norm, last_relu=False, dtype=self.dtype,
                     name=name)(xs[j])
        y = z if y is None else y + z
      fused.append(nn.relu(y))
    return fused


class HRStage(nn.Module):
  """Stage k >= 2: the transition from the previous stage's branches to `channels`, then
  `num_modules` HR modules."""
  channels: Sequence[int]
  num_modules: int
  num_blocks: int
  norm: ModuleDef
  align_corners: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, xs):
    prev = len(xs)
    branches = []
    for i, c in enumerate(self.channels):
      name = f"transition{i + 1}"
      if i < prev:  # a kept branch: a 3x3 conv only where its width changes
        x = xs[i]
        if x.shape[-1] != c:
          x = ConvBN([c], 1, self.norm, dtype=self.dtype, name=name)(x)
      else:  # a new branch from the lowest-resolution one, i + 1 - prev stride-2 convs
        c_last = xs[-1].shape[-1]
        x = ConvBN([c_last] * (i - prev) + [c], 2, self.norm, dtype=self.dtype,
                   name=name)(xs[-1])
      branches.append(x)
    for m in range(1, self.num_modules + 1):
      branches = HRModule(self.channels, self.num_blocks, self.norm, self.align_corners,
                          self.dtype, name=f"module{m}")(branches)
    return tuple(branches)


class HRNet(nn.Module):
  """HRNetV2 segmentation model. `x`: float `[B, H, W, 3]`, H, W >= 32 (any size).

  Returns `(logits [B, H, W, num_classes] float32, intermediates)`; intermediates: `stem`
  (`[B, H/4, W/4, stem_width]`), `stage1` (`[B, H/4, W/4, 4 * stem_width]`), `stage2`..
  `stage4` (tuples of the branch outputs, strides 4, 8, 16, 32, widths W, 2W, 4W, 8W) and
  `pre_logits` (`[B, H/4, W/4, 15W]`, the neck output); "H/4" rounds up.

  `width`: W (18, 32, 48 for the published models); `stem_width`: 64 in the paper (stage 1
  then has 256 channels); `num_modules`: HR modules per stage (the first must be 1, stage 1
  is a plain bottleneck layer); `num_blocks`: blocks per stage-1 layer and per branch.
  """
  width: int = 18
  num_classes: int = 19
  stem_width: int = 64
  num_modules: Sequence[int] = (1, 1, 4, 3)
  num_blocks: Sequence[int] = (4, 4, 4, 4)
  align_corners: bool = True
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    if len(self.num_modules) != 4 or self.num_modules[0] != 1 or min(self.num_modules) < 1:
      raise ValueError(f"HRNet: num_modules must be 4 positive counts with 1 for stage 1; got "
                       f"{tuple(self.num_modules)}")
    if len(self.num_blocks) != 4 or min(self.num_blocks) < 1:
      raise ValueError(f"HRNet: num_blocks must be 4 positive counts; got "
                       f"{tuple(self.num_blocks)}")
    if min(self.width, self.stem_width, self.num_classes) < 1:
      raise ValueError(f"HRNet: width, stem_width and num_classes must be >= 1; got "
                       f"{self.width}, {self.stem_width}, {self.num_classes}")
    common.check_input(x, "HRNet", min_size=32)
    stages = ["stem", "stage1", "stage2", "stage3", "stage4", "neck", "head"]
    common.check_frozen(self.frozen_stages, stages, "HRNet")
    norm = lambda stage: common.batch_norm(train, stage, self.frozen_stages, self.dtype)
    size_in = x.shape[1:3]
    out = {}
    x = out["stem"] = ConvBN([self.stem_width] * 2, 2, norm("stem"), dtype=self.dtype,
                             name="stem")(x.astype(self.dtype))
    x = out["stage1"] = ResNetStage(BottleneckBlock, self.num_blocks[0], self.stem_width, 1,
                                    norm("stage1"), self.dtype, name="stage1")(x)
    xs = (x,)
    for k in (2, 3, 4):
      channels = [self.width * 2**i for i in range(k)]
      xs = out[f"stage{k}"] = HRStage(channels, self.num_modules[k - 1],
                                      self.num_blocks[k - 1], norm(f"stage{k}"),
                                      self.align_corners, self.dtype, name=f"stage{k}")(xs)
    size = xs[0].shape[1:3]
    y = jnp.concatenate([xs[0]] + [resize(b, size, "bilinear", self.align_corners)
                                   for b in xs[1:]], axis=-1)
    y = out["pre_logits"] = ConvNormAct(y.shape[-1], 1, norm=norm("neck"), use_bias=True,
                                        kernel_init=kaiming_fan_out, dtype=self.dtype,
                                        name="neck")(y)
    logits = torch_conv(self.num_classes, 1, use_bias=True, dtype=self.dtype, name="head")(y)
    logits = resize(logits.astype(jnp.float32), size_in, "bilinear", self.align_corners)
    return logits, out


for _w in (18, 32, 48):
  register(f"hrnet_w{_w}", functools.partial(HRNet, width=_w))
