"""AlexNet, torchvision's single-tower variant (Krizhevsky 2014, "One weird trick").

Layout as torchvision, for weight parity: `AdaptiveAvgPool2d((6, 6))` before the classifier,
C,H,W flatten order, dropout before each of fc6 and fc7. No local response normalisation.

Params: `stage1` (`conv1`, 11x11/4), `stage2` (`conv1`, 5x5), `stage3` (`conv1`..`conv3`,
3x3), each stage ending in a 3x3/2 max pool; `classifier` (`fc1`, `fc2`); `head`.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxcv.models import common
from jaxcv.models.registry import register

# (kernel, stride, padding, base width) of each conv, grouped by stage (pool after each stage).
STAGES = (((11, 4, 2, 64),), ((5, 1, 2, 192),),
          ((3, 1, 1, 384), (3, 1, 1, 256), (3, 1, 1, 256)))
# Smallest input whose three 3x3/2 pools still get a 3x3 map: 63 -> 15 -> 7 -> 3.
MIN_SIZE = 63


class ConvPoolStage(nn.Module):
  """Convs (each + ReLU) then a 3x3/2 max pool."""
  convs: Sequence[tuple[int, int, int, int]]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i, (kernel, stride, pad, features) in enumerate(self.convs, start=1):
      x = nn.Conv(features, (kernel, kernel), (stride, stride), padding=((pad, pad),) * 2,
                  dtype=self.dtype, name=f"conv{i}")(x)
      x = nn.relu(x)
    return common.max_pool(x, 3, 2)


class AlexNet(nn.Module):
  """AlexNet classifier. `x`: float `[B, H, W, 3]`, H, W >= 63 (224 in the paper).

  Returns `(logits [B, num_classes] float32, intermediates)` with `stage1`..`stage3` and
  `pre_logits` (`[B, hidden]`). `width` scales the conv widths (64 = torchvision);
  `hidden` is the fc6/fc7 width (default 4096 * width / 64).
  """
  num_classes: int = 1000
  width: int = 64
  hidden: int | None = None
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()  # no BatchNorm here; accepted for the common contract

  @nn.compact
  def __call__(self, x, train: bool = False):
    common.check_input(x, "AlexNet", min_size=MIN_SIZE)
    names = [f"stage{i + 1}" for i in range(len(STAGES))]
    common.check_frozen(self.frozen_stages, names + ["classifier", "head"], "AlexNet")
    out = {}
    for name, convs in zip(names, STAGES):
      convs = tuple((k, s, p, f * self.width // 64) for k, s, p, f in convs)
      x = out[name] = ConvPoolStage(convs, self.dtype, name=name)(x)
    x = common.flatten_chw(common.adaptive_avg_pool(x, (6, 6)))
    hidden = self.hidden or 4096 * self.width // 64
    x = out["pre_logits"] = common.Classifier(hidden, dropout_first=True, dtype=self.dtype,
                                       name="classifier")(x, train)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits.astype(jnp.float32), out


register("alexnet", AlexNet)
