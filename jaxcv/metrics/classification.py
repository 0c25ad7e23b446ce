"""Classification metrics: top-k accuracy, confusion matrix, precision / recall / F1.

Why: evaluation accumulates over many batches inside a jitted loop, so everything here is a
pure jnp function of static-shaped arrays (usable under `jax.jit`, `jax.vmap` and on sharded
arrays) whose state is a small pytree of counts; the final numbers come from the counts, on
device or on the host (NumPy arrays in, NumPy numbers out).

Conventions:
- `logits` float `[..., C]` (any scores; only their order matters), `labels` / `preds` int
  `[...]` class indices 0..C-1, `valid` bool broadcastable from the left (`[B]` for `[B, ...]`
  labels, e.g. a batch's `example_valid`); rows where it is False are not counted.
- Confusion matrices are `[C, C]` int32 counts, row = true class, column = predicted class
  (as `sklearn.metrics.confusion_matrix`).
- Top-k ties: classes are ranked by score, equal scores by class index, lower first, which is
  `jax.lax.top_k`'s order (and the classification task's `top5`). A sample is a top-k hit when
  its label ranks among the first k. sklearn's `top_k_accuracy_score` breaks ties the other way
  (higher index first); the two differ only on tied scores.
- Labels or predictions outside 0..C-1 raise ValueError when the arrays are concrete (eager
  calls); under `jit` values cannot be checked, and such rows are left out of the counts.

Use in an evaluation loop:
  state = init(num_classes, ks=(1, 5))
  state = jax.jit(update)(state, logits, labels, valid)   # per batch
  result = compute(state)  # accuracy, top1, top5, precision/recall/f1 (macro, micro, weighted)
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete(*xs) -> bool:
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _expand_valid(valid, shape):
  """`valid` broadcast from the left to `shape` (`[B]` against `[B, H, W]`), as bool."""
  if valid is None:
    return jnp.ones(shape, bool)
  valid = jnp.asarray(valid)
  if valid.ndim > len(shape) or tuple(shape[:valid.ndim]) != tuple(valid.shape):
    raise ValueError(f"valid has shape {valid.shape}; it must be a leading part of the "
                     f"shape {tuple(shape)} (e.g. [B] for [B, ...])")
  valid = valid.reshape(valid.shape + (1,) * (len(shape) - valid.ndim))
  return jnp.broadcast_to(valid.astype(bool), shape)


def _check_classes(name, x, num_classes, allowed=None):
  """Raises ValueError for concrete class values outside 0..num_classes-1 (or `allowed`)."""
  if not _is_concrete(x):
    return
  x = np.asarray(x)
  bad = (x < 0) | (x >= num_classes)
  if allowed is not None:
    bad &= x != allowed
  if bad.any():
    raise ValueError(f"{name} has values outside 0..{num_classes - 1}"
                     + ("" if allowed is None else f" (and other than {allowed})")
                     + f": {np.unique(x[bad])[:10].tolist()}")


def confusion_counts(labels, preds, num_classes: int, mask, dtype=jnp.int32):
  """`[C, C]` counts of (label, pred) pairs where `mask`; rows/values out of range dropped.

  labels, preds int `[...]`, mask bool of the same shape. Counts via `segment_sum` (a
  scatter-add), so it runs on sharded inputs without gathering them.
  """
  if labels.shape != preds.shape or mask.shape != labels.shape:
    raise ValueError(f"labels {labels.shape}, predictions {preds.shape} and mask "
                     f"{mask.shape} must have the same shape")
  c = num_classes
  labels = labels.astype(jnp.int32)
  preds = preds.astype(jnp.int32)
  ok = mask & (labels >= 0) & (labels < c) & (preds >= 0) & (preds < c)
  idx = jnp.where(ok, labels * c + preds, 0).reshape(-1)
  counts = jax.ops.segment_sum(ok.reshape(-1).astype(dtype), idx, num_segments=c * c)
  return counts.reshape(c, c)


def _check_num_classes(num_classes):
  if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")


def confusion_matrix(preds, labels, num_classes: int, valid=None, dtype=jnp.int32):
  """int `[C, C]` confusion matrix, row = true class, column = predicted class.

  preds, labels: int `[...]` class indices 0..C-1 of the same shape; valid: bool, a leading
  part of that shape (rows where False are not counted). `dtype` int32 (int64 needs x64).
  """
  _check_num_classes(num_classes)
  preds, labels = jnp.asarray(preds), jnp.asarray(labels)
  if preds.shape != labels.shape:
    raise ValueError(f"predictions {preds.shape} and labels {labels.shape} differ in shape")
  _check_classes("labels", labels, num_classes)
  _check_classes("predictions", preds, num_classes)
  return confusion_counts(labels, preds, num_classes, _expand_valid(valid, labels.shape), dtype)


def top_k_hits(logits, labels, k: int):
  """bool `[...]`: whether each label ranks among the first k classes of `logits` `[..., C]`.

  Rank of the label = number of classes with a higher score, plus those with an equal score
  and a lower index (`jax.lax.top_k`'s order). No sort, so it is cheap for any k.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
    raise ValueError(f"logits {logits.shape} must be labels' shape {labels.shape} plus a "
                     "class axis")
  c = logits.shape[-1]
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive int, got {k!r}")
  _check_classes("labels", labels, c)
  if _is_concrete(logits) and np.isnan(np.asarray(logits)).any():
    raise ValueError("logits contain NaN")
  lab = jnp.clip(labels.astype(jnp.int32), 0, c - 1)
  own = jnp.take_along_axis(logits, lab[..., None], axis=-1)
  before = (logits > own) | ((logits == own) & (jnp.arange(c) < lab[..., None]))
  rank = jnp.sum(before, axis=-1)
  return (rank < k) & (labels >= 0) & (labels < c)


def top_k_accuracy(logits, labels, k: int = 1, valid=None):
  """Fraction (float32 scalar) of valid samples whose label is in the top k of `logits`.

  logits float `[..., C]`, labels int `[...]`; ties as `top_k_hits`. NaN when nothing is valid.
  """
  hits = top_k_hits(logits, labels, k)
  v = _expand_valid(valid, hits.shape)
  return jnp.sum(hits & v) / jnp.sum(v)


def init(num_classes: int, ks: Sequence[int] = (1, 5), dtype=jnp.int32):
  """Empty accumulator: `{"confusion": [C, C], "top{k}": [] per k, "count": []}` (ints)."""
  _check_num_classes(num_classes)
  ks = tuple(ks)
  if any(not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
    raise ValueError(f"ks must be positive ints, got {ks!r}")
  state = {"confusion": jnp.zeros((num_classes, num_classes), dtype),
           "count": jnp.zeros((), dtype)}
  for k in ks:
    state[f"top{k}"] = jnp.zeros((), dtype)
  return state


def update(state, logits, labels, valid=None):
  """`state` plus one batch: logits float `[..., C]`, labels int `[...]`, valid as above.

  The predicted class is `argmax(logits)` (lowest index among ties, as top-1).
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  c = state["confusion"].shape[0]
  if logits.ndim < 1 or logits.shape[-1] != c:
    raise ValueError(f"logits {logits.shape} must end in the state's {c} classes")
  dtype = state["count"].dtype
  v = _expand_valid(valid, labels.shape)
  new = dict(state)
  for key in state:
    if key.startswith("top"):
      hits = top_k_hits(logits, labels, int(key[3:]))
      new[key] = state[key] + jnp.sum(hits & v).astype(dtype)
  preds = jnp.argmax(logits, axis=-1)
  new["confusion"] = state["confusion"] + confusion_counts(labels, preds, c, v, dtype)
  new["count"] = state["count"] + jnp.sum(v & (labels >= 0) & (labels < c)).astype(dtype)
  return new


def precision_recall_f1(confusion):
  """Per-class and averaged precision, recall and F1 from a `[C, C]` confusion matrix.

  Returns a dict of float arrays: `precision`, `recall`, `f1`, `support` (`[C]`) and
  `{precision,recall,f1}_{macro,micro,weighted}` scalars. Definitions as sklearn's
  `precision_recall_fscore_support` with zero_division=0: precision = tp / predicted,
  recall = tp / support, f1 = 2 tp / (predicted + support), each 0 where its denominator is 0.
  Macro = unweighted mean over the classes present in the labels or the predictions (sklearn
  with `labels=None`); weighted = mean weighted by support; micro from the summed counts
  (for single-label classification all three micro values equal the accuracy).
  NumPy in, NumPy (float64) out; jnp in, jnp out (jit-able).
  """
  xp = np if isinstance(confusion, np.ndarray) else jnp
  cm = confusion.astype(xp.float64 if xp is np else jnp.float32)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f"confusion must be [C, C], got shape {cm.shape}")
  tp = xp.diagonal(cm)
  support = cm.sum(axis=1)
  predicted = cm.sum(axis=0)

  def div(a, b):
    return xp.where(b > 0, a / xp.where(b > 0, b, 1), 0.0)

  out = {"precision": div(tp, predicted), "recall": div(tp, support),
         "f1": div(2 * tp, predicted + support), "support": support}
  present = (support + predicted) > 0
  n_present = present.sum()
  total = support.sum()
  for name in ("precision", "recall", "f1"):
    out[f"{name}_macro"] = div(xp.where(present, out[name], 0.0).sum(), n_present)
    out[f"{name}_weighted"] = div((out[name] * support).sum(), total)
  out["precision_micro"] = div(tp.sum(), predicted.sum())
  out["recall_micro"] = div(tp.sum(), total)
  out["f1_micro"] = div(2 * tp.sum(), predicted.sum() + total)
  return out


def compute(state):
  """Final metrics from an accumulator: `accuracy`, `top{k}` (fractions of the counted
  samples), the `precision_recall_f1` dict and `confusion`. Runs on the host (NumPy)."""
  state = {k: np.asarray(jax.device_get(v)) for k, v in state.items()}
  n = float(state["count"])
  out = {"confusion": state["confusion"], "count": int(n)}
  cm = state["confusion"].astype(np.int64)
  out["accuracy"] = float(np.trace(cm)) / n if n else float("nan")
  for key, value in state.items():
    if key.startswith("top"):
      out[key] = float(value) / n if n else float("nan")
  for key, value in precision_recall_f1(cm).items():
    out[key] = float(value) if np.ndim(value) == 0 else value
  return out
