"""The train state: everything a step reads and writes, one pytree, checkpointed whole."""
from __future__ import annotations

from typing import Any

import flax
import jax


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 scalar: steps taken; also the data position
  params: Any
  batch_stats: Any         # {} for models without BatchNorm
  opt_state: Any
  rng: jax.Array           # PRNG key (raw uint32) for dropout and other stochastic layers

  @property
  def variables(self) -> dict[str, Any]:
    v = {"params": self.params}
    if self.batch_stats:
      v["batch_stats"] = self.batch_stats
    return v
