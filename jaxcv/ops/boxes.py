"""Box geometry as pure jnp functions: format conversion, area, clipping, and the IoU family.

Why: detection models (anchors, matching, NMS, box losses) need torchvision's box semantics
exactly, since later models load torchvision weights and must give torchvision's outputs; and
they need them as static-shape functions that work under `jax.jit`, `jax.vmap` and `jax.grad`.

Conventions: boxes are `[..., 4]` float arrays, `(x1, y1, x2, y2)` in pixels, with
`x1 <= x2`, `y1 <= y2` (torchvision's contract; inverted boxes give meaningless numbers, as in
torchvision). Integer boxes are cast to float32. `check_boxes` is the one box check of
`jaxcv.ops` (shape, dtype, and for the NMS family the values of concrete boxes).

One elementwise implementation serves everything: `_geometry(a, b)` computes, for PAIRED boxes
(broadcast against each other), the intersection, union, enclosing box and centre distance;
the `elementwise_*` functions combine those into IoU / GIoU / DIoU / CIoU; the pairwise
functions (`box_iou`, `generalized_box_iou`, ...) call them on `a[..., :, None, :]` and
`b[..., None, :, :]`; and the box losses in `jaxcv.ops.losses` call them on paired boxes with
torchvision's loss-side eps.

Degenerate boxes (differs from torchvision, by design, for training): torchvision divides by
zero there and returns NaN (e.g. `box_iou` of two zero-area boxes is 0/0). Here every division
whose denominator is exactly 0 returns 0 instead, with a zero (not NaN) gradient: IoU of two
zero-area boxes is 0, GIoU's enclosing-box term is 0 when the enclosing box has zero area, and
CIoU's aspect term uses `atan(w / h) = 0` for a `0 x 0` box and `+-pi/2` for `h = 0`. Where
the denominators are non-zero (every pair of boxes with positive area) the values are
torchvision's.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.ops.common import InvalidInputError, is_concrete

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


class InvalidBoxesError(InvalidInputError):
  """Concrete boxes that break the `(x1, y1, x2, y2)` contract: a coordinate NaN or infinite,
  or `x2 < x1` / `y2 < y1`, on a row that counts (see `check_boxes`)."""


def valid_boxes_mask(boxes: jax.Array) -> jax.Array:
  """Bool `[...]`: True where a `[..., 4]` xyxy box keeps the contract (all four coordinates
  finite, `x1 <= x2`, `y1 <= y2`; zero-area boxes are valid). What ops that rank or keep
  boxes AND into their candidate mask under `jit`, where they cannot raise."""
  finite = jnp.all(jnp.isfinite(boxes), axis=-1)
  return finite & (boxes[..., 2] >= boxes[..., 0]) & (boxes[..., 3] >= boxes[..., 1])


def check_boxes(boxes, name: str = "boxes", *, ranks: tuple[int, ...] | None = None,
                dtype=None, values: bool = False, valid=None) -> jax.Array:
  """The box check of every op in `jaxcv.ops`: `boxes` as a float `[..., 4]` xyxy array.

  - Shape: last dimension 4, and `ndim in ranks` when `ranks` is given (the per-image ops
    take `(2,)`, one image's `[N, 4]`, and are vmapped over a batch); else any rank >= 1.
    A wrong shape is a ValueError naming `name` and the shape.
  - dtype: cast to `dtype` when given (the NMS kernels are float32 throughout); otherwise a
    float dtype is kept and integer / bool boxes become float32.
  - Values, with `values=True` (the ops that rank, keep or drop boxes: the NMS family): when
    `boxes` and `valid` are concrete, every row that counts (`valid` True, bool broadcasting
    against `boxes[..., 0]`; every row when `valid` is None; padding rows may hold anything)
    must pass `valid_boxes_mask`, else InvalidBoxesError naming the first bad row, its
    coordinates and the rule. Traced inputs cannot raise; those ops mask such rows out
    instead. The geometry functions of this module leave `values` off: they keep
    torchvision's contract (inverted boxes give meaningless numbers, NaN gives NaN) because
    they also run on predicted boxes inside losses.
  """
  boxes = jnp.asarray(boxes)
  if ranks is not None and boxes.ndim not in ranks:
    raise ValueError(f"{name} must have rank {' or '.join(map(str, ranks))} (got shape "
                     f"{tuple(boxes.shape)}); vmap over a batch of images")
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"{name} must have shape [..., 4]; got shape {tuple(boxes.shape)} (last "
                     "dimension 4: x1, y1, x2, y2)")
  if dtype is not None:
    boxes = boxes.astype(dtype)
  elif not jnp.issubdtype(boxes.dtype, jnp.floating):
    boxes = boxes.astype(jnp.float32)
  if values and is_concrete(boxes, valid):
    counts = (np.ones(boxes.shape[:-1], bool) if valid is None else
              np.broadcast_to(np.asarray(valid, bool), boxes.shape[:-1]))
    bad = counts & ~np.asarray(valid_boxes_mask(boxes))
    if bad.any():
      row = tuple(int(i) for i in np.argwhere(bad)[0])
      at = ", ".join(map(str, row))
      raise InvalidBoxesError(
          f"{name}[{at}] = {np.asarray(boxes[row]).tolist()} is not a valid (x1, y1, x2, y2) "
          f"box ({int(bad.sum())} such rows): coordinates must be finite with x1 <= x2 and "
          "y1 <= y2; mark padding rows valid=False (they are not checked)")
  return boxes


def _check_pair(a, b, pairwise: bool) -> tuple[jax.Array, jax.Array]:
  a = check_boxes(a, "boxes1")
  b = check_boxes(b, "boxes2")
  if pairwise:
    if a.ndim < 2 or b.ndim < 2:
      raise ValueError(f"pairwise box functions take boxes1 [..., N, 4] and boxes2 [..., M, 4];"
                       f" got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    lead_a, lead_b = a.shape[:-2], b.shape[:-2]
  else:
    lead_a, lead_b = a.shape[:-1], b.shape[:-1]
  try:
    np.broadcast_shapes(lead_a, lead_b)
  except ValueError:
    raise ValueError(f"boxes1 and boxes2 have mismatched shapes {tuple(a.shape)} and "
                     f"{tuple(b.shape)} (their leading dims must broadcast)") from None
  dtype = jnp.promote_types(a.dtype, b.dtype)
  return a.astype(dtype), b.astype(dtype)


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
  """`num / den`, and 0 (with a zero gradient) where `den == 0`."""
  nonzero = den != 0
  return jnp.where(nonzero, num / jnp.where(nonzero, den, 1), 0)


# ---------------------------------------------------------------------------------------------
# Format, area, clipping, size filter.


def box_convert(boxes: jax.Array, in_fmt: str, out_fmt: str) -> jax.Array:
  """Converts `[..., 4]` boxes between formats (torchvision.ops.box_convert semantics).

  Formats: "xyxy" `(x1, y1, x2, y2)`; "xywh" `(x1, y1, w, h)`; "cxcywh" `(cx, cy, w, h)`.
  Any leading dims; a float dtype is kept (integer boxes become float32). Unknown formats
  raise ValueError.
  """
  for fmt in (in_fmt, out_fmt):
    if fmt not in BOX_FORMATS:
      raise ValueError(f"unknown box format {fmt!r}; known formats: {', '.join(BOX_FORMATS)}")
  boxes = check_boxes(boxes)
  if in_fmt == out_fmt:
    return boxes
  a, b, c, d = (boxes[..., i] for i in range(4))
  if in_fmt == "xywh":
    x1, y1, x2, y2 = a, b, a + c, b + d
  elif in_fmt == "cxcywh":
    x1, y1, x2, y2 = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
  else:
    x1, y1, x2, y2 = a, b, c, d
  if out_fmt == "xywh":
    out = (x1, y1, x2 - x1, y2 - y1)
  elif out_fmt == "cxcywh":
    out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
  else:
    out = (x1, y1, x2, y2)
  return jnp.stack(out, axis=-1)


def box_area(boxes: jax.Array) -> jax.Array:
  """`(x2 - x1) * (y2 - y1)` of `[..., 4]` xyxy boxes: shape `[...]`, the boxes' float dtype."""
  boxes = check_boxes(boxes)
  return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def clip_boxes(boxes: jax.Array, height, width) -> jax.Array:
  """Clips `[..., 4]` xyxy boxes to an image: x to `[0, width]`, y to `[0, height]`
  (torchvision.ops.clip_boxes_to_image with `size=(height, width)`).

  `height`/`width` are numbers or arrays broadcasting against `boxes[..., 0]` (e.g. per-image
  sizes `[B, 1]` for boxes `[B, M, 4]`). Negative Python/NumPy sizes raise ValueError.
  """
  boxes = check_boxes(boxes)
  for name, v in (("height", height), ("width", width)):
    if is_concrete(v) and np.any(np.asarray(v) < 0):
      raise ValueError(f"{name} must be >= 0; got {v}")
  height = jnp.asarray(height, boxes.dtype)
  width = jnp.asarray(width, boxes.dtype)
  x = jnp.clip(boxes[..., 0::2], 0, width[..., None])
  y = jnp.clip(boxes[..., 1::2], 0, height[..., None])
  return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


def small_boxes_mask(boxes: jax.Array, min_size) -> jax.Array:
  """Bool `[...]` mask of the boxes whose width AND height are `>= min_size`.

  The static-shape keep-mask of torchvision.ops.remove_small_boxes: `jnp.nonzero(mask)` on
  `[N, 4]` boxes gives its indices.
  """
  boxes = check_boxes(boxes)
  ws = boxes[..., 2] - boxes[..., 0]
  hs = boxes[..., 3] - boxes[..., 1]
  return (ws >= min_size) & (hs >= min_size)


# ---------------------------------------------------------------------------------------------
# The IoU family: one elementwise implementation.


class _Geometry(NamedTuple):
  inter: jax.Array         # intersection area
  union: jax.Array         # area1 + area2 - inter
  enclose_area: jax.Array  # area of the smallest enclosing box
  diagonal2: jax.Array     # squared diagonal of the enclosing box
  center2: jax.Array       # squared distance between the two centres
  boxes1: jax.Array
  boxes2: jax.Array


def _geometry(a: jax.Array, b: jax.Array) -> _Geometry:
  """Intersection, union, enclosing box and centre distance of PAIRED boxes `a`, `b`
  (float `[..., 4]` broadcasting against each other), in torchvision's arithmetic order."""
  x1, y1, x2, y2 = (a[..., i] for i in range(4))
  x1g, y1g, x2g, y2g = (b[..., i] for i in range(4))
  iw = jnp.minimum(x2, x2g) - jnp.maximum(x1, x1g)
  ih = jnp.minimum(y2, y2g) - jnp.maximum(y1, y1g)
  # as torchvision's loss-side intersection: 0, with a zero gradient, unless both overlaps are
  # strictly positive (so touching boxes get no gradient from the intersection)
  inter = jnp.where((iw > 0) & (ih > 0), iw * ih, 0)
  union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
  ew = jnp.maximum(jnp.maximum(x2, x2g) - jnp.minimum(x1, x1g), 0)
  eh = jnp.maximum(jnp.maximum(y2, y2g) - jnp.minimum(y1, y1g), 0)
  center2 = ((x1 + x2) / 2 - (x1g + x2g) / 2) ** 2 + ((y1 + y2) / 2 - (y1g + y2g) / 2) ** 2
  return _Geometry(inter, union, ew * eh, ew ** 2 + eh ** 2, center2, a, b)


def _iou(g: _Geometry, eps) -> jax.Array:
  return _safe_div(g.inter, g.union + eps)


def _giou(g: _Geometry, eps) -> jax.Array:
  return _iou(g, eps) - _safe_div(g.enclose_area - g.union, g.enclose_area + eps)


def _diou(g: _Geometry, iou: jax.Array, eps) -> jax.Array:
  return iou - _safe_div(g.center2, g.diagonal2 + eps)


def _atan_ratio(w: jax.Array, h: jax.Array) -> jax.Array:
  """`atan(w / h)`, with `+-pi/2` for `h == 0` (0 for `w == h == 0`) and no NaN gradient."""
  zero = h == 0
  return jnp.where(zero, jnp.sign(w) * (math.pi / 2), jnp.arctan(w / jnp.where(zero, 1, h)))


def _aspect_v(g: _Geometry) -> jax.Array:
  """CIoU's aspect-ratio term `4 / pi^2 (atan(w1 / h1) - atan(w2 / h2))^2`."""
  a, b = g.boxes1, g.boxes2
  t1 = _atan_ratio(a[..., 2] - a[..., 0], a[..., 3] - a[..., 1])
  t2 = _atan_ratio(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1])
  return (4 / math.pi ** 2) * (t1 - t2) ** 2


