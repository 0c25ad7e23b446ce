"""Orbax checkpoints in the workdir: the last K, the best one, and safe restore.

`WORKDIR/checkpoints/<step>` holds the last `keep` saves (every `checkpoint_every` steps, at
the end, on SIGTERM); `WORKDIR/best/<step>` the one with the best `best_metric`. Parameters
are checked finite before every save, so a diverged state never replaces a good one. On
restore, a latest checkpoint that cannot be read is reported and skipped for the one before;
one whose shapes do not fit the model is an error that names the arrays.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
  """Raised instead of writing parameters that hold NaN or Inf."""


class CheckpointMismatchError(ValueError):
  """The checkpoint's arrays do not fit the state the config builds."""


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def all_finite(tree: Any) -> bool:
  """True when every float array in `tree` is free of NaN and Inf (one compiled reduction)."""
  return bool(_all_finite(tree))


def _manager(directory: Path, keep: int, best_metric: str | None = None,
             best_mode: str = "max") -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=False,
      best_fn=(lambda m: m[best_metric]) if best_metric else None,
      best_mode=best_mode, keep_checkpoints_without_metrics=False if best_metric else True)
  # Handlers named up front so that a fresh manager can read metadata before any restore.
  return ocp.CheckpointManager(
      directory, options=options,
      item_handlers={"state": ocp.StandardCheckpointHandler(),
                     "meta": ocp.JsonCheckpointHandler()})


class Checkpoints:
  """The workdir's checkpoint managers. `meta` is a small JSON dict saved beside the state."""

  def __init__(self, workdir: str | Path, keep: int = 3, best_metric: str | None = None,
               best_mode: str = "max"):
    workdir = Path(workdir).absolute()
    self.last = _manager(workdir / "checkpoints", keep)
    self.best = _manager(workdir / "best", 1, best_metric, best_mode) if best_metric else None
    self.best_metric = best_metric

  def save(self, step: int, state: Any, meta: dict | None = None,
           metrics: dict | None = None, last: bool = True) -> None:
    """Saves to `checkpoints/` if `last`, and offers `metrics` to `best/` (kept if they win)."""
    if not all_finite(state.params):
      raise NonFiniteError(f"parameters at step {step} are not finite: not saved; "
                           f"the last good checkpoint is step {self.last.latest_step()}")
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              meta=ocp.args.JsonSave(dict(meta or {}, step=step)))
    if last and self.last.latest_step() != step:
      self.last.save(step, args=args, force=True)
    if metrics is not None and self.best is not None and self.best_metric in metrics:
      metrics = {k: float(v) for k, v in metrics.items() if np.isscalar(v)}
      if self.best.latest_step() != step:
        self.best.save(step, args=args, metrics=metrics, force=True)

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def restore(self, abstract_state: Any) -> tuple[Any, dict] | None:
    """Restores the newest readable checkpoint into `abstract_state`'s shapes and shardings.

    Returns `(state, meta)`, or None when there is no checkpoint. Unreadable checkpoints are
    skipped with a warning, newest first; a shape mismatch raises CheckpointMismatchError.
    """
    manager = self.last
    manager.reload()
    steps = sorted(manager.all_steps(), reverse=True)
    for step in steps:
      try:
        meta_tree = manager.item_metadata(step)["state"]
        _check_shapes(abstract_state, meta_tree, manager.directory / str(step))
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["meta"])
      except CheckpointMismatchError:
        raise
      except Exception as e:  # noqa: BLE001 - any read failure means this one is unusable
        log.warning("checkpoint %s/%d cannot be read (%s: %s); trying the one before",
                    manager.directory, step, type(e).__name__, str(e)[:300])
    if steps:
      log.warning("no readable checkpoint in %s; starting from scratch", manager.directory)
    return None

  def close(self) -> None:
    self.last.close()
    if self.best is not None:
      self.best.close()


def _check_shapes(abstract_state: Any, meta_tree: Any, where: Path) -> None:
  """Compares the saved array shapes with the state the config builds, path by path."""
  want = {_path(p): tuple(x.shape)
          for p, x in jax.tree_util.tree_flatten_with_path(abstract_state)[0]}
  got = {_path(p): tuple(getattr(x, "shape", ()))
         for p, x in jax.tree_util.tree_flatten_with_path(
             meta_tree, is_leaf=lambda x: hasattr(x, "shape"))[0]}
  if not got:
    raise OSError(f"checkpoint {where} has no readable array metadata")
  missing = sorted(set(want) - set(got))
  extra = sorted(set(got) - set(want))
  wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
  if missing or extra or wrong:
    lines = [f"checkpoint {where} does not fit the model/optimizer of this config:"]
    lines += [f"  {k}: checkpoint {got[k]}, config {want[k]}" for k in wrong[:10]]
    if missing:
      lines.append(f"  not in checkpoint: {missing[:10]}")
    if extra:
      lines.append(f"  not in config: {extra[:10]}")
    lines.append("use a fresh --workdir, or the config that wrote this checkpoint")
    raise CheckpointMismatchError("\n".join(lines))


def _path(keys) -> str:
  """'params/conv/kernel' whether the tree used attributes, dict keys or indices."""
  names = []
  for k in keys:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        names.append(str(getattr(k, attr)))
        break
  return "/".join(names)
