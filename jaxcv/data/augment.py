"""Host-side (NumPy) augmentations that move every label of an example with its image.

Why: detection, instance, keypoint, panoptic and dense tasks train on the same geometric
augmentations (flip, resize, scale jitter, crop, elastic deformation); each must move boxes,
masks, keypoints, semantic and panoptic maps, depth, normals and sketches consistently with
the image, or the model learns from labels that no longer match the pixels. They run on the
host inside the input pipeline, per example, before padding and batching.

A random transform is `fn(example, rng: np.random.Generator) -> dict`, a deterministic one
`fn(example) -> dict`; both return a new dict and never mutate the input; dtypes are kept.
`compose` chains both kinds, `build(spec)` makes a chain from names (for configs).

Examples, coordinates and how each label is resampled, clipped or dropped: `jaxcv.data.geometry`.
Photometric kernels (torchvision semantics): `jaxcv.data.photometric`.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage

from jaxcv.data.geometry import (OBJECT_KEYS, AxisAlignedMap, DenseMap, Example, apply_map,
                                 box_area, check_example, check_flip_pairs, check_prob,
                                 check_size, size_pair)
from jaxcv.data.geometry import deterministic_transform as _deterministic
from jaxcv.data.geometry import random_transform as _random
from jaxcv.data.resize import _resize_pad, resize_keep_aspect, resize_to_canvas  # noqa: F401
from jaxcv.data.photometric import (adjust_brightness, adjust_contrast, adjust_hue,
                                    adjust_saturation, photometric_distort)

__all__ = ["adjust_brightness", "adjust_contrast", "adjust_hue", "adjust_saturation", "build",
           "check_example", "compose", "crop", "elastic_deform", "elastic_field", "flip",
           "hflip", "make", "names", "photometric_distort", "random_crop", "random_hflip",
           "random_iou_crop", "random_scale_jitter", "random_zoom_out", "resize_keep_aspect",
           "resize_pad_to", "resize_to_canvas"]
_OBJECT_KEYS = OBJECT_KEYS

# ------------------------------------------------------------------------------ transforms


def hflip(example: Example, flip_pairs: Iterable[tuple[int, int]] = (),
          pixel_valid: bool = False) -> Example:
  """Mirrors `example` left-right: x -> W - x.

  Boxes, masks, label maps, depth and sketch move with the image; normals' x component
  changes sign (the scene is mirrored); keypoint x moves and the keypoints of each pair in
  `flip_pairs` (e.g. left/right extreme points of the shapes set) swap places so that a
  "left" keypoint stays on the object's left.
  """
  h, w, _ = check_example(example)
  geom = AxisAlignedMap((h, w), (h, w), -1.0, float(w), 1.0, 0.0)
  return apply_map(example, geom, flip_pairs=tuple(flip_pairs), pixel_valid=pixel_valid)


def flip(flip_pairs: Iterable[tuple[int, int]] = ()) -> Callable[[Example], Example]:
  """Deterministic transform: `hflip` with `flip_pairs` bound."""
  pairs = check_flip_pairs(flip_pairs)
  return _deterministic(lambda example: hflip(example, pairs))


def random_hflip(p: float = 0.5, flip_pairs: Iterable[tuple[int, int]] = ()):
  """Random transform: `hflip(example, flip_pairs)` with probability `p`, else unchanged
  (a shallow copy; one `rng.random()` draw either way)."""
  check_prob("p", p)
  pairs = check_flip_pairs(flip_pairs)

  @_random
  def fn(example: Example, rng: np.random.Generator) -> Example:
    if rng.random() < p:
      return hflip(example, pairs)
    check_example(example)
    return dict(example)

  return fn


def resize_pad_to(size, pad_value: float | Sequence[float] = 0.0, pixel_valid: bool = False):
  """Deterministic transform: letterbox to a fixed `size` (int or (height, width)).

  The image is scaled by min(out_h / H, out_w / W) keeping its aspect ratio (new size
  rounded to whole pixels, at most the output), placed at the top left, and the bottom or
  right padded, so every example of a batch has the same static shape. Boxes scale with the
  image (new size / old size per axis).
  """
  out_h, out_w = size_pair(size, "size")

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
  check_size("min_scale", min_scale, 1e-6)
  check_size("max_scale", max_scale, min_scale)
  check_prob("keep_fraction", keep_fraction)
  out_h, out_w = size_pair(output_size, "output_size")

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
  geom = AxisAlignedMap((h, w), (int(height), int(width)), 1.0, -float(left), 1.0, -float(top))
  return apply_map(example, geom, keep_fraction=keep_fraction, keep=keep,
                   pad_value=pad_value, pixel_valid=pixel_valid)


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
  check_size("min_scale", min_scale, 1e-6)
  check_size("max_scale", max_scale, min_scale)
  if max_scale > 1:
    raise ValueError(f"max_scale must be <= 1, got {max_scale}")
  check_size("min_aspect", min_aspect, 1e-6)
  check_size("max_aspect", max_aspect, min_aspect)
  check_prob("keep_fraction", keep_fraction)
  check_size("trials", trials)

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
  check_size("min_scale", min_scale, 1e-6)
  check_size("max_scale", max_scale, min_scale)
  check_size("trials", trials)
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
    area = box_area(boxes)
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


def random_zoom_out(side_range: Sequence[float] = (1.0, 4.0), p: float = 0.5,
                    fill: float | Sequence[float] = 0.0):
  """Random transform: SSD's zoom out ("expand"), torchvision `transforms.v2.RandomZoomOut`
  semantics. With probability `p`: r ~ U(side_range), a canvas of int(r H) x int(r W)
  filled with `fill` (per channel, in the image's units: SSD fills with the data set's mean),
  the image placed at top-left int((canvas - size) * U(0, 1)) per axis; every label moves
  with it (masks and maps padded with their own fill, as `crop`). The detector's resize then
  brings the larger canvas back to its input size, so objects shrink: SSD's small objects."""
  lo, hi = (float(v) for v in side_range)
  if not 1.0 <= lo <= hi:
    raise ValueError(f"side_range must be (lo, hi) with 1 <= lo <= hi, got {side_range!r}")
  check_prob("p", p)

  @_random
  def fn(example: Example, rng: np.random.Generator) -> Example:
    h, w, _ = check_example(example)
    if rng.random() >= p:
      return dict(example)
    r = lo + (hi - lo) * rng.random()
    ch, cw = int(h * r), int(w * r)
    u = rng.random(2)
    left, top = int((cw - w) * u[0]), int((ch - h) * u[1])
    return crop(example, -top, -left, ch, cw, pad_value=fill)

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
  check_size("alpha", alpha, 0)
  if sigma is not None:
    check_size("sigma", sigma, 1e-6)
  check_size("grid", grid, 2)
  check_prob("p", p)

  @_random
  def fn(example: Example, rng: np.random.Generator) -> Example:
    h, w, _ = check_example(example)
    if rng.random() >= p:
      return dict(example)
    dx, dy = elastic_field((h, w), rng, alpha, sigma, int(grid))
    xs = np.arange(w, dtype=np.float64)[None, :] + 0.5
    ys = np.arange(h, dtype=np.float64)[:, None] + 0.5
    geom = DenseMap((h, w), xs + dx, ys + dy, iterations=iterations)
    return apply_map(example, geom, boxes_from_masks=True, pixel_valid=pixel_valid)

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
    "resize_to_canvas": resize_to_canvas,
    "random_scale_jitter": random_scale_jitter,
    "random_crop": random_crop,
    "random_iou_crop": random_iou_crop,
    "random_zoom_out": random_zoom_out,
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