def elementwise_box_iou(boxes1: jax.Array, boxes2: jax.Array, eps: float = 0.0) -> jax.Array:
  """IoU of PAIRED xyxy boxes `[..., 4]` (broadcasting) -> `[...]`: `inter / (union + eps)`.

  `eps=0` is torchvision.ops.box_iou's value (and 0 where the union is 0); the box losses use
  torchvision's loss eps (1e-7).
  """
  a, b = _check_pair(boxes1, boxes2, pairwise=False)
  return _iou(_geometry(a, b), eps)


def elementwise_generalized_box_iou(boxes1: jax.Array, boxes2: jax.Array,
                                    eps: float = 0.0) -> jax.Array:
  """GIoU of PAIRED xyxy boxes `[..., 4]` -> `[...]`:
  `inter / (union + eps) - (C - union) / (C + eps)`, C the smallest enclosing box's area.

  `eps=0`: torchvision.ops.generalized_box_iou's value; `eps=1e-7`: 1 - its GIoU loss.
  """
  a, b = _check_pair(boxes1, boxes2, pairwise=False)
  return _giou(_geometry(a, b), eps)


def elementwise_distance_box_iou(boxes1: jax.Array, boxes2: jax.Array, eps: float = 1e-7,
                                 iou_eps: float = 0.0) -> jax.Array:
  """DIoU of PAIRED xyxy boxes `[..., 4]` -> `[...]`:
  `inter / (union + iou_eps) - d^2 / (c^2 + eps)`, d the distance between the centres, c the
  enclosing box's diagonal.

  Defaults give torchvision.ops.distance_box_iou (whose IoU has no eps); its loss uses
  `iou_eps=eps`.
  """
  a, b = _check_pair(boxes1, boxes2, pairwise=False)
  g = _geometry(a, b)
  return _diou(g, _iou(g, iou_eps), eps)


