"""SSD's training losses, as torchvision's `SSD.compute_loss`.

Assignment: `anchor_assignment.ssd_matches` (IoU >= 0.5, plus each ground truth's best
default box). `bbox_regression`: smooth L1 (beta 1) of the BoxCoder (10, 10, 5, 5) codes over
the foreground boxes, summed. `classification`: softmax cross-entropy (background column 0 the
target of every unmatched box) over the foreground boxes plus the hard negatives: per image
the `neg_to_pos_ratio` x (its foreground count) boxes of highest loss among the others. Both
are divided by the batch's foreground count (at least 1).

torchvision ranks with the foreground losses set to -inf, so when an image has fewer
negatives than `ratio x foreground`, foreground boxes fill the rank and count twice; that is
kept (it is the reference's number), as is its rank order by a descending sort of the loss.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxcv.models.detection.dense_heads.retinanet_loss import box_loss_per_anchor

SSD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def hard_negatives(loss: jax.Array, fg: jax.Array, ratio: float) -> jax.Array:
  """bool `[B, N]`: per image the boxes whose rank in the descending order of `loss` (with the
  foreground's set to -inf) is below `ratio x` its foreground count. Static shapes: a rank
  per box from two argsorts."""
  neg_loss = jnp.where(fg, -jnp.inf, loss)
  order = jnp.argsort(-neg_loss, axis=1, stable=True)
  rank = jnp.argsort(order, axis=1)
  num_neg = ratio * fg.sum(1, keepdims=True)
  return rank < num_neg


def ssd_losses(cls_logits: jax.Array, deltas: jax.Array, anchors: jax.Array,
               matches: jax.Array, gt_boxes: jax.Array, gt_classes: jax.Array, *,
               neg_to_pos_ratio: float = 3.0) -> dict[str, jax.Array]:
  """Args: cls_logits `[B, N, K]`, deltas `[B, N, 4]`, anchors `[N, 4]`, matches `[B, N]`
  (`ssd_matches`: index or -1), gt_boxes `[B, M, 4]`, gt_classes `[B, M]` (1..K-1).
  Returns `{"bbox_regression", "classification"}`."""
  fg = matches >= 0
  num_fg = jnp.maximum(fg.sum(), 1).astype(jnp.float32)
  box = box_loss_per_anchor("smooth_l1", deltas, anchors, gt_boxes, matches, 1.0,
                            SSD_BOX_WEIGHTS)
  labels = jnp.where(fg, jnp.take_along_axis(gt_classes, jnp.maximum(matches, 0), axis=1), 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(cls_logits.astype(jnp.float32), labels)
  negatives = hard_negatives(ce, fg, neg_to_pos_ratio)
  cls = jnp.where(fg, ce, 0.0).sum() + jnp.where(negatives, ce, 0.0).sum()
  return {"bbox_regression": jnp.where(fg, box, 0.0).sum() / num_fg,
          "classification": cls / num_fg}
