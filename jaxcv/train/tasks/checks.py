"""Host-side batch checks shared by the tasks (NumPy, before a batch reaches a device).

Each raises ValueError naming the key, its shape or dtype and what was expected, so that a
data set that does not fit a task stops with the reason instead of a trace-time error.
Kept apart from the task modules so that no task imports another.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def check_image_batch(batch: Mapping[str, np.ndarray], image_shape) -> None:
  """Raises ValueError unless `image` is float `[B, *image_shape]`."""
  img = batch.get("image")
  if img is None:
    raise ValueError(f"batch has no 'image'; keys: {sorted(batch)}")
  if img.ndim != 4 or tuple(img.shape[1:]) != tuple(image_shape):
    raise ValueError(f"batch 'image' has shape {tuple(img.shape)}; expected "
                     f"[B, {', '.join(map(str, image_shape))}] (NHWC, 3 channels)")
  if not np.issubdtype(img.dtype, np.floating):
    raise ValueError(f"batch 'image' has dtype {img.dtype}; expected float32 in [0, 1]")


def check_dense_batch(batch: Mapping[str, np.ndarray], input_key: str = "image",
                      channels: int = 3) -> tuple[int, int, int]:
  """Raises ValueError unless `batch[input_key]` is float `[B, H, W, channels]`; returns
  `(B, H, W)`. Also checks `pixel_valid` (bool `[B, H, W]`) when present."""
  x = batch.get(input_key)
  if x is None:
    raise ValueError(f"batch has no {input_key!r}; keys: {sorted(batch)}")
  x = np.asarray(x)
  if x.ndim != 4 or x.shape[-1] != channels:
    raise ValueError(f"batch {input_key!r} has shape {tuple(x.shape)}; expected "
                     f"[B, H, W, {channels}] (NHWC)")
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"batch {input_key!r} has dtype {x.dtype}; expected float32 in [0, 1]")
  b, h, w = x.shape[:3]
  if "pixel_valid" in batch and np.shape(batch["pixel_valid"]) != (b, h, w):
    raise ValueError(f"batch 'pixel_valid' has shape {np.shape(batch['pixel_valid'])}; "
                     f"expected [B, H, W] = {(b, h, w)}")
  return b, h, w


def check_target(batch: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...],
                 floating: bool) -> np.ndarray:
  """`batch[key]` as NumPy; ValueError if it is missing, not of `shape` or of the wrong kind."""
  if key not in batch:
    raise ValueError(f"batch has no {key!r} (the task's target); keys: {sorted(batch)}; "
                     f"set config.data.keys to include {key!r}")
  t = np.asarray(batch[key])
  if tuple(t.shape) != tuple(shape):
    raise ValueError(f"batch {key!r} has shape {tuple(t.shape)}; expected {tuple(shape)}")
  ok = np.issubdtype(t.dtype, np.floating) if floating else np.issubdtype(t.dtype, np.integer)
  if not ok:
    raise ValueError(f"batch {key!r} has dtype {t.dtype}; expected "
                     f"{'float32' if floating else 'int32'}")
  return t
