"""Ground truth assigned to anchors by IoU, for the anchor-based dense detectors and the RPN:
torchvision's `Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches)` (and SSD's
`SSDMatcher`) on `box_iou(gt, anchors)` per image, vmapped over the batch, static-shape (padded ground truth
with `gt_valid`). An image without valid objects matches nothing (every anchor -1,
background), as torchvision's detectors do for empty targets.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcv.ops.box_coder import encode_boxes
from jaxcv.ops.boxes import box_iou
from jaxcv.ops.matching import match


def anchor_matches(anchors: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array,
                   fg_iou_thresh: float, bg_iou_thresh: float,
                   allow_low_quality_matches: bool = True) -> jax.Array:
  """int32 `[B, N]`: per anchor the index of its ground truth in `[0, M)`, -1 background
  (IoU below `bg_iou_thresh`), -2 ignored (between the thresholds). anchors `[N, 4]`,
  gt_boxes `[B, M, 4]`, gt_valid bool `[B, M]`."""
  def one(gt, ok):
    return match(box_iou(gt, anchors), fg_iou_thresh, bg_iou_thresh,
                 allow_low_quality_matches, gt_valid=ok)

  return jax.vmap(one)(gt_boxes.astype(jnp.float32), gt_valid)


def ssd_matches(anchors: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array,
                iou_thresh: float = 0.5) -> jax.Array:
  """int32 `[B, N]`, torchvision's `SSDMatcher(iou_thresh)`: `Matcher(t, t)` (a ground-truth
  index where the best IoU >= t, else -1), then every valid ground truth's best default box
  (first maximum) is matched to it whatever the IoU; where several ground truths share a best
  box the last one (highest index) has it, as torch's in-order index assignment."""
  n = anchors.shape[0]

  def one(gt, ok):
    iou = box_iou(gt, anchors)                                           # [M, N]
    matches = match(iou, iou_thresh, iou_thresh, False, gt_valid=ok)
    best = jnp.argmax(jnp.where(ok[:, None], iou, -jnp.inf), axis=1)      # [M]
    owner = jnp.where((best[:, None] == jnp.arange(n)[None]) & ok[:, None],
                      jnp.arange(gt.shape[0])[:, None], -1).max(0)       # [N]
    return jnp.where(owner >= 0, owner, matches).astype(jnp.int32)

  return jax.vmap(one)(gt_boxes.astype(jnp.float32), gt_valid)


def matched_boxes(gt_boxes: jax.Array, matches: jax.Array, fill: jax.Array) -> jax.Array:
  """`[B, N, 4]`: each anchor's matched ground-truth box, `fill` (`[N, 4]`, e.g. the anchors:
  no log(0) when encoding) where it has none."""
  got = jnp.take_along_axis(gt_boxes.astype(jnp.float32), jnp.maximum(matches, 0)[..., None],
                            axis=1)
  return jnp.where((matches >= 0)[..., None], got, fill)


def regression_targets(anchors: jax.Array, gt_boxes: jax.Array, matches: jax.Array,
                       weights=(1.0, 1.0, 1.0, 1.0)) -> jax.Array:
  """`[B, N, 4]` BoxCoder(weights) codes of each anchor's matched box, zeros off the
  matched anchors."""
  codes = encode_boxes(matched_boxes(gt_boxes, matches, anchors), anchors, weights)
  return jnp.where((matches >= 0)[..., None], codes, 0.0)


def class_targets(gt_classes: jax.Array, matches: jax.Array, num_columns: int) -> jax.Array:
  """float32 `[B, N, K]` one-hot classification targets: each matched anchor's (or
  location's) ground-truth class column, zeros for the unmatched (-1) and ignored (-2)."""
  cls = jnp.take_along_axis(gt_classes, jnp.maximum(matches, 0), axis=1)
  return jax.nn.one_hot(cls, num_columns, dtype=jnp.float32) * (matches >= 0)[..., None]
