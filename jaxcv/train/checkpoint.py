"""Orbax checkpoints in the workdir: the last K, the best one, and safe restore.

`WORKDIR/checkpoints/<step>` holds the last `keep` saves (every `checkpoint_every` steps, at
the end, on SIGTERM); `WORKDIR/best/<step>` the one with the best `best_metric`. Parameters
are checked finite before every save, so a diverged state never replaces a good one.

Restore tries `checkpoints/` newest first. A checkpoint that does not fit the model is an
error that names the arrays (CheckpointMismatchError). One that cannot be read (any other
failure to restore it, except out-of-memory and XLA runtime errors, which are re-raised:
orbax reports damaged array files as a bare Exception, damaged metadata as a
JSONDecodeError) is moved aside to `WORKDIR/checkpoints.corrupt/<step>` (`<step>.2`, ... if
that exists), with a warning naming the step, where it went and the error, and the one
before is tried; with none readable the run starts from step 0. Before that, `best/` is
checked for what a run reads of it (its metrics and metadata: orbax reads every best
checkpoint's metrics when the manager opens); an unreadable one goes to
`WORKDIR/best.corrupt/<step>`. Moved checkpoints stay on disk, outside the folders orbax
manages (its docs ask for no extra entries there), so nothing is deleted and the next save of
the same step does not collide with a damaged folder (orbax's StepAlreadyExistsError). What
was moved is in `Checkpoints.moved`; the loop writes it to `metrics.jsonl` as an event
record.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_manager import METRIC_ITEM_NAME

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


def corrupt_dir(directory: Path) -> Path:
  """Where unreadable checkpoints of `directory` (`checkpoints/`, `best/`) are moved: the
  sibling `<name>.corrupt/`, outside the folder orbax manages."""
  return directory.with_name(directory.name + ".corrupt")


# Restoring failed for a reason that is not the checkpoint's: re-raised, never moved aside.
_NOT_CORRUPTION = (CheckpointMismatchError, MemoryError, jax.errors.JaxRuntimeError)


class Checkpoints:
  """The workdir's checkpoint managers. `meta` is a small JSON dict saved beside the state.

  `moved` lists the unreadable checkpoints moved aside (module docstring), each
  `{"step", "from", "to", "error"}` with paths relative to the workdir.
  """

  def __init__(self, workdir: str | Path, keep: int = 3, best_metric: str | None = None,
               best_mode: str = "max"):
    self.workdir = Path(workdir).absolute()
    self.moved: list[dict] = []
    self.last = _manager(self.workdir / "checkpoints", keep)
    self.best = None
    if best_metric:
      self._set_aside_unreadable_best(self.workdir / "best")
      self.best = _manager(self.workdir / "best", 1, best_metric, best_mode)
    self.best_metric = best_metric

  def _move_aside(self, directory: Path, step: int, error: BaseException, then: str) -> None:
    """Moves `directory/<step>` to `corrupt_dir(directory)`, logs and records it."""
    src = directory / str(step)
    dst_dir = corrupt_dir(directory)
    dst, n = dst_dir / str(step), 1
    while dst.exists():  # damaged again after an earlier move: keep both
      n += 1
      dst = dst_dir / f"{step}.{n}"
    why = f"{type(error).__name__}: {str(error)[:300]}"
    # one process moves (multi-process runs are not supported yet; see the README)
    if jax.process_index() == 0:
      dst_dir.mkdir(parents=True, exist_ok=True)
      src.rename(dst)
    log.warning("checkpoint %s cannot be read (%s); moved to %s; %s", src, why, dst, then)
    self.moved.append({"step": int(step), "from": str(src.relative_to(self.workdir)),
                       "to": str(dst.relative_to(self.workdir)), "error": why})

  def _set_aside_unreadable_best(self, directory: Path) -> None:
    """Moves aside the `best/` checkpoints whose metrics or array metadata cannot be read.

    Orbax reads every best checkpoint's metrics when a manager opens that folder (read-only
    ones too) and raises on a damaged file, so each step folder is probed on its own first,
    reading what orbax reads: `<step>/metrics/metrics` (JSON) and the state's metadata. The
    arrays are not read: no run restores from `best/`.
    """
    if not directory.is_dir():
      return
    for step_dir in sorted((d for d in directory.iterdir() if d.is_dir() and d.name.isdigit()),
                           key=lambda d: int(d.name)):
      try:
        metrics = step_dir / METRIC_ITEM_NAME
        if metrics.exists():  # a missing one orbax accepts (no metrics recorded)
          ocp.JsonCheckpointHandler(filename=METRIC_ITEM_NAME).restore(metrics)
        if not ocp.StandardCheckpointHandler().metadata(step_dir / "state"):
          raise OSError(f"{step_dir / 'state'} has no readable array metadata")
      except _NOT_CORRUPTION:
        raise
      except Exception as e:  # noqa: BLE001 - orbax's errors for damaged files vary
        self._move_aside(directory, int(step_dir.name), e,
                         "the next evaluation saves a new best checkpoint")

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

    Returns `(state, meta)`, or None when there is no readable checkpoint. Unreadable ones
    are moved aside to `checkpoints.corrupt/` with a warning, newest first, until one
    restores (module docstring); a shape mismatch raises CheckpointMismatchError.
    """
    manager = self.last
    manager.reload()
    directory = Path(manager.directory)
    steps = sorted(manager.all_steps(), reverse=True)
    try:
      for i, step in enumerate(steps):
        try:
          meta_tree = manager.item_metadata(step)["state"]
          _check_shapes(abstract_state, meta_tree, directory / str(step))
          restored = manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
          return restored["state"], dict(restored["meta"])
        except _NOT_CORRUPTION:
          raise
        except Exception as e:  # noqa: BLE001 - orbax's errors for damaged files vary
          self._move_aside(directory, step, e, "trying the one before" if i + 1 < len(steps)
                           else "no older checkpoint left")
    finally:
      manager.reload()  # the moved steps are gone: the next save of theirs must not collide
    if steps:
      log.warning("no readable checkpoint in %s; starting from scratch (the unreadable ones "
                  "are kept in %s)", directory, corrupt_dir(directory))
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
