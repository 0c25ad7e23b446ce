"""LeNet-5 (LeCun et al. 1998) in the modern course version, on 32x32 input.

Modern choices, not the paper's: ReLU instead of scaled tanh, max pooling instead of the
trainable subsampling layers, and a full C3 (every map sees all 6 inputs, not the paper's
sparse connection table). Shapes: 32 -> conv5x5 6 -> 28 -> pool -> 14 -> conv5x5 16 -> 10
-> pool -> 5 -> flatten 400 -> fc 120 -> fc 84 -> head.

Params: `stage1` (`conv`), `stage2` (`conv`), `classifier` (`fc1` 120, `fc2` 84), `head`.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxcv.models import common
from jaxcv.models.registry import register


class ConvPool(nn.Module):
  """5x5 valid conv, ReLU, 2x2 max pool."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(self.features, (5, 5), padding="VALID", dtype=self.dtype,
                        name="conv")(x))
    return common.max_pool(x, 2, 2)


class FullyConnected(nn.Module):
  """Dense + ReLU layers of the given widths."""
  widths: Sequence[int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i, w in enumerate(self.widths, start=1):
      x = nn.relu(nn.Dense(w, dtype=self.dtype, name=f"fc{i}")(x))
    return x


class LeNet5(nn.Module):
  """LeNet-5. `x`: float `[B, 32, 32, 3]` (gray images repeated in 3 channels).

  Returns `(logits [B, num_classes] float32, intermediates)` with `stage1` `[B, 14, 14, 6]`,
  `stage2` `[B, 5, 5, 16]`, `pre_logits` `[B, 84]`.
  """
  num_classes: int = 10
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()  # no BatchNorm here; accepted for the common contract

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout or BatchNorm
    common.check_input(x, "lenet5", exact_size=32)
    common.check_frozen(self.frozen_stages, ("stage1", "stage2", "classifier", "head"),
                        "lenet5")
    out = {}
    x = out["stage1"] = ConvPool(6, self.dtype, name="stage1")(x)
    x = out["stage2"] = ConvPool(16, self.dtype, name="stage2")(x)
    x = out["pre_logits"] = FullyConnected((120, 84), self.dtype, name="classifier")(
        x.reshape(x.shape[0], -1))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits.astype(jnp.float32), out


register("lenet5", LeNet5)
