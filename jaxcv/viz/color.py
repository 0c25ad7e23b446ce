"""Colours: the class palette, gray to RGB, colour maps for scalar maps, normals to RGB.

Every function takes and returns NumPy arrays; RGB images are float32 `[..., 3]` in [0, 1].
"""
from __future__ import annotations

import matplotlib  # colour maps only: importing matplotlib selects no backend
import numpy as np

# Class colours. Entry 0 (background) is black and is never given to a class > 0: classes
# 1, 2, ... take entries 1..15 in turn (`class_colors`).
PALETTE = np.array([
    [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
], np.float32) / 255.0


def class_colors(classes) -> np.ndarray:
  """int `[...]` class ids -> float32 `[..., 3]`: 0 black, `c > 0` `PALETTE[1 + (c - 1) % 15]`
  (so that class 16 is the colour of class 1, not the background's black)."""
  c = np.asarray(classes).astype(np.int64)
  idx = np.where(c > 0, 1 + (c - 1) % (len(PALETTE) - 1), 0)
  return PALETTE[idx]


def as_rgb(image) -> np.ndarray:
  """`[H, W]`, `[H, W, 1]` or `[H, W, 3]` -> float32 `[H, W, 3]` clipped to [0, 1] (a gray
  image repeats its value in the three channels, as the data sets do)."""
  x = np.asarray(image, np.float32)
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or x.shape[-1] not in (1, 3):
    raise ValueError(f"expected an image [H, W], [H, W, 1] or [H, W, 3]; got shape {x.shape}")
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, -1)
  return np.clip(np.nan_to_num(x), 0.0, 1.0)


def value_range(*arrays) -> tuple[float, float]:
  """`(min, max)` over the finite values of `arrays` (e.g. a ground-truth and a predicted
  depth map, so both use one scale); `(0, 1)` when there are none."""
  finite = [np.asarray(a, np.float64)[np.isfinite(a)] for a in arrays]
  finite = np.concatenate([f.ravel() for f in finite]) if finite else np.zeros(0)
  if finite.size == 0:
    return 0.0, 1.0
  return float(finite.min()), float(finite.max())


def colormap(values, lo: float | None = None, hi: float | None = None,
             name: str = "viridis") -> np.ndarray:
  """float `[...]` (depth, error, ...) -> RGB float32 `[..., 3]` through matplotlib's colour
  map `name`: `lo` (default: the finite minimum) takes the map's first colour, `hi` (default:
  the finite maximum) its last, values outside are clipped; non-finite values are black."""
  v = np.asarray(values, np.float64)
  if lo is None or hi is None:
    dlo, dhi = value_range(v)
    lo = dlo if lo is None else lo
    hi = dhi if hi is None else hi
  t = np.clip((v - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
  rgb = matplotlib.colormaps[name](np.nan_to_num(t))[..., :3].astype(np.float32)
  return np.where(np.isfinite(v)[..., None], rgb, np.float32(0.0))


def normals_to_rgb(normals) -> np.ndarray:
  """Normals `[..., 3]` (camera frame: x right, y down, z away) -> RGB `(n + 1) / 2` in
  [0, 1]; a zero vector ("no normal") is mid-gray, non-finite values count as 0."""
  n = np.nan_to_num(np.asarray(normals, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
  if n.shape[-1] != 3:
    raise ValueError(f"normals must be [..., 3]; got shape {n.shape}")
  return np.clip((n + 1.0) / 2.0, 0.0, 1.0)
