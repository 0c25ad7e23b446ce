"""The course's two-layer MLP: flatten -> Dense(hidden) -> ReLU -> Dense(num_classes).

Params: `fc1` (the hidden layer) and `head`.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxcv.models import common
from jaxcv.models.registry import register


class MLP(nn.Module):
  """Two-layer perceptron on flattened pixels. `x`: float `[B, H, W, 3]`, any H, W.

  Returns `(logits [B, num_classes] float32, {"pre_logits": [B, hidden]})`.
  """
  num_classes: int = 10
  hidden: int = 128
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()  # no BatchNorm here; accepted for the common contract

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout or BatchNorm
    common.check_input(x, "mlp")
    common.check_frozen(self.frozen_stages, ("fc1", "head"), "mlp")
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x.reshape(x.shape[0], -1)))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits.astype(jnp.float32), {"pre_logits": x}


register("mlp", MLP)
