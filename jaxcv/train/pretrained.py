"""Starting a run from pretrained variables (transfer learning).

`transfer.init_from` names either another run's workdir (its latest checkpoint is read) or a
`.msgpack` file of variables, `{"params": ..., "batch_stats": ...}`, written with
`save_variables` (e.g. from `jaxcv.weights.torchvision.convert`). Top-level modules named in
`transfer.init_exclude` (by default the new `head`) keep their fresh initialisation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcv.weights.files import load_variables, save_variables  # noqa: F401 (re-exported)


def read_variables(path: str | Path) -> dict[str, Any]:
  """Reads `{"params", "batch_stats"}` from a msgpack file or a workdir's latest checkpoint."""
  path = Path(path)
  if path.is_file():
    return load_variables(path)
  ckpt_dir = path / "checkpoints"
  if not ckpt_dir.is_dir():
    raise FileNotFoundError(f"transfer.init_from {str(path)!r} is neither a variables file "
                            f"nor a workdir with a checkpoints/ folder")
  # Read-only: the source run's checkpoints are never pruned or written from here.
  with ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(
      read_only=True, create=False)) as mgr:
    step = mgr.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
  tree = ocp.StandardCheckpointer().restore(ckpt_dir / str(step) / "state")
  return {"params": tree["params"], "batch_stats": tree.get("batch_stats", {}) or {}}


def merge(target: dict, source: dict, exclude: tuple[str, ...], what: str) -> dict:
  """`target` with every top-level entry not in `exclude` replaced by `source`'s."""
  out = dict(target)
  for name, sub in target.items():
    if name in exclude:
      continue
    if name not in source:
      raise ValueError(f"pretrained {what} have no {name!r}; they have {sorted(source)}")
    want = jax.tree.map(lambda x: tuple(x.shape), sub)
    got = jax.tree.map(lambda x: tuple(np.shape(x)), source[name])
    if want != got:
      raise ValueError(f"pretrained {what}[{name!r}] shapes {got} do not fit the model's "
                       f"{want}")
    out[name] = jax.tree.map(lambda t, s: np.asarray(s, dtype=t.dtype), sub, source[name])
  return out


def load_into(state, path: str | Path, exclude: tuple[str, ...], shardings) -> Any:
  """Returns `state` with pretrained params and batch_stats, placed with `shardings`."""
  loaded = read_variables(path)
  params = merge(state.params, loaded["params"], exclude, "params")
  stats = merge(state.batch_stats, loaded.get("batch_stats", {}), exclude, "batch_stats") \
      if state.batch_stats else state.batch_stats
  new = state.replace(params=params, batch_stats=stats)
  # The optimizer state was built for the fresh params; its shapes still fit.
  return jax.device_put(new, shardings)
