"""Host-side (NumPy) augmentations that move every label of an example with its image.

Why: detection, instance, keypoint, panoptic and dense tasks train on the same geometric
augmentations (flip, resize, scale jitter, crop, elastic deformation); each must move boxes,
masks, keypoints, semantic and panoptic maps, depth, normals and sketches consistently with
the image, or the model learns from labels that no longer match the pixels. They run on the
host inside the input pipeline, per example, before padding and batching.

Examples follow the example interface of `docs/conventions.md` (one unpadded example, no
batch axis): `image` float32 [H, W, 3] in [0, 1]; per object `boxes` float32 [n, 4]
(x1, y1, x2, y2) in pixels, `classes` int32 [n], `iscrowd` bool [n], `area` float32 [n],
`masks` bool [n, H, W], `keypoints` float32 [n, K, 3] (x, y, v), `difficult` bool [n];
per pixel `semantic` int32 [H, W] (255 ignore), `panoptic` int32 [H, W] (0 void), `depth`
float32 [H, W] (> 0), `normals` float32 [H, W, 3], `sketch` float32 [H, W, 1]; per segment
`segment_ids`, `segment_classes`, `segment_isthing`, `segment_iscrowd` [s]; scalars
`image_id`, `label`. Optional `pixel_valid` bool [H, W] (see below). Absent keys stay absent.

A random transform is `fn(example, rng: np.random.Generator) -> dict`, a deterministic one
`fn(example) -> dict`; both return a new dict and never mutate the input; dtypes are kept.
`compose` chains both kinds, `build(spec)` makes a chain from names (for configs).

Coordinates are continuous pixel coordinates: pixel (row i, column j) covers
[j, j + 1) x [i, i + 1), its centre is (j + 0.5, i + 0.5); a box rasterised as the pixels
whose centres lie inside it has mask extent == box. Keypoints use the same coordinates (a
keypoint on pixel (i, j) is at (j + 0.5, i + 0.5)). Every geometric transform is a map of
these coordinates; pixel arrays are resampled at the source position of each output pixel
centre:
- `image`, `sketch`: bilinear (torch `interpolate(mode="bilinear", align_corners=False)`
  conventions, so `resize_keep_aspect` matches torchvision's GeneralizedRCNNTransform).
- `masks`, `semantic`, `panoptic`, `depth`, `normals`, `pixel_valid`: nearest (the source
  pixel containing the mapped centre). Depth and normals are not interpolated so that no
  depth is invented across object boundaries and normals stay unit vectors. This nearest is
  centre-aligned, unlike torch's legacy `mode="nearest"` (which torchvision uses for masks),
  which picks the source pixel up to one pixel up/left.
- Depth values and normal vectors are unchanged by resizing and cropping (that is a change
  of camera intrinsics, the 3-D scene is the same); a horizontal flip mirrors the scene, so
  normals' x component changes sign.
- Outside the source image (padding): image `pad_value` (default 0), sketch 0, masks False,
  semantic 255 (ignore), panoptic 0 (void), pixel_valid False; depth and normals copy the
  nearest edge pixel (so depth stays > 0 and normals unit). Dense losses that must ignore
  padding ask for `pixel_valid=True`, which adds the key `pixel_valid` bool [H, W] (True on
  real pixels); once present, every later transform moves it too.
- Boxes are clipped to the source image (boxes wholly outside it are dropped), mapped,
  clipped to the real (not padded) part of the output image and dropped when their visible
  fraction (clipped area / mapped area) is below the transform's `keep_fraction` (every
  transform drops boxes with no visible part); a zero-area box is kept while it lies inside
  the image (closed). Dropping a box drops the object's row from every per-object array. `area` is
  recomputed from the masks when masks are present, else scaled with the box (area times
  the scale factors times the visible fraction). Keypoints are mapped; those outside the
  real part of the output image (closed) get v = 0 (their x, y are kept, as in detectron2).
- Panoptic segments whose id no longer occurs in `panoptic` are dropped from the segment
  arrays.
Bad input (image not [H, W, 3], boxes not [n, 4], inverted or non-finite boxes, per-object
arrays of different lengths, label maps of the wrong shape, unknown non-scalar keys) raises
ValueError naming the problem.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

Example = dict[str, Any]

_OBJECT_KEYS = ("boxes", "classes", "iscrowd", "area", "masks", "keypoints", "difficult")
_SEGMENT_KEYS = ("segment_ids", "segment_classes", "segment_isthing", "segment_iscrowd")
_PIXEL_KEYS = ("image", "semantic", "panoptic", "depth", "normals", "sketch", "pixel_valid")
_SCALAR_KEYS = ("image_id", "label")
_KNOWN_KEYS = _OBJECT_KEYS + _SEGMENT_KEYS + _PIXEL_KEYS + _SCALAR_KEYS
# trailing shape after [H, W] of each per-pixel key
_PIXEL_TRAILING = {"image": (3,), "semantic": (), "panoptic": (), "depth": (), "normals": (3,),
                   "sketch": (1,), "pixel_valid": ()}


# ------------------------------------------------------------------------------ checks


def check_example(example: Example) -> tuple[int, int, int]:
  """Validates the shapes of `example`; returns `(H, W, n)` (n = number of objects).

  Raises ValueError naming the problem: no image, image not [H, W, 3], a per-pixel label of
  another size, boxes not [n, 4], inverted or non-finite boxes, per-object or per-segment
  arrays of different lengths, masks not [n, H, W], keypoints not [n, K, 3], or an unknown
  key holding a non-scalar array (it could not be moved with the image).
  """
  if not isinstance(example, dict):
    raise ValueError(  # noqa: TRY004  the project raises ValueError for all bad input
        f"an example is a dict of arrays, got {type(example).__name__}")
  for key, value in example.items():
    if key not in _KNOWN_KEYS and np.ndim(value) > 0:
      raise ValueError(f"unknown key {key!r} with shape {np.shape(value)}: augmentations do not "
                       f"know how to move it; known keys: {sorted(_KNOWN_KEYS)}")
  if "image" not in example:
    raise ValueError("example has no 'image'")
  image = np.asarray(example["image"])
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"'image' must be [H, W, 3], got shape {image.shape}")
  h, w = image.shape[:2]
  if h <= 0 or w <= 0:
    raise ValueError(f"'image' has an empty size {image.shape}")
  for key, trailing in _PIXEL_TRAILING.items():
    if key in example and np.shape(example[key]) != (h, w) + trailing:
      raise ValueError(f"{key!r} must have shape {(h, w) + trailing} to match the image, "
                       f"got {np.shape(example[key])}")
  n = None
  for key in _OBJECT_KEYS:
    if key in example:
      shape = np.shape(example[key])
      if len(shape) == 0:
        raise ValueError(f"per-object key {key!r} must have a leading object axis, got a scalar")
      if n is None:
        n = shape[0]
      elif shape[0] != n:
        lengths = {k: np.shape(example[k])[0] for k in _OBJECT_KEYS if k in example}
        raise ValueError(f"per-object arrays have mismatched lengths: {lengths}")
  n = 0 if n is None else n
  if "boxes" in example:
    boxes = np.asarray(example["boxes"])
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
      raise ValueError(f"'boxes' must be [n, 4] (x1, y1, x2, y2), got shape {boxes.shape}")
    if not np.all(np.isfinite(boxes)):
      raise ValueError("'boxes' has non-finite coordinates")
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
      raise ValueError("'boxes' has inverted boxes (x2 < x1 or y2 < y1); boxes are (x1, y1, x2, y2)")
  elif n:
    raise ValueError("per-object arrays without 'boxes'")
  if "masks" in example and np.shape(example["masks"]) != (n, h, w):
    raise ValueError(f"'masks' must be [n, H, W] = {(n, h, w)}, got {np.shape(example['masks'])}")
  if "keypoints" in example:
    kp = np.shape(example["keypoints"])
    if len(kp) != 3 or kp[-1] != 3:
      raise ValueError(f"'keypoints' must be [n, K, 3] (x, y, v), got shape {kp}")
  seg_lengths = {k: np.shape(example[k]) for k in _SEGMENT_KEYS if k in example}
  if seg_lengths and (len(set(seg_lengths.values())) != 1
                      or len(next(iter(seg_lengths.values()))) != 1):
    raise ValueError(f"per-segment arrays must be [s] with one common s, got {seg_lengths}")
  return h, w, n


def _check_size(name: str, value, minimum: float = 1) -> None:
  if not np.isscalar(value) or not value >= minimum:
    raise ValueError(f"{name} must be a number >= {minimum}, got {value!r}")


def _check_prob(name: str, p) -> None:
  if not np.isscalar(p) or not 0.0 <= p <= 1.0:
    raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")


def _size_pair(size, name: str) -> tuple[int, int]:
  """`size` as (height, width) from an int or a pair."""
  if np.isscalar(size):
    size = (size, size)
  size = tuple(size)
  if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
    raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
  return int(size[0]), int(size[1])


def _check_flip_pairs(flip_pairs, num_keypoints: int | None = None) -> tuple[tuple[int, int], ...]:
  pairs = tuple((int(a), int(b)) for a, b in flip_pairs)
  used = [i for pair in pairs for i in pair]
  if len(set(used)) != len(used) or any(i < 0 for i in used):
    raise ValueError(f"flip_pairs must be disjoint pairs of keypoint indices, got {pairs}")
  if num_keypoints is not None and used and max(used) >= num_keypoints:
    raise ValueError(f"flip_pairs {pairs} index past the {num_keypoints} keypoints per object")
  return pairs


# ------------------------------------------------------------------------------ samplers


class _AxisAligned:
  """The map x_out = sx * x_in + tx, y_out = sy * y_in + ty (sx, sy != 0; negative = flip),
  onto an output of `out_h` x `out_w` pixels, resampled separably (one gather per axis)."""

  def __init__(self, in_hw, out_hw, sx, tx, sy, ty):
    self.in_h, self.in_w = in_hw
    self.out_h, self.out_w = out_hw
    self.sx, self.tx, self.sy, self.ty = float(sx), float(tx), float(sy), float(ty)
    self.flip_x = self.sx < 0
    self._y = self._axis(self.out_h, self.in_h, self.sy, self.ty)
    self._x = self._axis(self.out_w, self.in_w, self.sx, self.tx)

  @staticmethod
  def _axis(n_out, n_in, s, t):
    u = (np.arange(n_out, dtype=np.float64) + 0.5 - t) / s  # source position of the centres
    inside = (u >= 0) & (u < n_in)
    nearest = np.clip(np.floor(u), 0, n_in - 1).astype(np.intp)
    # bilinear source index as torch's CPU kernel computes it: c = scale * (j + 0.5) - 0.5 with
    # a float32 scale = in / out and one float32 rounding (a fused multiply-add), clamped
    # below at 0; i1 = min(i0 + 1, n - 1)
    inv = np.float64(np.float32(1.0 / s))
    c = (inv * (np.arange(n_out) + 0.5 - t) - 0.5).astype(np.float32)
    c = np.clip(c, np.float32(0), np.float32(n_in - 1))
    i0 = np.floor(c).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = c - i0.astype(np.float32)
    return inside, nearest, i0, i1, frac

  def nearest(self, a: np.ndarray, fill=None) -> np.ndarray:
    """a: [H, W, ...] -> [out_h, out_w, ...]; `fill` outside the source (None: edge)."""
    (iny, ny, *_), (inx, nx, *_) = self._y, self._x
    out = np.take(np.take(a, ny, axis=0), nx, axis=1)
    if fill is not None:
      out[~iny] = fill
      out[:, ~inx] = fill
    return out

  def bilinear(self, a: np.ndarray, fill=None) -> np.ndarray:
    """a: float [H, W, C] -> [out_h, out_w, C] (torch align_corners=False bilinear)."""
    iny, _, y0, y1, fy = self._y
    inx, _, x0, x1, fx = self._x
    fy = fy[:, None, None]
    rows = np.take(a, y0, axis=0) * (1 - fy) + np.take(a, y1, axis=0) * fy
    fx = fx[None, :, None]
    out = np.take(rows, x0, axis=1) * (1 - fx) + np.take(rows, x1, axis=1) * fx
    if fill is not None:
      out[~iny] = fill
      out[:, ~inx] = fill
    return out.astype(a.dtype, copy=False)

  def points(self, xy: np.ndarray) -> np.ndarray:
    """Continuous points [..., 2] (x, y) -> their mapped positions."""
    return np.stack([xy[..., 0] * self.sx + self.tx, xy[..., 1] * self.sy + self.ty], axis=-1)

  def boxes(self, boxes: np.ndarray) -> np.ndarray:
    xs = boxes[:, [0, 2]] * self.sx + self.tx
    ys = boxes[:, [1, 3]] * self.sy + self.ty
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=-1)

  def area_scale(self) -> float:
    return abs(self.sx * self.sy)

  def valid_rect(self) -> tuple[float, float, float, float]:
    """The part of the output showing the source image (x1, y1, x2, y2)."""
    xs = sorted((self.tx, self.sx * self.in_w + self.tx))
    ys = sorted((self.ty, self.sy * self.in_h + self.ty))
    return (max(xs[0], 0.0), max(ys[0], 0.0), min(xs[1], self.out_w), min(ys[1], self.out_h))


class _Dense:
  """A per-pixel map: output pixel centre p samples the source at `src[p]` (continuous x, y).

  Points move the other way (source -> output) by inverting the map with a fixed-point
  iteration q <- q + (x - src(q)), exact where the map's Jacobian is close to identity (smooth
  elastic fields); `iterations` bounds the work."""

  def __init__(self, in_hw, src_x, src_y, iterations: int = 100):
    self.in_h, self.in_w = in_hw
    self.out_h, self.out_w = src_x.shape
    self.flip_x = False
    self.src_x, self.src_y = src_x, src_y
    self.dx = src_x - (np.arange(self.out_w) + 0.5)[None, :]
    self.dy = src_y - (np.arange(self.out_h) + 0.5)[:, None]
    self.iterations = iterations
    self.inside = (src_x >= 0) & (src_x < self.in_w) & (src_y >= 0) & (src_y < self.in_h)
    self.ny = np.clip(np.floor(src_y), 0, self.in_h - 1).astype(np.intp)
    self.nx = np.clip(np.floor(src_x), 0, self.in_w - 1).astype(np.intp)

  def nearest(self, a, fill=None):
    out = a[self.ny, self.nx]
    if fill is not None:
      out[~self.inside] = fill
    return out

  def bilinear(self, a, fill=None):
    cy = np.clip(self.src_y - 0.5, 0, self.in_h - 1)
    cx = np.clip(self.src_x - 0.5, 0, self.in_w - 1)
    y0, x0 = np.floor(cy).astype(np.intp), np.floor(cx).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, self.in_h - 1), np.minimum(x0 + 1, self.in_w - 1)
    fy = (cy - y0).astype(np.float32)[..., None]
    fx = (cx - x0).astype(np.float32)[..., None]
    out = ((a[y0, x0] * (1 - fx) + a[y0, x1] * fx) * (1 - fy)
           + (a[y1, x0] * (1 - fx) + a[y1, x1] * fx) * fy)
    if fill is not None:
      out[~self.inside] = fill
    return out.astype(a.dtype, copy=False)

  def _sample_src(self, q):
    """The map at continuous output positions q [..., 2]: q + displacement, the displacement
    bilinear between pixel centres and extended from the nearest edge outside the image."""
    coords = [np.clip(q[..., 1] - 0.5, 0, self.out_h - 1).ravel(),
              np.clip(q[..., 0] - 0.5, 0, self.out_w - 1).ravel()]
    dx = ndimage.map_coordinates(self.dx, coords, order=1, mode="nearest")
    dy = ndimage.map_coordinates(self.dy, coords, order=1, mode="nearest")
    return q + np.stack([dx, dy], axis=-1).reshape(q.shape)

  def points(self, xy):
    xy = np.asarray(xy, np.float64)
    q = xy.copy()
    for _ in range(self.iterations):
      step = xy - self._sample_src(q)
      q = q + step
      if step.size == 0 or np.abs(step).max() < 1e-5:
        break
    return q

  def boxes(self, boxes, samples: int = 9):
    """Extent of the mapped box outlines (`samples` points per edge)."""
    if len(boxes) == 0:
      return np.zeros((0, 4))
    t = np.linspace(0.0, 1.0, samples)
    x1, y1, x2, y2 = (boxes[:, i:i + 1] for i in range(4))
    xs = np.concatenate([x1 + (x2 - x1) * t, x1 + (x2 - x1) * t, np.repeat(x1, samples, 1),
                         np.repeat(x2, samples, 1)], axis=1)
    ys = np.concatenate([np.repeat(y1, samples, 1), np.repeat(y2, samples, 1),
                         y1 + (y2 - y1) * t, y1 + (y2 - y1) * t], axis=1)
    q = self.points(np.stack([xs, ys], axis=-1))
    return np.stack([q[..., 0].min(1), q[..., 1].min(1), q[..., 0].max(1), q[..., 1].max(1)], -1)

  def area_scale(self) -> float:
    return 1.0

  def valid_rect(self) -> tuple[float, float, float, float]:
    return (0.0, 0.0, float(self.out_w), float(self.out_h))


# ------------------------------------------------------------------------------ core


def _box_area(b: np.ndarray) -> np.ndarray:
  return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)


def _mask_boxes(masks: np.ndarray) -> np.ndarray:
  """Extent [n, 4] of each bool mask [n, H, W] in pixel-edge coordinates (0s when empty)."""
  n = masks.shape[0]
  rows, cols = masks.any(axis=2), masks.any(axis=1)
  out = np.zeros((n, 4), np.float32)
  for i in range(n):
    r, c = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
    if r.size:
      out[i] = (c[0], r[0], c[-1] + 1, r[-1] + 1)
  return out


def _apply(example: Example, geom, keep_fraction: float = 0.0, keep: np.ndarray | None = None,
           boxes_from_masks: bool = False, flip_pairs: Sequence[tuple[int, int]] = (),
           pad_value: float | Sequence[float] = 0.0, pixel_valid: bool = False) -> Example:
  """Applies the coordinate map `geom` to every key of `example` (see the module docstring).

  keep: optional bool [n] of objects allowed to survive (besides the visibility rule)."""
  h, w, n = check_example(example)
  vx1, vy1, vx2, vy2 = geom.valid_rect()
  out: Example = {k: v for k, v in example.items() if k in _SCALAR_KEYS or np.ndim(v) == 0}

  # objects: which survive
  alive = np.ones(n, bool) if keep is None else np.asarray(keep, bool).copy()
  if "boxes" in example:
    raw = np.asarray(example["boxes"], np.float64)
    in_src = (raw[:, 0] <= w) & (raw[:, 2] >= 0) & (raw[:, 1] <= h) & (raw[:, 3] >= 0)
    old = np.stack([np.clip(raw[:, 0], 0, w), np.clip(raw[:, 1], 0, h),
                    np.clip(raw[:, 2], 0, w), np.clip(raw[:, 3], 0, h)], -1)
    mapped = geom.boxes(old)
    clipped = np.stack([np.clip(mapped[:, 0], vx1, vx2), np.clip(mapped[:, 1], vy1, vy2),
                        np.clip(mapped[:, 2], vx1, vx2), np.clip(mapped[:, 3], vy1, vy2)], -1)
    inside = ((mapped[:, 0] <= vx2) & (mapped[:, 2] >= vx1) & (mapped[:, 1] <= vy2)
              & (mapped[:, 3] >= vy1))
    mapped_area, clipped_area = _box_area(mapped), _box_area(clipped)
    positive = mapped_area > 0
    frac = np.where(positive, clipped_area / np.where(positive, mapped_area, 1.0), 1.0)
    alive &= in_src & inside & np.where(positive, (clipped_area > 0) & (frac >= keep_fraction), True)
    new_boxes = clipped
  idx = np.flatnonzero(alive)

  masks = None
  if "masks" in example:
    m = np.asarray(example["masks"], bool)[idx]
    masks = np.ascontiguousarray(np.moveaxis(geom.nearest(np.moveaxis(m, 0, -1), False), -1, 0))
    if boxes_from_masks and "boxes" in example:
      nonempty = masks.any(axis=(1, 2))
      idx, masks = idx[nonempty], masks[nonempty]
      new_boxes[idx] = _mask_boxes(masks)
  for key in ("classes", "iscrowd", "difficult"):
    if key in example:
      out[key] = np.asarray(example[key])[idx]
  if "boxes" in example:
    out["boxes"] = new_boxes[idx].astype(np.asarray(example["boxes"]).dtype)
  if masks is not None:
    out["masks"] = masks
  if "area" in example:
    area = np.asarray(example["area"])
    if masks is not None:
      out["area"] = masks.sum(axis=(1, 2)).astype(area.dtype)
    else:
      old_area = _box_area(old[idx])
      ratio = np.where(old_area > 0, clipped_area[idx] / np.where(old_area > 0, old_area, 1.0),
                       geom.area_scale())
      out["area"] = (area[idx] * ratio).astype(area.dtype)
  if "keypoints" in example:
    kp = np.asarray(example["keypoints"])[idx]
    xy = geom.points(kp[..., :2].astype(np.float64))
    vis = kp[..., 2].copy()
    outside = (xy[..., 0] < vx1) | (xy[..., 0] > vx2) | (xy[..., 1] < vy1) | (xy[..., 1] > vy2)
    vis[outside] = 0
    new_kp = np.concatenate([xy, vis[..., None]], axis=-1).astype(kp.dtype)
    pairs = _check_flip_pairs(flip_pairs, kp.shape[1])
    if pairs:
      perm = np.arange(kp.shape[1])
      for a, b in pairs:
        perm[a], perm[b] = b, a
      new_kp = new_kp[:, perm]
    out["keypoints"] = new_kp

  # pixels
  image = np.asarray(example["image"])
  out["image"] = geom.bilinear(image.astype(np.float32, copy=False),
                               np.asarray(pad_value, np.float32)).astype(image.dtype)
  if "sketch" in example:
    s = np.asarray(example["sketch"])
    out["sketch"] = geom.bilinear(s.astype(np.float32, copy=False), 0.0).astype(s.dtype)
  for key, fill in (("semantic", 255), ("panoptic", 0), ("pixel_valid", False)):
    if key in example:
      out[key] = geom.nearest(np.asarray(example[key]), fill)
  if pixel_valid and "pixel_valid" not in example:
    out["pixel_valid"] = geom.nearest(np.ones((h, w), bool), False)
  if "depth" in example:
    out["depth"] = geom.nearest(np.asarray(example["depth"]))
  if "normals" in example:
    normals = geom.nearest(np.asarray(example["normals"]))
    if geom.flip_x:
      normals = normals.copy()
      normals[..., 0] = -normals[..., 0]
    out["normals"] = normals

  # panoptic segments
  seg_present = [k for k in _SEGMENT_KEYS if k in example]
  if seg_present:
    if "panoptic" in example and "segment_ids" in example:
      ids = np.asarray(example["segment_ids"])
      sel = np.isin(ids, np.unique(out["panoptic"]))
    else:
      sel = slice(None)
    for key in seg_present:
      out[key] = np.asarray(example[key])[sel]
  return out


# ------------------------------------------------------------------------------ transforms


def _random(fn: Callable) -> Callable:
  fn.is_random = True
  return fn


def _deterministic(fn: Callable) -> Callable:
  fn.is_random = False
  return fn


def hflip(example: Example, flip_pairs: Iterable[tuple[int, int]] = (),
          pixel_valid: bool = False) -> Example:
  """Mirrors `example` left-right: x -> W - x.

  Boxes, masks, label maps, depth and sketch move with the image; normals' x component
  changes sign (the scene is mirrored); keypoint x moves and the keypoints of each pair in
  `flip_pairs` (e.g. left/right extreme points of the shapes set) swap places so that a
  "left" keypoint stays on the object's left.
  """
  h, w, _ = check_example(example)
  geom = _AxisAligned((h, w), (h, w), -1.0, float(w), 1.0, 0.0)
  return _apply(example, geom, flip_pairs=tuple(flip_pairs), pixel_valid=pixel_valid)


def flip(flip_pairs: Iterable[tuple[int, int]] = ()) -> Callable[[Example], Example]:
  """Deterministic transform: `hflip` with `flip_pairs` bound."""
  pairs = _check_flip_pairs(flip_pairs)
  return _deterministic(lambda example: hflip(example, pairs))


def random_hflip(p: float = 0.5, flip_pairs: Iterable[tuple[int, int]] = ()):
  """Random transform: `hflip(example, flip_pairs)` with probability `p`, else unchanged
  (a shallow copy; one `rng.random()` draw either way)."""
  _check_prob("p", p)
  pairs = _check_flip_pairs(flip_pairs)

  @_random
  def fn(example: Example, rng: np.random.Generator) -> Example:
    if rng.random() < p:
      return hflip(example, pairs)
    check_example(example)
    return dict(example)

  return fn


def _resize_pad(example: Example, new_hw, out_hw, offset=(0, 0), **kwargs) -> Example:
  """Resizes to `new_hw` (box scale = new size / old size per axis, as torchvision's
  resize_boxes), places the result at `offset` (top, left; negative = crop) in an
  `out_hw` canvas."""
  h, w, _ = check_example(example)
  sy, sx = new_hw[0] / h, new_hw[1] / w
  geom = _AxisAligned((h, w), out_hw, sx, offset[1], sy, offset[0])
  return _apply(example, geom, **kwargs)


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
  _check_size("min_size", min_size)
  _check_size("max_size", max_size)
  _check_size("divisor", divisor)
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


def resize_pad_to(size, pad_value: float | Sequence[float] = 0.0, pixel_valid: bool = False):
  """Deterministic transform: letterbox to a fixed `size` (int or (height, width)).

  The image is scaled by min(out_h / H, out_w / W) keeping its aspect ratio (new size
  rounded to whole pixels, at most the output), placed at the top left, and the bottom or
  right padded, so every example of a batch has the same static shape. Boxes scale with the
  image (new size / old size per axis).
  """
  out_h, out_w = _size_pair(size, "size")

  @_deterministic
  def fn(example: Example) -> Example:
    h, w, _ = check_example(example)
    scale = min(out_h / h, out_w / w)
    nh = min(out_h, max(1, round(h * scale)))
    nw = min(out_w, max(1, round(w * scale)))
    return _resize_pad(example, (nh, nw), (out_h, out_w), pad_value=pad_value,
                       pixel_valid=pixel_valid)

  return fn


def random_scale_jitter(min_scale: float = 0.1, max_scale: float = 2.0, output_size=1024,
                        keep_fraction: float = 0.0, pad_value: float | Sequence[float] = 0.0,
                        pixel_valid: bool = False):
  """Random transform: large-scale jitter (detectron2 `ResizeScale` + `FixedSizeCrop`,
  big_vision/scenic `random_scale_jitter`), with static output shape `output_size`.

  A factor r ~ U(min_scale, max_scale) gives the target r * output_size; the image is
  resized keeping its aspect ratio to fit that target (scale = r * min(out_h / H, out_w / W),
  new size rounded), then a random window of `output_size` is cropped where the resized
  image is larger (offset uniform over the whole pixels) and the bottom/right padded where it
  is smaller. All in one resampling. Boxes are clipped; those whose visible fraction falls
  below `keep_fraction` (and all fully cut off) are dropped with their objects.
  """
  _check_size("min_scale", min_scale, 1e-6)
  _check_size("max_scale", max_scale, min_scale)
  _check_prob("keep_fraction", keep_fraction)
  out_h, out_w = _size_pair(output_size, "output_size")

  @_random
  def fn(example: Example, rng: np.random.Generator) -> Example:
    h, w, _ = check_example(example)
    r = rng.uniform(min_scale, max_scale)
    scale = r * min(out_h / h, out_w / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    top = int(rng.integers(0, nh - out_h + 1)) if nh > out_h else 0
    left = int(rng.integers(0, nw - out_w + 1)) if nw > out_w else 0
    return _resize_pad(example, (nh, nw), (out_h, out_w), offset=(-top, -left),
                       keep_fraction=keep_fraction, pad_value=pad_value, pixel_valid=pixel_valid)

  return fn


def crop(example: Example, top: int, left: int, height: int, width: int,
         keep_fraction: float = 0.0, pad_value: float | Sequence[float] = 0.0,
         pixel_valid: bool = False, keep: np.ndarray | None = None) -> Example:
  """Crops the window rows [top, top + height), columns [left, left + width) (parts outside
  the image are padded). Boxes are clipped to the window; a box is dropped with its object
  when its visible fraction < `keep_fraction` or nothing of it is visible (or `keep[i]` is
  False)."""
  h, w, _ = check_example(example)
  for name, v in (("top", top), ("left", left), ("height", height), ("width", width)):
    if int(v) != v:
      raise ValueError(f"crop {name} must be an int, got {v!r}")
  if height < 1 or width < 1:
    raise ValueError(f"crop size must be positive, got height={height}, width={width}")
  geom = _AxisAligned((h, w), (int(height), int(width)), 1.0, -float(left), 1.0, -float(top))
  return _apply(example, geom, keep_fraction=keep_fraction, keep=keep, pad_value=pad_value,
                pixel_valid=pixel_valid)


def random_crop(min_scale: float = 0.3, max_scale: float = 1.0, min_aspect: float = 0.5,
                max_aspect: float = 2.0, keep_fraction: float = 0.5, trials: int = 50):
  """Random transform: a random window of the image, labels cropped with it.

  The window's width and height are independent fractions U(min_scale, max_scale) of the
  image's (whole pixels, at least 1) with aspect width / height in [min_aspect, max_aspect]
  (up to `trials` draws; the full image if none fits), at a uniformly random whole-pixel
  position. Output size = window size (follow with `resize_pad_to` for a static shape).
  Boxes are clipped; a box keeps its object when at least `keep_fraction` of its area stays
  visible; masks are cropped and `area` recomputed.
  """
  _check_size("min_scale", min_scale, 1e-6)
  _check_size("max_scale", max_scale, min_scale)
  if max_scale > 1:
    raise ValueError(f"max_scale must be <= 1, got {max_scale}")
  _check_size("min_aspect", min_aspect, 1e-6)
  _check_size("max_aspect", max_aspect, min_aspect)
  _check_prob("keep_fraction", keep_fraction)
  _check_size("trials", trials)

  @_random
  def fn(example: Example, rng: np.random.Generator) -> Example:
    h, w, _ = check_example(example)
    ch, cw = h, w
    for _ in range(int(trials)):
      sw, sh = rng.uniform(min_scale, max_scale, size=2)
      cw_, ch_ = max(1, int(w * sw)), max(1, int(h * sh))
      if min_aspect <= cw_ / ch_ <= max_aspect:
        ch, cw = ch_, cw_
        break
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return crop(example, top, left, ch, cw, keep_fraction=keep_fraction)

  return fn


def random_iou_crop(min_scale: float = 0.3, max_scale: float = 1.0,
                    min_aspect_ratio: float = 0.5, max_aspect_ratio: float = 2.0,
                    sampler_options: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
                    trials: int = 40, max_rounds: int = 1000):
  """Random transform: SSD's IoU crop, torchvision `transforms.v2.RandomIoUCrop` semantics.

  Repeatedly: pick a minimum IoU from `sampler_options` (>= 1 means leave the example
  as is); up to `trials` times draw a window (width, height = int(side * U(min_scale,
  max_scale)), aspect width / height within limits, top-left int((side - size) * U(0, 1)))
  that contains the centre of some box (strictly) and whose IoU with one of those boxes is
  at least the minimum. Crop to it and keep exactly the objects whose box centres lie inside
  (boxes clipped; torchvision then drops degenerate boxes with SanitizeBoundingBoxes, here
  boxes with no visible area are dropped). Random numbers come from `rng`, not torch, so
  the draws differ from torchvision's while the distribution is the same. An example with no
  boxes is left as is (torchvision loops until the 1.0 option); `max_rounds` bounds the loop.
  """
  _check_size("min_scale", min_scale, 1e-6)
  _check_size("max_scale", max_scale, min_scale)
  _check_size("trials", trials)
  options = tuple(float(o) for o in sampler_options)
  if not options:
    raise ValueError("sampler_options is empty")

  @_random
  def fn(example: Example, rng: np.random.Generator) -> Example:
    h, w, _ = check_example(example)
    boxes = np.asarray(example.get("boxes", np.zeros((0, 4))), np.float64)
    if len(boxes) == 0:
      return dict(example)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    area = _box_area(boxes)
    for _ in range(int(max_rounds)):
      min_iou = options[int(rng.integers(0, len(options)))]
      if min_iou >= 1.0:
        return dict(example)
      for _ in range(int(trials)):
        r = min_scale + (max_scale - min_scale) * rng.random(2)
        new_w, new_h = int(w * r[0]), int(h * r[1])
        if new_h == 0 or not min_aspect_ratio <= new_w / new_h <= max_aspect_ratio:
          continue
        r = rng.random(2)
        left, top = int((w - new_w) * r[0]), int((h - new_h) * r[1])
        right, bottom = left + new_w, top + new_h
        if left == right or top == bottom:
          continue
        within = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
        if not within.any():
          continue
        b = boxes[within]
        iw = np.clip(np.minimum(b[:, 2], right) - np.maximum(b[:, 0], left), 0, None)
        ih = np.clip(np.minimum(b[:, 3], bottom) - np.maximum(b[:, 1], top), 0, None)
        inter = iw * ih
        iou = inter / (area[within] + new_w * new_h - inter)
        if iou.max() < min_iou:
          continue
        return crop(example, top, left, new_h, new_w, keep=within)
    return dict(example)

  return fn


def _rgb_to_gray(img: np.ndarray) -> np.ndarray:
  return img[..., 0] * 0.2989 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
  """torchvision `adjust_brightness` on float [H, W, 3]: clip(img * factor, 0, 1)."""
  return np.clip(img * np.float32(factor), 0, 1)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
  """torchvision `adjust_contrast`: blend with the mean of the grayscale image."""
  mean = _rgb_to_gray(img).mean(dtype=np.float32)
  return np.clip(img * np.float32(factor) + mean * np.float32(1 - factor), 0, 1)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
  """torchvision `adjust_saturation`: blend with the grayscale image."""
  gray = _rgb_to_gray(img)[..., None]
  return np.clip(img * np.float32(factor) + gray * np.float32(1 - factor), 0, 1)


def adjust_hue(img: np.ndarray, factor: float) -> np.ndarray:
  """torchvision `adjust_hue`: shift the HSV hue by `factor` in [-0.5, 0.5] (turns)."""
  if not -0.5 <= factor <= 0.5:
    raise ValueError(f"hue factor must be in [-0.5, 0.5], got {factor}")
  r, g, b = img[..., 0], img[..., 1], img[..., 2]
  maxc, minc = img.max(-1), img.min(-1)
  eqc = maxc == minc
  crange = maxc - minc
  s = crange / np.where(eqc, 1, maxc)
  div = np.where(eqc, 1, crange)
  rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
  neq_r, eq_g = maxc != r, maxc == g
  hue = (bc - gc) * ~neq_r + (2.0 + rc - bc) * (eq_g & neq_r) + (4.0 + gc - rc) * (neq_r & ~eq_g)
  hue = np.fmod(hue / 6.0 + 1.0, 1.0)
  hue = np.remainder(hue + np.float32(factor), 1.0)
  h6 = hue * 6
  i = np.floor(h6)
  f = h6 - i
  i = np.remainder(i.astype(np.int32), 6)
  v = maxc
  q = np.clip((1.0 - s * f) * v, 0, 1)
  t = np.clip((s * f + (1.0 - s)) * v, 0, 1)
  p = np.clip((1.0 - s) * v, 0, 1)
  vpqt = np.stack([v, p, q, t], axis=-1)
  select = np.array([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])[:, i]
  return np.take_along_axis(vpqt, np.moveaxis(select, 0, -1), axis=-1).astype(img.dtype)


def photometric_distort(brightness=(0.875, 1.125), contrast=(0.5, 1.5), saturation=(0.5, 1.5),
                        hue=(-0.05, 0.05), p: float = 0.5):
  """Random transform: SSD photometric distortion, torchvision
  `transforms.v2.RandomPhotometricDistort` semantics, on `image` only (labels untouched).

  Each of brightness, contrast, saturation and hue factors is drawn (uniform in its range)
  with probability `p`; contrast goes before saturation/hue or after them (probability 1/2);
  then a random channel permutation with probability `p`. Every step clips to [0, 1], so the
  image stays in [0, 1]. The draws come from `rng` (not torch).
  """
  _check_prob("p", p)
  for name, (lo, hi) in (("brightness", brightness), ("contrast", contrast),
                         ("saturation", saturation)):
    if not 0 <= lo <= hi:
      raise ValueError(f"{name} range must satisfy 0 <= min <= max, got {(lo, hi)}")
  if not -0.5 <= hue[0] <= hue[1] <= 0.5:
    raise ValueError(f"hue range must satisfy -0.5 <= min <= max <= 0.5, got {tuple(hue)}")

  @_random
  def fn(example: Example, rng: np.random.Generator) -> Example:
    check_example(example)
    factors = {}
    for name, (lo, hi) in (("brightness", brightness), ("contrast", contrast),
                           ("saturation", saturation), ("hue", hue)):
      factors[name] = rng.uniform(lo, hi) if rng.random() < p else None
    contrast_before = rng.random() < 0.5
    perm = rng.permutation(3) if rng.random() < p else None
    image = np.asarray(example["image"])
    img = image.astype(np.float32)
    if factors["brightness"] is not None:
      img = adjust_brightness(img, factors["brightness"])
    if factors["contrast"] is not None and contrast_before:
      img = adjust_contrast(img, factors["contrast"])
    if factors["saturation"] is not None:
      img = adjust_saturation(img, factors["saturation"])
    if factors["hue"] is not None:
      img = adjust_hue(img, factors["hue"])
    if factors["contrast"] is not None and not contrast_before:
      img = adjust_contrast(img, factors["contrast"])
    if perm is not None:
      img = img[..., perm]
    out = dict(example)
    out["image"] = np.clip(img, 0, 1).astype(image.dtype)
    return out

  return fn


def elastic_field(shape_hw, rng: np.random.Generator, alpha: float = 10.0,
                  sigma: float | None = None, grid: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """A random smooth displacement field (dx, dy), float64 [H, W] each, in pixels.

  sigma None (U-Net, Ronneberger et al. 2015): displacement vectors drawn from
  N(0, alpha^2) px on a `grid` x `grid` coarse grid spanning the image (corners included),
  interpolated bicubically (cubic spline) to every pixel. sigma given (Simard et al. 2003):
  per-pixel U(-1, 1) fields smoothed by a Gaussian of std `sigma` px, times `alpha`.
  """
  h, w = shape_hw
  if sigma is None:
    coarse = rng.normal(0.0, alpha, size=(2, grid, grid))
    # the tensor-product cubic spline is linear in the grid values and separable: interpolate
    # the grid's unit vectors along each axis once, then field = Ry @ coarse @ Rx^T
    def axis_matrix(n):
      pos = np.linspace(0, grid - 1, n)
      return np.stack([ndimage.map_coordinates(e, [pos], order=3, mode="nearest")
                       for e in np.eye(grid)], axis=1)
    ry, rx = axis_matrix(h), axis_matrix(w)
    return tuple(ry @ c @ rx.T for c in coarse)
  fields = rng.uniform(-1, 1, size=(2, h, w))
  return tuple(alpha * ndimage.gaussian_filter(f, sigma, mode="constant") for f in fields)


def elastic_deform(alpha: float = 10.0, sigma: float | None = None, grid: int = 3,
                   p: float = 1.0, pixel_valid: bool = False, iterations: int = 100):
  """Random transform: elastic deformation (U-Net paper's by default, see `elastic_field`).

  Output pixel p shows the source at p + d(p) (backward map). Image and sketch are sampled
  bilinearly; masks, semantic, panoptic, depth, normals nearest (outside the source: the
  module's padding values). Normals keep their vectors: under a non-rigid deformation they
  are only approximately right (the true normals of a deformed surface are unknown).
  Keypoints move to the q with q + d(q) = x, found by at most `iterations` fixed-point
  steps (stopping when a step is < 1e-5 px; converges for smooth fields, |grad d| < 1), v = 0 when they leave the image. Boxes are the
  extent of the deformed masks when masks exist (objects whose mask vanishes are dropped),
  else the extent of the mapped box outlines (9 points per edge; a deformed edge can bulge
  between samples by a fraction of a pixel). With probability 1 - p the example is returned
  unchanged.
  """
  _check_size("alpha", alpha, 0)
  if sigma is not None:
    _check_size("sigma", sigma, 1e-6)
  _check_size("grid", grid, 2)
  _check_prob("p", p)

  @_random
  def fn(example: Example, rng: np.random.Generator) -> Example:
    h, w, _ = check_example(example)
    if rng.random() >= p:
      return dict(example)
    dx, dy = elastic_field((h, w), rng, alpha, sigma, int(grid))
    xs = np.arange(w, dtype=np.float64)[None, :] + 0.5
    ys = np.arange(h, dtype=np.float64)[:, None] + 0.5
    geom = _Dense((h, w), xs + dx, ys + dy, iterations=iterations)
    return _apply(example, geom, boxes_from_masks=True, pixel_valid=pixel_valid)

  return fn


# ------------------------------------------------------------------------------ composition


def _takes_rng(fn: Callable) -> bool:
  flag = getattr(fn, "is_random", None)
  if flag is not None:
    return bool(flag)
  try:
    params = [q for q in inspect.signature(fn).parameters.values()
              if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD) and q.default is q.empty]
  except (TypeError, ValueError):
    return True
  return len(params) >= 2


def compose(*transforms: Callable) -> Callable[[Example, np.random.Generator], Example]:
  """One random transform applying `transforms` in order; random ones get the same `rng`
  (drawing from it in turn), deterministic ones (`fn(example)`) none."""
  for t in transforms:
    if not callable(t):
      raise ValueError(f"compose takes callables, got {t!r}")  # noqa: TRY004
  kinds = [_takes_rng(t) for t in transforms]

  @_random
  def fn(example: Example, rng: np.random.Generator | None = None) -> Example:
    if rng is None and any(kinds):
      raise ValueError("this composition has random transforms: pass an np.random.Generator")
    for t, random in zip(transforms, kinds):
      example = t(example, rng) if random else t(example)
    return example

  return fn


_FACTORIES: dict[str, Callable[..., Callable]] = {
    "hflip": flip,
    "random_hflip": random_hflip,
    "resize_keep_aspect": resize_keep_aspect,
    "resize_pad_to": resize_pad_to,
    "random_scale_jitter": random_scale_jitter,
    "random_crop": random_crop,
    "random_iou_crop": random_iou_crop,
    "photometric_distort": photometric_distort,
    "elastic_deform": elastic_deform,
}


def names() -> list[str]:
  """Names that `build` knows."""
  return sorted(_FACTORIES)


def build(spec) -> Callable[[Example, np.random.Generator], Example]:
  """A composed transform from a config spec: a list whose items are a name, a
  `(name, kwargs)` pair or a dict `{"name": ..., **kwargs}`, e.g.
  `[("random_hflip", {"p": 0.5, "flip_pairs": [(0, 1)]}), ("resize_pad_to", {"size": 256})]`.
  Unknown names are ValueErrors listing the known ones; bad kwargs are ValueErrors too."""
  if isinstance(spec, (str, dict)) or (isinstance(spec, tuple) and len(spec) == 2
                                       and isinstance(spec[0], str)
                                       and isinstance(spec[1], dict)):
    spec = [spec]
  transforms = []
  for item in spec:
    if isinstance(item, str):
      name, kwargs = item, {}
    elif isinstance(item, dict) or hasattr(item, "to_dict"):
      kwargs = dict(item.to_dict() if hasattr(item, "to_dict") else item)
      if "name" not in kwargs:
        raise ValueError(f"augmentation spec {item!r} has no 'name'")
      name = kwargs.pop("name")
    elif isinstance(item, (tuple, list)) and len(item) == 2:
      name, kwargs = item[0], dict(item[1])
    else:
      raise ValueError(f"augmentation spec items are a name, (name, kwargs) or a dict with "
                       f"'name'; got {item!r}")
    if name not in _FACTORIES:
      raise ValueError(f"unknown augmentation {name!r}; known augmentations: {names()}")
    try:
      inspect.signature(_FACTORIES[name]).bind(**kwargs)
    except TypeError as e:
      raise ValueError(f"bad arguments for augmentation {name!r}: {e}") from None
    transforms.append(_FACTORIES[name](**kwargs))
  return compose(*transforms)


make = build
