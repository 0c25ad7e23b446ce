"""VGG (Simonyan & Zisserman 2015), torchvision's layout, with or without BatchNorm.

The variants differ only in how many 3x3 convs each of the 5 stages has
(`jaxcv.models.backbones.vgg.CONFIGS`; the conv stages are `backbones.vgg_body`).
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
from jaxcv.models.backbones.vgg import CONFIGS, vgg_body
from jaxcv.models.registry import register


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

    def norm(stage):  # None: the plain VGG
      return (common.batch_norm(train, stage, self.frozen_stages, self.dtype)
              if self.batch_norm else None)

    out = vgg_body(x, stage_sizes=self.stage_sizes, width=self.width, norm=norm,
                   dtype=self.dtype)
    x = common.flatten_chw(common.adaptive_avg_pool(out[names[-1]], (7, 7)))
    hidden = self.hidden or 4096 * self.width // 64
    x = out["pre_logits"] = common.Classifier(hidden, dtype=self.dtype,
                                              name="classifier")(x, train)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits.astype(jnp.float32), out


for _name, _sizes in CONFIGS.items():
  register(_name, functools.partial(VGG, stage_sizes=_sizes))
  register(f"{_name}_bn", functools.partial(VGG, stage_sizes=_sizes, batch_norm=True))
