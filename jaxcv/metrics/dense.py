"""Depth and surface-normal metrics on the host (NumPy, float64), over any region of pixels.

Why beside the tasks' own metrics (`jaxcv/train/tasks/dense.py`, accumulated on the device
during training): to read a trained model on a part of the image (e.g. object pixels only,
where a pixel's position says little about its depth) and to score baselines that are not
models (a per-pixel mean map). The definitions are the tasks':

- depth (`depth_metrics`): pixels counted where `mask` and the ground truth is finite and
  > 0; `abs_rel` = mean |pred - gt| / gt, `rmse` = sqrt(mean (pred - gt)^2), `delta1` =
  share with max(pred / gt, gt / pred) < 1.25.
- normals (`normal_metrics`): pixels counted where `mask` and the ground truth is finite with
  norm in [0.5, 1.5]; the prediction is normalised; angles in degrees: `angle_mean`,
  `angle_median` (exact lower median), and the shares under 11.25, 22.5 and 30 degrees.

Every function takes arrays of any matching leading shape (`[H, W]`, `[N, H, W]`, ...).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

ANGLE_THRESHOLDS = {"within_11_25": 11.25, "within_22_5": 22.5, "within_30": 30.0}


def _mask(shape, mask) -> np.ndarray:
  if mask is None:
    return np.ones(shape, bool)
  mask = np.asarray(mask, bool)
  if mask.shape != tuple(shape):
    raise ValueError(f"mask has shape {mask.shape}; expected the targets' {tuple(shape)}")
  return mask


def depth_metrics(pred, gt, mask=None) -> dict[str, float]:
  """`pred`, `gt` float `[..., H, W]` (pred > 0), optional bool `mask` of the same shape ->
  `{"abs_rel", "rmse", "delta1", "count"}` over the counted pixels (NaN metrics, count 0,
  when none is counted)."""
  pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
  if pred.shape != gt.shape:
    raise ValueError(f"depth prediction has shape {pred.shape}, ground truth {gt.shape}")
  ok = _mask(gt.shape, mask) & np.isfinite(gt) & (gt > 0)
  p, g = pred[ok], gt[ok]
  if not p.size:
    return {"abs_rel": float("nan"), "rmse": float("nan"), "delta1": float("nan"), "count": 0}
  if not (np.all(np.isfinite(p)) and np.all(p > 0)):
    raise ValueError("depth predictions must be finite and > 0 on the counted pixels")
  ratio = np.maximum(p / g, g / p)
  return {"abs_rel": float(np.mean(np.abs(p - g) / g)),
          "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
          "delta1": float(np.mean(ratio < 1.25)), "count": int(p.size)}


def normal_metrics(pred, gt, mask=None) -> dict[str, float]:
  """`pred`, `gt` float `[..., H, W, 3]` (pred need not be unit length), optional bool `mask`
  `[..., H, W]` -> `{"angle_mean", "angle_median", "within_11_25", "within_22_5",
  "within_30", "count"}` in degrees over the counted pixels."""
  pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
  if pred.shape != gt.shape or gt.shape[-1:] != (3,):
    raise ValueError(f"normals prediction has shape {pred.shape}, ground truth {gt.shape}; "
                     "expected both [..., 3]")
  finite = np.all(np.isfinite(gt), -1)
  norm = np.linalg.norm(np.where(np.isfinite(gt), gt, 0.0), axis=-1)
  ok = _mask(gt.shape[:-1], mask) & finite & (norm >= 0.5) & (norm <= 1.5)
  p, g = pred[ok], gt[ok]
  if not p.size:
    return {"angle_mean": float("nan"), "angle_median": float("nan"), "count": 0,
            **{k: float("nan") for k in ANGLE_THRESHOLDS}}
  p = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
  g = g / np.linalg.norm(g, axis=-1, keepdims=True)
  angle = np.degrees(np.arccos(np.clip(np.sum(p * g, -1), -1.0, 1.0)))
  out = {"angle_mean": float(angle.mean()),
         "angle_median": float(np.sort(angle)[(angle.size - 1) // 2]), "count": int(angle.size)}
  out.update({k: float(np.mean(angle < t)) for k, t in ANGLE_THRESHOLDS.items()})
  return out


def per_pixel_mean(chunks: Iterable[np.ndarray], mask_chunks: Iterable | None = None
                   ) -> np.ndarray:
  """The mean over examples at every pixel, float64: `chunks` yields `[n, H, W, ...]` arrays
  (e.g. a split read in pieces); with `mask_chunks` (bool `[n, H, W]`) only the masked
  examples count at each pixel (a pixel no example counts gets NaN)."""
  total = count = None
  masks = iter(mask_chunks) if mask_chunks is not None else None
  for x in chunks:
    x = np.asarray(x, np.float64)
    m = np.ones(x.shape[:3], bool) if masks is None else np.asarray(next(masks), bool)
    m = m.reshape(m.shape + (1,) * (x.ndim - 3))
    s, c = np.sum(np.where(m, x, 0.0), 0), np.sum(m, 0)
    total, count = (s, c) if total is None else (total + s, count + c)
  if total is None:
    raise ValueError("per_pixel_mean got no data")
  with np.errstate(invalid="ignore", divide="ignore"):
    return total / count
