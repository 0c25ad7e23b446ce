"""Boxes with class names and scores, and keypoints with their skeleton, drawn on an image.

Coordinates follow docs/conventions.md: boxes `(x1, y1, x2, y2)` and keypoints `(x, y, v)`
in pixels of the image, continuous (pixel `i` covers `[i, i + 1)`, its centre is `i + 0.5`).
A box's outline is drawn on its outermost covered pixels, `floor(x1)` to `ceil(x2) - 1`, so
it lies inside the box. The images here are often tiny (32 x 32), so both functions take an
integer `scale`: the image is enlarged (nearest) before drawing, and lines and text keep
their size in pixels of the result.

Drawing goes through PIL into a separate layer with its own coverage mask: pixels that no
stroke, dot or label touches keep the image's values exactly.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxcv.viz.color import as_rgb, class_colors

# COCO person keypoints (17, in COCO's order: nose, eyes, ears, shoulders, elbows, wrists,
# hips, knees, ankles) joined as in COCO's `skeleton`, here 0-based.
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
                 (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
                 (3, 5), (4, 6))


class _Layer:
  """What is drawn on an enlarged copy of the image, with a mask of the pixels it covers."""

  def __init__(self, image, scale: int):
    if int(scale) < 1:
      raise ValueError(f"scale must be >= 1; got {scale}")
    self.scale = int(scale)
    base = as_rgb(image)
    self.base = np.repeat(np.repeat(base, self.scale, 0), self.scale, 1)
    h, w = self.base.shape[:2]
    self.rgb, self.cover = Image.new("RGB", (w, h)), Image.new("L", (w, h))
    self._rgb, self._cover = ImageDraw.Draw(self.rgb), ImageDraw.Draw(self.cover)

  @property
  def size(self) -> tuple[int, int]:
    return self.rgb.size  # (width, height)

  def shape(self, kind: str, xy, color, fill: bool = True, width: int = 1) -> None:
    """One PIL shape ('rectangle', 'ellipse', 'line') in `color` (float RGB [3])."""
    c = tuple(int(v) for v in np.round(np.asarray(color) * 255))
    if kind == "line":
      self._rgb.line(xy, fill=c, width=width)
      self._cover.line(xy, fill=255, width=width)
      return
    kw_rgb = {"fill": c} if fill else {"outline": c, "width": width}
    kw_cover = {"fill": 255} if fill else {"outline": 255, "width": width}
    getattr(self._rgb, kind)(xy, **kw_rgb)
    getattr(self._cover, kind)(xy, **kw_cover)

  def text_height(self, text: str, font) -> int:
    return self._rgb.textbbox((0, 0), text, font=font)[3]

  def text(self, xy, text: str, color, font) -> None:
    """`text` at `xy` (top-left) on a filled background of `color`, in black or white."""
    x0, y0, x1, y1 = self._rgb.textbbox(xy, text, font=font)
    self.shape("rectangle", (x0 - 1, y0 - 1, x1, y1), color)
    light = float(np.dot(np.asarray(color), (0.299, 0.587, 0.114))) > 0.5
    self._rgb.text(xy, text, fill=(0, 0, 0) if light else (255, 255, 255), font=font)

  def result(self) -> np.ndarray:
    covered = np.asarray(self.cover) > 0
    drawn = np.asarray(self.rgb, np.float32) / 255.0
    return np.where(covered[..., None], drawn, self.base)


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1: one bitmap size
    return ImageFont.load_default()


def _label(classes, scores, class_names, i: int) -> str:
  parts = []
  if classes is not None:
    c = int(classes[i])
    if class_names is None:
      parts.append(str(c))
    elif isinstance(class_names, Mapping):
      parts.append(str(class_names.get(c, c)))
    else:
      parts.append(str(class_names[c]) if 0 <= c < len(class_names) else str(c))
  if scores is not None:
    parts.append(f"{float(scores[i]):.2f}")
  return " ".join(parts)


def draw_boxes(image, boxes, classes=None, scores=None, valid=None,
               class_names: Sequence[str] | Mapping[int, str] | None = None,
               width: int = 1, scale: int = 1, font_size: int = 10,
               labels: bool = True) -> np.ndarray:
  """Boxes on `image` (RGB `[H, W, 3]` in [0, 1]) -> float32 `[H * scale, W * scale, 3]`.

  `boxes` float `[M, 4]` `(x1, y1, x2, y2)` in pixels of `image`; `classes` int `[M]` (1..C)
  colours each box by class (`class_colors`; without it box `m` takes class `m + 1`'s
  colour); `scores` float `[M]`; `valid` bool `[M]` skips padding rows (as do boxes that are
  not finite or lie outside the image). With `labels`, each box gets a label on its colour
  above its top-left corner (inside the box where there is no room above):
  `class_names[c]` (a sequence indexed by class id, index 0 the background, or a mapping;
  default the id) and the score to 2 decimals. `width` is the outline's width in pixels of
  the result."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  m = len(boxes)
  keep = np.ones(m, bool) if valid is None else np.asarray(valid, bool).reshape(m)
  colors = class_colors(np.arange(1, m + 1) if classes is None else np.asarray(classes))
  layer = _Layer(image, scale)
  w, h = layer.size
  s, font = layer.scale, _font(font_size)
  for i in np.flatnonzero(keep):
    x1, y1, x2, y2 = boxes[i] * s
    if not np.all(np.isfinite(boxes[i])) or x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
      continue
    left, top = int(np.clip(np.floor(x1), 0, w - 1)), int(np.clip(np.floor(y1), 0, h - 1))
    right = int(np.clip(max(np.ceil(x2) - 1, left), 0, w - 1))
    bottom = int(np.clip(max(np.ceil(y2) - 1, top), 0, h - 1))
    layer.shape("rectangle", (left, top, right, bottom), colors[i], fill=False, width=width)
    text = _label(classes, scores, class_names, i) if labels else ""
    if text:
      th = layer.text_height(text, font)
      y = top - th - 1 if top - th - 1 >= 0 else top + width
      layer.text((left + 1, y), text, colors[i], font)
  return layer.result()


