"""FCOS's assignment and losses, as torchvision's `FCOS.compute_loss` / `FCOSHead.compute_loss`,
static-shape and vmapped.

Assignment (`fcos_matches`), per location (its "anchor", a square of side s: the level's
anchor size) and ground-truth box: the location matches a box when (1) centre sampling: its
centre is within `radius * s` of the box centre in both axes (max-norm), (2) it lies strictly
inside the box, (3) the largest of its four distances to the sides is in the level's range
`(4 s, 8 s)` (the first level from 0, the last to infinity); of several such boxes it takes
the smallest by area (torchvision's `(1e8 - area)` score, float32, first maximum on ties).
Unmatched locations are -1 (background); padding boxes never match.

Losses, each normalised by the number of foreground locations in the whole batch (at least
1): `classification` the sigmoid focal loss over every location and column (one-hot targets
at the matched class), `bbox_regression` GIoU loss of the decoded boxes
(`ops.linear_decode`, normalised by the location's size) against the matched boxes,
`bbox_ctrness` BCE-with-logits of the centre-ness against its target
`sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))` of the matched box's distances.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from jaxcv.models.detection.dense_heads.anchor_assignment import class_targets, matched_boxes
from jaxcv.ops.box_coder import (fcos_centerness, fcos_ltrb_pairwise, linear_decode,
                                  linear_encode)
from jaxcv.ops.losses import giou_loss, sigmoid_focal_loss


def fcos_matches(anchors: jax.Array, level_sizes: Sequence[int], gt_boxes: jax.Array,
                 gt_valid: jax.Array, center_sampling_radius: float = 1.5) -> jax.Array:
  """int32 `[B, N]`: per location its ground-truth index in `[0, M)` or -1. anchors `[N, 4]`
  (levels in the order of `level_sizes`), gt_boxes `[B, M, 4]`, gt_valid `[B, M]`."""
  anchors = anchors.astype(jnp.float32)
  centres = 0.5 * (anchors[:, :2] + anchors[:, 2:])                          # [N, 2]
  sizes = anchors[:, 2] - anchors[:, 0]                                      # [N]
  n = anchors.shape[0]
  first, last = level_sizes[0], n - level_sizes[-1]
  lower = jnp.where(jnp.arange(n) < first, 0.0, sizes * 4)
  upper = jnp.where(jnp.arange(n) >= last, jnp.inf, sizes * 8)

  def one(gt, ok):
    gt_centres = 0.5 * (gt[:, :2] + gt[:, 2:])                               # [M, 2]
    near = jnp.abs(centres[:, None] - gt_centres[None]).max(-1) < \
        center_sampling_radius * sizes[:, None]
    dist = fcos_ltrb_pairwise(centres, gt)                                   # [N, M, 4]
    far = dist.max(-1)
    hit = near & (dist.min(-1) > 0) & (far > lower[:, None]) & (far < upper[:, None]) & ok[None]
    areas = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    score = hit.astype(jnp.float32) * (jnp.float32(1e8) - areas)[None]
    best = score.max(1)
    return jnp.where(best < 1e-5, -1, jnp.argmax(score, axis=1)).astype(jnp.int32)

  return jax.vmap(one)(gt_boxes.astype(jnp.float32), gt_valid)


def fcos_losses(cls_logits: jax.Array, deltas: jax.Array, ctrness: jax.Array,
                anchors: jax.Array, matches: jax.Array, gt_boxes: jax.Array,
                gt_classes: jax.Array, *, alpha: float = 0.25,
                gamma: float = 2.0) -> dict[str, jax.Array]:
  """Args: cls_logits `[B, N, K]`, deltas `[B, N, 4]`, ctrness `[B, N]` (logits), anchors
  `[N, 4]`, matches `[B, N]` (`fcos_matches`), gt_boxes `[B, M, 4]`, gt_classes `[B, M]`.
  Returns `{"classification", "bbox_regression", "bbox_ctrness"}`."""
  fg = matches >= 0
  num_fg = jnp.maximum(fg.sum(), 1).astype(jnp.float32)
  target = class_targets(gt_classes, matches, cls_logits.shape[-1])
  loss_cls = sigmoid_focal_loss(cls_logits, target, alpha, gamma).sum() / num_fg
  matched = matched_boxes(gt_boxes, matches, anchors)      # the anchor itself off the fg
  giou = giou_loss(linear_decode(deltas, anchors[None]), matched, eps=1e-7)
  ctr_target = jnp.where(fg, fcos_centerness(linear_encode(anchors[None], matched)), 0.0)
  bce = optax.sigmoid_binary_cross_entropy(ctrness, ctr_target)
  return {"classification": loss_cls,
          "bbox_regression": jnp.where(fg, giou, 0.0).sum() / num_fg,
          "bbox_ctrness": jnp.where(fg, bce, 0.0).sum() / num_fg}