def elementwise_complete_box_iou(boxes1: jax.Array, boxes2: jax.Array, eps: float = 1e-7,
                                 iou_eps: float = 0.0,
                                 distance_eps: float | None = None) -> jax.Array:
  """CIoU of PAIRED xyxy boxes `[..., 4]` -> `[...]`: `DIoU - alpha * v` with
  `v = 4 / pi^2 (atan(w1 / h1) - atan(w2 / h2))^2` and
  `alpha = stop_gradient(v / (1 - IoU + v + eps))` (torchvision computes alpha under no_grad).

  IoU is `inter / (union + iou_eps)`; the DIoU's distance term uses `distance_eps` (default
  `eps`). Defaults give torchvision.ops.complete_box_iou. (torchvision's complete_box_iou_loss
  uses `iou_eps = distance_eps = 1e-7` whatever its `eps`, which goes only to alpha.)
  """
  a, b = _check_pair(boxes1, boxes2, pairwise=False)
  g = _geometry(a, b)
  iou = _iou(g, iou_eps)
  diou = _diou(g, iou, eps if distance_eps is None else distance_eps)
  v = _aspect_v(g)
  alpha = jax.lax.stop_gradient(_safe_div(v, 1 - iou + v + eps))
  return diou - alpha * v


def _pairwise(fn, boxes1, boxes2, **kwargs) -> jax.Array:
  a, b = _check_pair(boxes1, boxes2, pairwise=True)
  return fn(a[..., :, None, :], b[..., None, :, :], **kwargs)


