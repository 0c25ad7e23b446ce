"""RetinaNet's training losses, as torchvision's `RetinaNetHead.compute_loss`.

`classification`: sigmoid focal loss (alpha, gamma) summed over the anchors that are not
ignored (matches != -2) and all K columns, one-hot targets at each foreground anchor's class
column, divided by the image's number of foreground anchors (at least 1), averaged over the
images. `bbox_regression`: per image over its foreground anchors, summed and divided the same
way, averaged over the images; "l1" on the BoxCoder (1, 1, 1, 1) codes (v1), "smooth_l1"
(`beta`), or "giou" of the decoded boxes against the matched ones (v2, eps 1e-7).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcv.models.detection.dense_heads.anchor_assignment import (class_targets, matched_boxes,
                                                                  regression_targets)
from jaxcv.ops.box_coder import decode_boxes
from jaxcv.ops.losses import giou_loss, sigmoid_focal_loss, smooth_l1_loss
from jaxcv.ops.matching import BETWEEN_THRESHOLDS

BOX_LOSSES = ("l1", "smooth_l1", "giou")


def box_loss_per_anchor(kind: str, deltas: jax.Array, anchors: jax.Array,
                        gt_boxes: jax.Array, matches: jax.Array, beta: float = 1.0,
                        weights=(1.0, 1.0, 1.0, 1.0)) -> jax.Array:
  """`[B, N]` box loss of each anchor against its matched box (torchvision's `_box_loss`
  elementwise; meaningful on the foreground anchors only)."""
  if kind not in BOX_LOSSES:
    raise ValueError(f"box loss must be one of {list(BOX_LOSSES)}; got {kind!r}")
  if kind == "giou":
    return giou_loss(decode_boxes(deltas, anchors, weights),
                     matched_boxes(gt_boxes, matches, anchors), eps=1e-7)
  targets = regression_targets(anchors, gt_boxes, matches, weights)
  return smooth_l1_loss(deltas, targets, beta=0.0 if kind == "l1" else beta,
                        reduction="none").sum(-1)


def retinanet_losses(cls_logits: jax.Array, deltas: jax.Array, anchors: jax.Array,
                     matches: jax.Array, gt_boxes: jax.Array, gt_classes: jax.Array, *,
                     alpha: float = 0.25, gamma: float = 2.0, box_loss: str = "l1",
                     beta: float = 1.0) -> dict[str, jax.Array]:
  """Args: cls_logits `[B, N, K]`, deltas `[B, N, 4]`, anchors `[N, 4]`, matches `[B, N]`
  (`anchor_matches`), gt_boxes `[B, M, 4]`, gt_classes `[B, M]` (columns of cls_logits).
  Returns `{"classification", "bbox_regression"}`."""
  fg = matches >= 0
  num_fg = jnp.maximum(fg.sum(1), 1).astype(jnp.float32)                    # [B]
  target = class_targets(gt_classes, matches, cls_logits.shape[-1])
  focal = sigmoid_focal_loss(cls_logits, target, alpha, gamma).sum(-1)     # [B, N]
  cls_loss = jnp.where(matches != BETWEEN_THRESHOLDS, focal, 0.0).sum(1) / num_fg
  box = box_loss_per_anchor(box_loss, deltas, anchors, gt_boxes, matches, beta)
  box_loss_value = jnp.where(fg, box, 0.0).sum(1) / num_fg
  return {"classification": cls_loss.mean(), "bbox_regression": box_loss_value.mean()}
