"""Colour painted over chosen pixels: semantic label maps and instance masks.

Both blend a colour into the pixels a label or mask selects and leave every other pixel
exactly as it was (bit for bit), so an overlay can be read against the image underneath.
Images are RGB float `[H, W, 3]` in [0, 1] (gray `[H, W]` / `[H, W, 1]` is repeated).
"""
from __future__ import annotations

import numpy as np

from jaxcv.viz.color import as_rgb, class_colors


def blend(image, mask, color, alpha: float) -> np.ndarray:
  """`image` with `(1 - alpha) * image + alpha * color` where `mask` (bool `[H, W]`) is True.
  `color` is `[3]` or per pixel `[H, W, 3]`; pixels outside `mask` are unchanged."""
  image = np.asarray(image, np.float32)
  mixed = (1.0 - alpha) * image + alpha * np.asarray(color, np.float32)
  return np.where(np.asarray(mask, bool)[..., None], np.clip(mixed, 0.0, 1.0), image)


def overlay(image, labels, alpha: float = 0.55, ignore_label: int = 255) -> np.ndarray:
  """RGB `[H, W, 3]`: `image` with each pixel of class `labels > 0` (int `[H, W]`, not
  `ignore_label`) blended with its class colour (`class_colors`); background (0) and ignored
  pixels keep the image's values."""
  labels = np.asarray(labels)
  image = as_rgb(image)
  if labels.shape != image.shape[:2]:
    raise ValueError(f"labels {labels.shape} and image {image.shape[:2]} differ in size")
  paint = (labels > 0) & (labels != ignore_label)
  return blend(image, paint, class_colors(np.where(paint, labels, 0)), alpha)


def mask_edges(mask) -> np.ndarray:
  """bool `[H, W]`: the pixels of `mask` with a 4-neighbour outside it (or on the border)."""
  m = np.asarray(mask, bool)
  inner = np.pad(m, 1, constant_values=False)
  inner = inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
  return m & ~inner


def draw_masks(image, masks, classes=None, valid=None, alpha: float = 0.5,
               edges: bool = True) -> np.ndarray:
  """Instance masks painted on `image`: RGB `[H, W, 3]` -> `[H, W, 3]`.

  `masks` bool `[M, H, W]` (full-image masks, docs/conventions.md); `classes` int `[M]`
  (1..C) colours each by class (`class_colors`), without it instance `m` takes the colour of
  class `m + 1`; `valid` bool `[M]` skips padding rows. Each mask is blended with `alpha`,
  later masks over earlier ones, and with `edges` its boundary pixels (`mask_edges`) take the
  full colour so touching instances stay apart. Pixels in no mask are unchanged."""
  out = as_rgb(image)
  masks = np.asarray(masks, bool)
  if masks.ndim != 3 or masks.shape[1:] != out.shape[:2]:
    raise ValueError(f"masks must be [M, H, W] with [H, W] = {out.shape[:2]}; got "
                     f"{masks.shape}")
  m = len(masks)
  colors = class_colors(np.arange(1, m + 1) if classes is None else np.asarray(classes))
  keep = np.ones(m, bool) if valid is None else np.asarray(valid, bool)
  for i in np.flatnonzero(keep):
    out = blend(out, masks[i], colors[i], alpha)
    if edges:
      out = blend(out, mask_edges(masks[i]), colors[i], 1.0)
  return out
