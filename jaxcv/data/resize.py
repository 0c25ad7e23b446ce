"""The detectors' resizes: torchvision GeneralizedRCNNTransform's rule (`resize_keep_aspect`,
padding to a multiple of a divisor) and the same on one fixed canvas per config
(`resize_to_canvas`, recording each image's valid and original size), plus the resize-and-
place step every resizing transform of `jaxcv.data.augment` uses (`_resize_pad`).
Registered for configs in `jaxcv.data.augment.build`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from jaxcv.data.geometry import (AxisAlignedMap, Example, apply_map, check_example, check_size,
                                 size_pair)
from jaxcv.data.geometry import deterministic_transform as _deterministic


def _resize_pad(example: Example, new_hw, out_hw, offset=(0, 0), **kwargs) -> Example:
  """Resizes to `new_hw` (box scale = new size / old size per axis, as torchvision's
  resize_boxes), places the result at `offset` (top, left; negative = crop) in an
  `out_hw` canvas."""
  h, w, _ = check_example(example)
  sy, sx = new_hw[0] / h, new_hw[1] / w
  geom = AxisAlignedMap((h, w), out_hw, sx, offset[1], sy, offset[0])
  return apply_map(example, geom, **kwargs)


def resize_keep_aspect(min_size: int = 800, max_size: int = 1333, divisor: int = 32,
                       pad_value: float | Sequence[float] = 0.0, pixel_valid: bool = False):
  """Deterministic transform: torchvision GeneralizedRCNNTransform's resize, then padding.

  scale = min(min_size / short side, max_size / long side); the new size is
  floor(side * scale) (torch `interpolate(scale_factor=scale, recompute_scale_factor=True)`),
  the image is resampled bilinearly (align_corners=False, no antialiasing, as torchvision),
  boxes and keypoints are scaled by new size / old size per axis. Then the bottom and right
  are padded up to a multiple of `divisor` (1 = no padding); padding values are listed in
  the module docstring. torchvision pads after normalising, i.e. with the mean colour in
  [0, 1] terms: pass `pad_value=mean` (e.g. (0.485, 0.456, 0.406)) for an exact match.
  """
  check_size("min_size", min_size)
  check_size("max_size", max_size)
  check_size("divisor", divisor)
  if int(divisor) != divisor:
    raise ValueError(f"divisor must be an int, got {divisor!r}")

  @_deterministic
  def fn(example: Example) -> Example:
    h, w, _ = check_example(example)
    scale = min(min_size / min(h, w), max_size / max(h, w))
    nh, nw = max(1, math.floor(h * scale)), max(1, math.floor(w * scale))
    out_hw = (-(-nh // divisor) * divisor, -(-nw // divisor) * divisor)
    return _resize_pad(example, (nh, nw), out_hw, pad_value=pad_value, pixel_valid=pixel_valid)

  return fn


def resize_to_canvas(min_size: int = 800, max_size: int = 1333, canvas=None,
                     pad_value: float | Sequence[float] = 0.0):
  """Deterministic transform for detectors: torchvision GeneralizedRCNNTransform's resize
  (as `resize_keep_aspect`), then padding at the bottom and right to one fixed `canvas`
  `(height, width)` (an int is a square; default: `max_size` rounded up to a multiple of 32,
  square, which holds every resized image), so every batch of a config has one static shape.
  Adds `image_hw` int32 `[2]` (the resized image's size, the valid part of the canvas) and
  `orig_hw` int32 `[2]` (the size before resizing), with which a detector clips its boxes and
  the detection task maps them back to the original pixels. A canvas smaller than the
  resized image is a ValueError naming both sizes."""
  check_size("min_size", min_size)
  check_size("max_size", max_size)
  if canvas is None:
    side = -(-int(max_size) // 32) * 32
    canvas = (side, side)
  out_hw = size_pair(canvas, "canvas")

  @_deterministic
  def fn(example: Example) -> Example:
    h, w, _ = check_example(example)
    scale = min(min_size / min(h, w), max_size / max(h, w))
    nh, nw = max(1, math.floor(h * scale)), max(1, math.floor(w * scale))
    if nh > out_hw[0] or nw > out_hw[1]:
      raise ValueError(f"resize_to_canvas: a {h}x{w} image resizes to {nh}x{nw}, larger than "
                       f"the canvas {out_hw[0]}x{out_hw[1]}; raise data canvas or lower "
                       "max_size")
    out = _resize_pad(example, (nh, nw), out_hw, pad_value=pad_value)
    out["image_hw"] = np.array([nh, nw], np.int32)
    out["orig_hw"] = np.array([h, w], np.int32)
    return out

  return fn
