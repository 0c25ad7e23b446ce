"""Variables files: `{"params": ..., "batch_stats": ...}` as msgpack, the format converted
weights are written in and `transfer.init_from` reads (`jaxcv.train.pretrained`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np


def save_variables(path: str | Path, variables: dict[str, Any]) -> None:
  """Writes variables (params, batch_stats) to a msgpack file `init_from` can read."""
  Path(path).write_bytes(flax.serialization.msgpack_serialize(
      jax.tree.map(np.asarray, dict(variables))))


def load_variables(path: str | Path) -> dict[str, Any]:
  """Reads a msgpack variables file written by `save_variables`."""
  return flax.serialization.msgpack_restore(Path(path).read_bytes())
