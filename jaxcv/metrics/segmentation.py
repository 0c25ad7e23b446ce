"""Semantic segmentation metrics from a confusion matrix: mIoU, pixel and mean accuracy,
frequency-weighted IoU, Dice.

Why: the evaluation loop accumulates one `[C, C]` count matrix over batches inside `jit`
(on sharded batches too: the counts are a scatter-add that XLA partitions over the devices
and sums), and every metric is a function of that matrix, so no per-pixel data leaves the
devices.

Conventions:
- `pred`, `label`: int `[...]` (e.g. `[B, H, W]`) class per pixel, 0..C-1; label
  `ignore_index` (default 255, the `semantic` batch convention) pixels are not counted, nor
  pixels where `valid` (bool, a leading part of the shape: `[B]` = `example_valid`) is False.
- Confusion matrix `[C, C]`, row = label class, column = predicted class; int32 counts by
  default. A cell overflows int32 past 2^31 pixels: for longer evaluations accumulate on the
  host in int64 (`update` with a NumPy int64 `cm` does that) or enable x64 and pass int64.
- Out-of-range values (label not in 0..C-1 and not `ignore_index`, pred not in 0..C-1) raise
  ValueError in eager calls; under `jit` values cannot be checked and such pixels are dropped.
- `metrics(cm)`: classes that appear in neither label nor prediction (union 0) have NaN IoU
  and Dice and are left out of `miou` and `dice` (the project's `miou` convention); classes
  absent from the labels have NaN accuracy and are left out of `mean_accuracy`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.metrics.classification import (
  _check_classes,
  _check_num_classes,
  _expand_valid,
  confusion_counts,
)


def confusion_matrix(pred, label, num_classes: int, ignore_index: int | None = 255,
                     valid=None, dtype=jnp.int32):
  """int `[C, C]` counts of (label, pred) pixel pairs; row = label, column = prediction.

  pred, label: int arrays of the same shape `[...]`; pixels with `label == ignore_index`
  (None: no ignore value) or `valid` False are not counted. Jit-able, works on sharded arrays.
  """
  _check_num_classes(num_classes)
  pred, label = jnp.asarray(pred), jnp.asarray(label)
  if pred.shape != label.shape:
    raise ValueError(f"pred {pred.shape} and label {label.shape} differ in shape")
  if not jnp.issubdtype(pred.dtype, jnp.integer) or not jnp.issubdtype(label.dtype,
                                                                      jnp.integer):
    raise ValueError(f"pred ({pred.dtype}) and label ({label.dtype}) must be integer class "
                     "maps (take the argmax of logits first)")
  if ignore_index is not None and 0 <= ignore_index < num_classes:
    raise ValueError(f"ignore_index {ignore_index} is a class index (num_classes "
                     f"{num_classes})")
  _check_classes("label", label, num_classes, allowed=ignore_index)
  _check_classes("pred", pred, num_classes)
  mask = _expand_valid(valid, label.shape)
  if ignore_index is not None:
    mask = mask & (label != ignore_index)
  return confusion_counts(label, pred, num_classes, mask, dtype)


def update(cm, pred, label, ignore_index: int | None = 255, valid=None):
  """`cm` plus the counts of one batch (same arguments as `confusion_matrix`).

  A jax `cm` gives a jax result (jit-able, same dtype); a NumPy `cm` (e.g. int64, for
  evaluations beyond int32 counts) is accumulated on the host.
  """
  c = cm.shape[0]
  if cm.ndim != 2 or cm.shape[1] != c:
    raise ValueError(f"cm must be [C, C], got {cm.shape}")
  if isinstance(cm, np.ndarray):
    batch = confusion_matrix(pred, label, c, ignore_index, valid)
    return cm + np.asarray(jax.device_get(batch)).astype(cm.dtype)
  return cm + confusion_matrix(pred, label, c, ignore_index, valid, cm.dtype)


def metrics(cm):
  """Segmentation metrics from a `[C, C]` confusion matrix (row label, column prediction).

  Returns a dict: `miou` (mean IoU over classes present in label or prediction),
  `pixel_accuracy` (correct / counted pixels), `mean_accuracy` (mean over classes present in
  the labels of correct / label pixels), `fwiou` (IoU weighted by label frequency),
  `dice` (mean Dice = F1 over the classes of `miou`), `iou_per_class`, `dice_per_class`,
  `accuracy_per_class` (`[C]`, NaN where undefined). NumPy in: NumPy float64 out (host,
  exact for int64 counts); jnp in: jnp float32 out (jit-able). All NaN for an empty matrix.
  """
  xp = np if isinstance(cm, np.ndarray) else jnp
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f"cm must be [C, C], got shape {cm.shape}")
  cm = cm.astype(np.float64 if xp is np else jnp.float32)
  tp = xp.diagonal(cm)
  gt = cm.sum(axis=1)
  pr = cm.sum(axis=0)
  total = gt.sum()
  union = gt + pr - tp
  nan = xp.nan

  def div(a, b):
    return xp.where(b > 0, a / xp.where(b > 0, b, 1), nan)

  iou = div(tp, union)
  dice = div(2 * tp, gt + pr)
  acc = div(tp, gt)

  def nanmean(x):
    ok = ~xp.isnan(x)
    return div(xp.where(ok, x, 0).sum(), ok.sum())

  return {
      "miou": nanmean(iou),
      "pixel_accuracy": div(tp.sum(), total),
      "mean_accuracy": nanmean(acc),
      "fwiou": div((gt * xp.where(xp.isnan(iou), 0, iou)).sum(), total),
      "dice": nanmean(dice),
      "iou_per_class": iou,
      "dice_per_class": dice,
      "accuracy_per_class": acc,
  }
