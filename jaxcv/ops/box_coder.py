"""Box regression codings as pure jnp functions: Faster R-CNN deltas, YOLO cell offsets, FCOS.

Why: detection heads do not predict boxes directly but codes relative to an anchor, a grid cell
or a point; losses need the forward coding (targets) and inference the inverse (boxes). The
R-CNN coding follows `torchvision.models.detection._utils.BoxCoder` operation for operation, so
models that load torchvision weights decode to torchvision's boxes.

Conventions: boxes are float32 `[..., 4]` as `(x1, y1, x2, y2)` in pixels; widths are
`x2 - x1` (no "+1"); every function broadcasts over leading dimensions, is shape-static and
works under `jax.jit` and `jax.vmap`. Bad shapes raise `ValueError` at trace time.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcv.ops.boxes import check_boxes

DEFAULT_BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def _check_last(x: jax.Array, size: int, name: str) -> None:
  if x.ndim < 1 or x.shape[-1] != size:
    raise ValueError(f"{name} must have last dimension {size}, got shape {tuple(x.shape)}")


def _check_weights(weights: Sequence[float]) -> tuple[float, float, float, float]:
  if len(weights) != 4:
    raise ValueError(f"weights must have 4 entries (wx, wy, ww, wh), got {weights!r}")
  return tuple(float(w) for w in weights)


def _broadcast(a: jax.Array, b: jax.Array, names: str) -> None:
  try:
    jnp.broadcast_shapes(a.shape[:-1], b.shape[:-1])
  except ValueError:
    raise ValueError(f"{names} have leading shapes that do not broadcast: "
                     f"{tuple(a.shape)} and {tuple(b.shape)}") from None


# --------------------------------------------------------------------------------------------
# Faster R-CNN / RetinaNet / SSD coding (torchvision BoxCoder)


def encode_boxes(reference_boxes: jax.Array, proposals: jax.Array,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> jax.Array:
  """Regression targets `(dx, dy, dw, dh)` of `reference_boxes` (the ground truth) relative to
  `proposals` (anchors), as `torchvision BoxCoder(weights).encode_single(reference, proposals)`.

  Args:
    reference_boxes: float `[..., 4]` xyxy boxes to encode (the targets).
    proposals: float `[..., 4]` xyxy anchors/proposals; broadcasts against `reference_boxes`.
    weights: `(wx, wy, ww, wh)`; Faster R-CNN's box head uses `(10, 10, 5, 5)`.

  Returns:
    float `[..., 4]`: `dx = wx * (gx - px) / pw`, `dy = wy * (gy - py) / ph`,
    `dw = ww * log(gw / pw)`, `dh = wh * log(gh / ph)` with centres `x1 + 0.5 * w`.
    Degenerate (zero-width) boxes give inf/nan, as in torchvision.
  """
  reference_boxes = check_boxes(reference_boxes, "reference_boxes")
  proposals = check_boxes(proposals, "proposals")
  _broadcast(reference_boxes, proposals, "reference_boxes and proposals")
  wx, wy, ww, wh = _check_weights(weights)
  dtype = jnp.result_type(reference_boxes, proposals, jnp.float32)
  reference_boxes = reference_boxes.astype(dtype)
  proposals = proposals.astype(dtype)

  ex_widths = proposals[..., 2] - proposals[..., 0]
  ex_heights = proposals[..., 3] - proposals[..., 1]
  ex_ctr_x = proposals[..., 0] + 0.5 * ex_widths
  ex_ctr_y = proposals[..., 1] + 0.5 * ex_heights

  gt_widths = reference_boxes[..., 2] - reference_boxes[..., 0]
  gt_heights = reference_boxes[..., 3] - reference_boxes[..., 1]
  gt_ctr_x = reference_boxes[..., 0] + 0.5 * gt_widths
  gt_ctr_y = reference_boxes[..., 1] + 0.5 * gt_heights

  dx = wx * (gt_ctr_x - ex_ctr_x) / ex_widths
  dy = wy * (gt_ctr_y - ex_ctr_y) / ex_heights
  dw = ww * jnp.log(gt_widths / ex_widths)
  dh = wh * jnp.log(gt_heights / ex_heights)
  return jnp.stack([dx, dy, dw, dh], axis=-1)


def decode_boxes(rel_codes: jax.Array, boxes: jax.Array,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 bbox_xform_clip: float = DEFAULT_BBOX_XFORM_CLIP) -> jax.Array:
  """Boxes from regression codes, as `torchvision BoxCoder(weights, clip).decode_single`.

  Args:
    rel_codes: float `[..., 4]` codes `(dx, dy, dw, dh)`.
    boxes: float `[..., 4]` xyxy reference boxes (anchors/proposals); broadcasts against
      `rel_codes`.
    weights: `(wx, wy, ww, wh)` the codes were made with.
    bbox_xform_clip: `dw / ww` and `dh / wh` are clamped from above at this value before
      `exp` (torchvision's default `log(1000 / 16)`).

  Returns:
    float `[..., 4]` xyxy boxes: `x1 = cx - 0.5 * w` ... with `cx = dx / wx * pw + px`,
    `w = exp(dw / ww) * pw`.

  Class-specific codes (torchvision's `[N, C * 4]` layout of the Faster R-CNN box head):
  `decode_boxes(codes.reshape(N, C, 4), proposals[:, None, :], ...)` gives `[N, C, 4]`, and
  `.reshape(N, C * 4)` is exactly `decode_single`'s output.
  """
  rel_codes = jnp.asarray(rel_codes)
  _check_last(rel_codes, 4, "rel_codes")
  boxes = check_boxes(boxes)
  _broadcast(rel_codes, boxes, "rel_codes and boxes")
  wx, wy, ww, wh = _check_weights(weights)
  dtype = jnp.result_type(rel_codes, jnp.float32)
  rel_codes = rel_codes.astype(dtype)
  boxes = boxes.astype(dtype)

  widths = boxes[..., 2] - boxes[..., 0]
  heights = boxes[..., 3] - boxes[..., 1]
  ctr_x = boxes[..., 0] + 0.5 * widths
  ctr_y = boxes[..., 1] + 0.5 * heights

  dx = rel_codes[..., 0] / wx
  dy = rel_codes[..., 1] / wy
  dw = jnp.minimum(rel_codes[..., 2] / ww, bbox_xform_clip)
  dh = jnp.minimum(rel_codes[..., 3] / wh, bbox_xform_clip)

  pred_ctr_x = dx * widths + ctr_x
  pred_ctr_y = dy * heights + ctr_y
  pred_w = jnp.exp(dw) * widths
  pred_h = jnp.exp(dh) * heights
  half_w = 0.5 * pred_w
  half_h = 0.5 * pred_h
  return jnp.stack([pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w,
                    pred_ctr_y + half_h], axis=-1)


# --------------------------------------------------------------------------------------------
# YOLOv2 / YOLOv3 cell-offset coding


def _check_anchors_wh(anchors_wh) -> jax.Array:
  anchors_wh = jnp.asarray(anchors_wh, jnp.float32)
  if anchors_wh.ndim != 2 or anchors_wh.shape[-1] != 2:
    raise ValueError(f"anchors_wh must be [A, 2] (w, h) pairs, got shape {anchors_wh.shape}")
  return anchors_wh


def _check_stride(stride) -> float:
  if not float(stride) > 0:
    raise ValueError(f"stride must be positive, got {stride!r}")
  return float(stride)


class YoloTargets(NamedTuple):
  """What `yolo_encode` gives for boxes `[..., 4]` on an `[H, W]` grid with `A` anchors.

  cell: int32 `[..., 2]`, the `(row i, column j)` of the cell holding the box centre.
  offset: float32 `[..., 2]`, `(x, y)` position of the centre inside its cell in [0, 1]: the
    target for `sigmoid(tx), sigmoid(ty)` (sigmoid space, as darknet's YOLOv2/v3 losses).
  log_wh: float32 `[..., A, 2]`, `(log(bw / pw), log(bh / ph))` for every anchor: the target
    for the raw `(tw, th)`.
  best_anchor: int32 `[...]`, the anchor of highest IoU with the box when both are centred at
    the origin (YOLOv2/v3 assignment; ties go to the lowest index).
  """
  cell: jax.Array
  offset: jax.Array
  log_wh: jax.Array
  best_anchor: jax.Array


def wh_iou(wh1: jax.Array, wh2: jax.Array) -> jax.Array:
  """IoU of boxes given by `(w, h)` `[..., 2]` when both are centred at the same point
  (broadcasting): `min(w) * min(h) / (w1 * h1 + w2 * h2 - min(w) * min(h))`."""
  wh1 = jnp.asarray(wh1)
  wh2 = jnp.asarray(wh2)
  _check_last(wh1, 2, "wh1")
  _check_last(wh2, 2, "wh2")
  inter = jnp.minimum(wh1[..., 0], wh2[..., 0]) * jnp.minimum(wh1[..., 1], wh2[..., 1])
  union = wh1[..., 0] * wh1[..., 1] + wh2[..., 0] * wh2[..., 1] - inter
  return inter / union


def yolo_encode(boxes: jax.Array, grid_hw: tuple[int, int], stride: float,
                anchors_wh) -> YoloTargets:
  """YOLOv2/v3 targets of xyxy pixel `boxes` `[..., 4]` for a `grid_hw = (H, W)` output of
  `stride` pixels per cell and anchors `anchors_wh` `[A, 2]` (w, h) in pixels.

  The centre `(bx, by)` falls in cell `j = floor(bx / stride)`, `i = floor(by / stride)`
  (clipped to the grid, so a centre on the far image edge lands in the last cell with offset
  1); `offset = (bx / stride - j, by / stride - i)`. See `YoloTargets`. Inverse of
  `yolo_decode` with `tx = logit(offset_x)`, `tw = log_wh[a, 0]`.
  """
  boxes = check_boxes(boxes, dtype=jnp.float32)
  anchors_wh = _check_anchors_wh(anchors_wh)
  stride = _check_stride(stride)
  if len(grid_hw) != 2 or min(grid_hw) <= 0:
    raise ValueError(f"grid_hw must be two positive sizes (H, W), got {grid_hw!r}")
  gh, gw = int(grid_hw[0]), int(grid_hw[1])
  w = boxes[..., 2] - boxes[..., 0]
  h = boxes[..., 3] - boxes[..., 1]
  gx = (boxes[..., 0] + 0.5 * w) / stride
  gy = (boxes[..., 1] + 0.5 * h) / stride
  j = jnp.clip(jnp.floor(gx), 0, gw - 1)
  i = jnp.clip(jnp.floor(gy), 0, gh - 1)
  cell = jnp.stack([i, j], axis=-1).astype(jnp.int32)
  offset = jnp.stack([gx - j, gy - i], axis=-1)
  wh = jnp.stack([w, h], axis=-1)
  log_wh = jnp.log(wh[..., None, :] / anchors_wh)
  best_anchor = jnp.argmax(wh_iou(wh[..., None, :], anchors_wh), axis=-1).astype(jnp.int32)
  return YoloTargets(cell, offset, log_wh, best_anchor)


def yolo_decode(raw: jax.Array, stride: float, anchors_wh) -> jax.Array:
  """xyxy pixel boxes `[..., H, W, A, 4]` from raw YOLO outputs `[..., H, W, A, 4]`
  `(tx, ty, tw, th)` (no activation applied yet) and anchors `anchors_wh` `[A, 2]` in pixels:
  `bx = (sigmoid(tx) + j) * stride`, `by = (sigmoid(ty) + i) * stride`, `bw = pw * exp(tw)`,
  `bh = ph * exp(th)` for the cell in row `i`, column `j` (YOLOv3; YOLOv2's anchors are in
  cells: multiply them by the stride, see `jaxcv.ops.anchors.yolo_priors`)."""
  raw = jnp.asarray(raw)
  anchors_wh = _check_anchors_wh(anchors_wh)
  stride = _check_stride(stride)
  if raw.ndim < 4 or raw.shape[-1] != 4:
    raise ValueError(f"raw must be [..., H, W, A, 4], got shape {tuple(raw.shape)}")
  if raw.shape[-2] != anchors_wh.shape[0]:
    raise ValueError(f"raw has {raw.shape[-2]} anchors per cell but anchors_wh has "
                     f"{anchors_wh.shape[0]}")
  raw = raw.astype(jnp.result_type(raw, jnp.float32))
  gh, gw = raw.shape[-4], raw.shape[-3]
  cols = jnp.arange(gw, dtype=raw.dtype)[None, :, None]
  rows = jnp.arange(gh, dtype=raw.dtype)[:, None, None]
  cx = (jax.nn.sigmoid(raw[..., 0]) + cols) * stride
  cy = (jax.nn.sigmoid(raw[..., 1]) + rows) * stride
  bw = anchors_wh[:, 0] * jnp.exp(raw[..., 2])
  bh = anchors_wh[:, 1] * jnp.exp(raw[..., 3])
  return jnp.stack([cx - 0.5 * bw, cy - 0.5 * bh, cx + 0.5 * bw, cy + 0.5 * bh], axis=-1)


# --------------------------------------------------------------------------------------------
# FCOS point coding


def fcos_ltrb_targets(points: jax.Array, boxes: jax.Array) -> jax.Array:
  """Distances from points to box sides, FCOS's regression targets.

  Args:
    points: float `[..., 2]` `(x, y)` pixel locations.
    boxes: float `[..., 4]` xyxy boxes; leading dimensions broadcast against `points`.

  Returns:
    float32 `[..., 4]` `(l, t, r, b) = (x - x1, y - y1, x2 - x, y2 - y)`; all four are > 0
    exactly when the point is strictly inside the box. See `fcos_ltrb_pairwise` for the
    `[P, M, 4]` all-pairs form used in target assignment.
  """
  points = jnp.asarray(points, jnp.float32)
  _check_last(points, 2, "points")
  boxes = check_boxes(boxes, dtype=jnp.float32)
  _broadcast(points, boxes, "points and boxes")
  x, y = points[..., 0], points[..., 1]
  return jnp.stack([x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y],
                   axis=-1)


def fcos_ltrb_pairwise(points: jax.Array, boxes: jax.Array) -> jax.Array:
  """`(l, t, r, b)` for every point `[P, 2]` and box `[M, 4]`: float32 `[P, M, 4]`."""
  points = jnp.asarray(points)
  if points.ndim != 2 or points.shape[-1] != 2:
    raise ValueError(f"points must be [P, 2], got shape {tuple(points.shape)}")
  boxes = check_boxes(boxes, ranks=(2,))
  return fcos_ltrb_targets(points[:, None, :], boxes[None, :, :])


def fcos_decode(points: jax.Array, ltrb: jax.Array) -> jax.Array:
  """xyxy boxes `[..., 4]` from points `[..., 2]` and distances `(l, t, r, b)` `[..., 4]`:
  `(x - l, y - t, x + r, y + b)` (inverse of `fcos_ltrb_targets`)."""
  points = jnp.asarray(points, jnp.float32)
  ltrb = jnp.asarray(ltrb)
  _check_last(points, 2, "points")
  _check_last(ltrb, 4, "ltrb")
  _broadcast(points, ltrb, "points and ltrb")
  ltrb = ltrb.astype(jnp.result_type(ltrb, jnp.float32))
  x, y = points[..., 0], points[..., 1]
  return jnp.stack([x - ltrb[..., 0], y - ltrb[..., 1], x + ltrb[..., 2], y + ltrb[..., 3]],
                   axis=-1)


def fcos_centerness(ltrb: jax.Array) -> jax.Array:
  """FCOS centre-ness `sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))` of distances
  `[..., 4]`, float32 `[...]` in [0, 1].

  The formula is defined for points inside their box (all distances > 0). Where a distance is
  <= 0 (a point on or outside the box edge, or a zero-size box) the result is 0, never NaN,
  and its gradient is finite (0) there.
  """
  ltrb = jnp.asarray(ltrb)
  _check_last(ltrb, 4, "ltrb")
  ltrb = ltrb.astype(jnp.result_type(ltrb, jnp.float32))
  lr = ltrb[..., 0::2]
  tb = ltrb[..., 1::2]
  inside = jnp.all(ltrb > 0, axis=-1)
  safe = lambda v: jnp.where(inside[..., None], v, 1.0)
  lr, tb = safe(lr), safe(tb)
  ratio = (lr.min(-1) / lr.max(-1)) * (tb.min(-1) / tb.max(-1))
  return jnp.where(inside, jnp.sqrt(ratio), 0.0)


def _centres_and_sizes(boxes: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Centres `[..., 2]` and `(w, h, w, h)` `[..., 4]` of xyxy boxes."""
  centres = 0.5 * (boxes[..., :2] + boxes[..., 2:])
  wh = boxes[..., 2:] - boxes[..., :2]
  return centres, jnp.concatenate([wh, wh], axis=-1)


def linear_encode(reference_boxes: jax.Array, proposals: jax.Array,
                  normalize_by_size: bool = True) -> jax.Array:
  """FCOS's codes, as torchvision's `BoxLinearCoder(normalize_by_size).encode(reference_boxes,
  proposals)`: `fcos_ltrb_targets` from the centre of each `reference_boxes` (the anchors:
  FCOS's locations as squares of the level's size) to the sides of `proposals`, divided by the
  anchor's `(w, h, w, h)` when `normalize_by_size`. `[..., 4]` xyxy, broadcasting."""
  reference_boxes = check_boxes(reference_boxes, "reference_boxes", dtype=jnp.float32)
  proposals = check_boxes(proposals, "proposals", dtype=jnp.float32)
  _broadcast(reference_boxes, proposals, "reference_boxes and proposals")
  centres, sizes = _centres_and_sizes(reference_boxes)
  codes = fcos_ltrb_targets(centres, proposals)
  return codes / sizes if normalize_by_size else codes


def linear_decode(rel_codes: jax.Array, boxes: jax.Array,
                  normalize_by_size: bool = True) -> jax.Array:
  """Inverse of `linear_encode` (torchvision's `BoxLinearCoder.decode(rel_codes, boxes)`):
  `fcos_decode` about each reference box's centre of the codes times `(w, h, w, h)`."""
  rel_codes = jnp.asarray(rel_codes)
  _check_last(rel_codes, 4, "rel_codes")
  boxes = check_boxes(boxes)
  _broadcast(rel_codes, boxes, "rel_codes and boxes")
  rel_codes = rel_codes.astype(jnp.result_type(rel_codes, jnp.float32))
  centres, sizes = _centres_and_sizes(boxes.astype(rel_codes.dtype))
  return fcos_decode(centres, rel_codes * sizes if normalize_by_size else rel_codes)
