"""VGG (Simonyan & Zisserman 2015), torchvision's layout, with or without BatchNorm.

The variants differ only in how many 3x3 convs each of the 5 stages has (`CONFIGS`).
torchvision details kept for weight parity: `AdaptiveAvgPool2d((7, 7))` before the classifier
(so 32x32 input works: its 1x1 map is repeated to 7x7) and torch's C,H,W flatten order.

Params: `stage1`..`stage5` (`conv1`, [`bn1`], `conv2`, ...), `classifier` (`fc1`, `fc2`,
the 4096-wide fc6/fc7 with ReLU and dropout 0.5), `head` (the last Dense).
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxcv.models import common
from jaxcv.models.registry import register

# Convs per stage; stage i has width 64 * 2**i capped at 512 (scaled by width / 64).
CONFIGS = {"vgg11": (1, 1, 2, 2, 2), "vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
STAGE_WIDTHS = (64, 128, 256, 512, 512)


class ConvStage(nn.Module):
  """`num_convs` x (3x3 conv, [BN], ReLU), then 2x2 max pool: halves H and W."""
  num_convs: int
  features: int
  norm: Any = None  # a BatchNorm constructor, or None for the plain VGG
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i in range(1, self.num_convs + 1):
      x = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                  kernel_init=common.kaiming_fan_out, name=f"conv{i}")(x)
      if self.norm is not None:
        x = self.norm(name=f"bn{i}")(x)
      x = nn.relu(x)
    return common.max_pool(x, 2, 2)


class VGG(nn.Module):
  """VGG classifier. `x`: float `[B, H, W, 3]`, H, W >= 32.

  Returns `(logits [B, num_classes] float32, intermediates)` with `stage1`..`stage5`
  (strides 2..32) and `pre_logits` (`[B, hidden]`, the fc7 output).
  `width` scales the conv widths (64 in the paper); `hidden` is the fc6/fc7 width
  (default 4096 * width / 64).
  """
  stage_sizes: Sequence[int]
  batch_norm: bool = False
  num_classes: int = 1000
  width: int = 64
  hidden: int | None = None
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  @nn.compact
  def __call__(self, x, train: bool = False):
    common.check_input(x, "VGG", min_size=32)
    names = [f"stage{i + 1}" for i in range(len(self.stage_sizes))]
    common.check_frozen(self.frozen_stages, names + ["classifier", "head"], "VGG")
    out = {}
    for name, num_convs, base in zip(names, self.stage_sizes, STAGE_WIDTHS):
      norm = (common.batch_norm(train, name, self.frozen_stages, self.dtype)
              if self.batch_norm else None)
      x = out[name] = ConvStage(num_convs, base * self.width // 64, norm, self.dtype,
                                name=name)(x)
    x = common.flatten_chw(common.adaptive_avg_pool(x, (7, 7)))
    hidden = self.hidden or 4096 * self.width // 64
    x = out["pre_logits"] = common.Classifier(hidden, dtype=self.dtype,
                                              name="classifier")(x, train)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits.astype(jnp.float32), out


for _name, _sizes in CONFIGS.items():
  register(_name, functools.partial(VGG, stage_sizes=_sizes))
  register(f"{_name}_bn", functools.partial(VGG, stage_sizes=_sizes, batch_norm=True))
