"""How a map of pixel coordinates moves every label of an example: the checks, the two kinds of
map (axis-aligned scale and shift; a dense per-pixel map) and `apply_map`, which the geometric
augmentations of `jaxcv.data.augment` are built on.

Examples follow the example interface of `docs/conventions.md` (one unpadded example, no
batch axis): `image` float32 [H, W, 3] in [0, 1]; per object `boxes` float32 [n, 4]
(x1, y1, x2, y2) in pixels, `classes` int32 [n], `iscrowd` bool [n], `area` float32 [n],
`masks` bool [n, H, W], `keypoints` float32 [n, K, 3] (x, y, v), `difficult` bool [n];
per pixel `semantic` int32 [H, W] (255 ignore), `panoptic` int32 [H, W] (0 void), `depth`
float32 [H, W] (> 0), `normals` float32 [H, W, 3], `sketch` float32 [H, W, 1]; per segment
`segment_ids`, `segment_classes`, `segment_isthing`, `segment_iscrowd` [s]; scalars
`image_id`, `label`. Optional `pixel_valid` bool [H, W] (see below). Absent keys stay absent.

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

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

Example = dict[str, Any]

OBJECT_KEYS = ("boxes", "classes", "iscrowd", "area", "masks", "keypoints", "difficult")
SEGMENT_KEYS = ("segment_ids", "segment_classes", "segment_isthing", "segment_iscrowd")
PIXEL_KEYS = ("image", "semantic", "panoptic", "depth", "normals", "sketch", "pixel_valid")
SCALAR_KEYS = ("image_id", "label")
KNOWN_KEYS = OBJECT_KEYS + SEGMENT_KEYS + PIXEL_KEYS + SCALAR_KEYS
# trailing shape after [H, W] of each per-pixel key
PIXEL_TRAILING = {"image": (3,), "semantic": (), "panoptic": (), "depth": (), "normals": (3,),
                   "sketch": (1,), "pixel_valid": ()}



# ------------------------------------------------------------------------------ markers


def random_transform(fn: Callable) -> Callable:
  """Marks `fn(example, rng)` as a random transform (`jaxcv.data.augment.compose`)."""
  fn.is_random = True
  return fn


def deterministic_transform(fn: Callable) -> Callable:
  """Marks `fn(example)` as a deterministic transform."""
  fn.is_random = False
  return fn


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
    if key not in KNOWN_KEYS and np.ndim(value) > 0:
      raise ValueError(f"unknown key {key!r} with shape {np.shape(value)}: augmentations do not "
                       f"know how to move it; known keys: {sorted(KNOWN_KEYS)}")
  if "image" not in example:
    raise ValueError("example has no 'image'")
  image = np.asarray(example["image"])
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"'image' must be [H, W, 3], got shape {image.shape}")
  h, w = image.shape[:2]
  if h <= 0 or w <= 0:
    raise ValueError(f"'image' has an empty size {image.shape}")
  for key, trailing in PIXEL_TRAILING.items():
    if key in example and np.shape(example[key]) != (h, w) + trailing:
      raise ValueError(f"{key!r} must have shape {(h, w) + trailing} to match the image, "
                       f"got {np.shape(example[key])}")
  n = None
  for key in OBJECT_KEYS:
    if key in example:
      shape = np.shape(example[key])
      if len(shape) == 0:
        raise ValueError(f"per-object key {key!r} must have a leading object axis, got a scalar")
      if n is None:
        n = shape[0]
      elif shape[0] != n:
        lengths = {k: np.shape(example[k])[0] for k in OBJECT_KEYS if k in example}
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
  seg_lengths = {k: np.shape(example[k]) for k in SEGMENT_KEYS if k in example}
  if seg_lengths and (len(set(seg_lengths.values())) != 1
                      or len(next(iter(seg_lengths.values()))) != 1):
    raise ValueError(f"per-segment arrays must be [s] with one common s, got {seg_lengths}")
  return h, w, n


def check_size(name: str, value, minimum: float = 1) -> None:
  if not np.isscalar(value) or not value >= minimum:
    raise ValueError(f"{name} must be a number >= {minimum}, got {value!r}")


def check_prob(name: str, p) -> None:
  if not np.isscalar(p) or not 0.0 <= p <= 1.0:
    raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")


def size_pair(size, name: str) -> tuple[int, int]:
  """`size` as (height, width) from an int or a pair."""
  if np.isscalar(size):
    size = (size, size)
  size = tuple(size)
  if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
    raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
  return int(size[0]), int(size[1])


def check_flip_pairs(flip_pairs, num_keypoints: int | None = None) -> tuple[tuple[int, int], ...]:
  pairs = tuple((int(a), int(b)) for a, b in flip_pairs)
  used = [i for pair in pairs for i in pair]
  if len(set(used)) != len(used) or any(i < 0 for i in used):
    raise ValueError(f"flip_pairs must be disjoint pairs of keypoint indices, got {pairs}")
  if num_keypoints is not None and used and max(used) >= num_keypoints:
    raise ValueError(f"flip_pairs {pairs} index past the {num_keypoints} keypoints per object")
  return pairs


# ------------------------------------------------------------------------------ samplers


class AxisAlignedMap:
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


class DenseMap:
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


def box_area(b: np.ndarray) -> np.ndarray:
  return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
  """Extent [n, 4] of each bool mask [n, H, W] in pixel-edge coordinates (0s when empty)."""
  n = masks.shape[0]
  rows, cols = masks.any(axis=2), masks.any(axis=1)
  out = np.zeros((n, 4), np.float32)
  for i in range(n):
    r, c = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
    if r.size:
      out[i] = (c[0], r[0], c[-1] + 1, r[-1] + 1)
  return out


def apply_map(example: Example, geom, keep_fraction: float = 0.0,
              keep: np.ndarray | None = None, boxes_from_masks: bool = False,
              flip_pairs: Sequence[tuple[int, int]] = (),
              pad_value: float | Sequence[float] = 0.0, pixel_valid: bool = False) -> Example:
  """Applies the coordinate map `geom` to every key of `example` (see the module docstring).

  keep: optional bool [n] of objects allowed to survive (besides the visibility rule)."""
  h, w, n = check_example(example)
  vx1, vy1, vx2, vy2 = geom.valid_rect()
  out: Example = {k: v for k, v in example.items() if k in SCALAR_KEYS or np.ndim(v) == 0}

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
    mapped_area, clipped_area = box_area(mapped), box_area(clipped)
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
      new_boxes[idx] = mask_boxes(masks)
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
      old_area = box_area(old[idx])
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
    pairs = check_flip_pairs(flip_pairs, kp.shape[1])
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
  seg_present = [k for k in SEGMENT_KEYS if k in example]
  if seg_present:
    if "panoptic" in example and "segment_ids" in example:
      ids = np.asarray(example["segment_ids"])
      sel = np.isin(ids, np.unique(out["panoptic"]))
    else:
      sel = slice(None)
    for key in seg_present:
      out[key] = np.asarray(example[key])[sel]
  return out