def draw_keypoints(image, keypoints, valid=None, classes=None,
                   skeleton: Sequence[tuple[int, int]] | None = None, radius: int = 2,
                   width: int = 1, scale: int = 1) -> np.ndarray:
  """Keypoints on `image` (RGB `[H, W, 3]`) -> float32 `[H * scale, W * scale, 3]`.

  `keypoints` float `[M, K, 3]` (or `[K, 3]` for one object) `(x, y, v)` in pixels of
  `image`; v 0 unlabelled (not drawn), 1 occluded (a ring), 2 visible (a filled dot), of
  `radius` pixels of the result. `skeleton` pairs `(a, b)` of keypoint indices (e.g.
  `COCO_SKELETON`) are joined by lines where both ends are labelled. `valid` bool `[M]`
  skips padding rows; `classes` `[M]` colours objects by class (default object `m` as class
  `m + 1`)."""
  kp = np.asarray(keypoints, np.float64)
  kp = kp[None] if kp.ndim == 2 else kp
  if kp.ndim != 3 or kp.shape[-1] != 3:
    raise ValueError(f"keypoints must be [M, K, 3] or [K, 3]; got {np.shape(keypoints)}")
  m = len(kp)
  keep = np.ones(m, bool) if valid is None else np.asarray(valid, bool).reshape(m)
  colors = class_colors(np.arange(1, m + 1) if classes is None else np.asarray(classes))
  layer = _Layer(image, scale)
  s = layer.scale
  for i in np.flatnonzero(keep):
    xy = kp[i, :, :2] * s - 0.5  # continuous pixels -> PIL's pixel-index coordinates
    labelled = (kp[i, :, 2] > 0) & np.all(np.isfinite(kp[i, :, :2]), -1)
    for a, b in skeleton or ():
      if labelled[a] and labelled[b]:
        layer.shape("line", [tuple(xy[a]), tuple(xy[b])], colors[i], width=width)
    for k in np.flatnonzero(labelled):
      (x, y), r = xy[k], radius
      layer.shape("ellipse", (x - r, y - r, x + r, y + r), colors[i],
                  fill=kp[i, k, 2] >= 2, width=width)
  return layer.result()