def box_iou(boxes1: jax.Array, boxes2: jax.Array) -> jax.Array:
  """Pairwise IoU of xyxy boxes `[..., N, 4]` and `[..., M, 4]` -> `[..., N, M]` float
  (torchvision.ops.box_iou; leading dims broadcast). Pairs with zero union give 0, not NaN."""
  return _pairwise(elementwise_box_iou, boxes1, boxes2)


def generalized_box_iou(boxes1: jax.Array, boxes2: jax.Array) -> jax.Array:
  """Pairwise GIoU `[..., N, 4] x [..., M, 4] -> [..., N, M]`
  (torchvision.ops.generalized_box_iou; no eps, 0 where a denominator is 0)."""
  return _pairwise(elementwise_generalized_box_iou, boxes1, boxes2)


def distance_box_iou(boxes1: jax.Array, boxes2: jax.Array, eps: float = 1e-7) -> jax.Array:
  """Pairwise DIoU `[..., N, 4] x [..., M, 4] -> [..., N, M]`
  (torchvision.ops.distance_box_iou: eps only in the squared enclosing diagonal)."""
  return _pairwise(elementwise_distance_box_iou, boxes1, boxes2, eps=eps)


def complete_box_iou(boxes1: jax.Array, boxes2: jax.Array, eps: float = 1e-7) -> jax.Array:
  """Pairwise CIoU `[..., N, 4] x [..., M, 4] -> [..., N, M]`
  (torchvision.ops.complete_box_iou: eps in the diagonal and in alpha's denominator)."""
  return _pairwise(elementwise_complete_box_iou, boxes1, boxes2, eps=eps)
