"""The Region Proposal Network's selection, targets and losses, as torchvision's
`RegionProposalNetwork`, with static shapes.

Selection (`select_proposals`, no gradient, as torchvision detaches the deltas): per image,
the `pre_nms_top_n` highest objectness logits of each level (fewer where a level has fewer
anchors), decoded against their anchors (BoxCoder weights (1, 1, 1, 1)), clipped to the
image's valid size, boxes narrower or lower than `min_size` (1e-3) and scores (sigmoid)
below `score_thresh` dropped, NMS at `nms_thresh` per level (`batched_nms` with the level as
the class), the best `post_nms_top_n` kept. Output padded to `post_nms_top_n` rows with a
validity mask; padding rows hold zero boxes.

Training (`rpn_losses`): anchors matched to the ground truth (IoU, `Matcher(0.7, 0.3,
allow_low_quality_matches=True)`), `batch_size_per_image` anchors sampled per image with at
most `positive_fraction` positives; objectness BCE-with-logits averaged over the sampled
anchors of the whole batch, box loss smooth L1 (beta 1/9) summed over the positives and
divided by the number of sampled anchors of the batch. An image without objects has only
negatives.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from jaxcv.models.detection.dense_heads.anchor_assignment import (anchor_matches,
                                                                  regression_targets)
from jaxcv.ops.box_coder import decode_boxes
from jaxcv.ops.boxes import clip_boxes, small_boxes_mask
from jaxcv.ops.losses import smooth_l1_loss
from jaxcv.ops.matching import balanced_sample, matches_to_labels
from jaxcv.ops.nms import batched_nms

RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def select_proposals(anchors: jax.Array, objectness: jax.Array, deltas: jax.Array,
                     level_sizes: Sequence[int], image_hw: jax.Array, *, pre_nms_top_n: int,
                     post_nms_top_n: int, nms_thresh: float, score_thresh: float = 0.0,
                     min_size: float = 1e-3):
  """Proposals of a batch.

  Args:
    anchors: `[N, 4]` (the same for every image of the canvas).
    objectness: `[B, N]` logits; deltas `[B, N, 4]`; in the order of `anchors`.
    level_sizes: anchors per level (static), summing to N.
    image_hw: int `[B, 2]` valid (height, width) of each image in the canvas.

  Returns:
    boxes `[B, post_nms_top_n, 4]`, scores `[B, post_nms_top_n]` (sigmoid, descending),
    valid bool `[B, post_nms_top_n]`.
  """
  objectness = jax.lax.stop_gradient(objectness)
  deltas = jax.lax.stop_gradient(deltas)
  idx, levels, start = [], [], 0
  for level, n in enumerate(level_sizes):
    k = min(pre_nms_top_n, n)
    top = jax.lax.top_k(objectness[:, start:start + n], k)[1] + start
    idx.append(top)
    levels.append(jnp.full((k,), level, jnp.int32))
    start += n
  idx = jnp.concatenate(idx, axis=1)                                   # [B, K]
  levels = jnp.concatenate(levels)                                      # [K]
  logits = jnp.take_along_axis(objectness, idx, axis=1)
  boxes = decode_boxes(jnp.take_along_axis(deltas, idx[..., None], axis=1), anchors[idx],
                       RPN_WEIGHTS)
  hw = image_hw.astype(jnp.float32)
  boxes = clip_boxes(boxes, hw[:, :1], hw[:, 1:])
  scores = jax.nn.sigmoid(logits)
  keep = small_boxes_mask(boxes, min_size) & (scores >= score_thresh)

  def one(b, s, v):
    kept, ok = batched_nms(b, s, levels, nms_thresh, post_nms_top_n, valid=v)
    kept = jnp.maximum(kept, 0)
    return (jnp.where(ok[:, None], b[kept], 0.0), jnp.where(ok, s[kept], 0.0), ok)

  return jax.vmap(one)(boxes, scores, keep)


def anchor_targets(anchors: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array,
                   fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3):
  """Per-anchor labels (1 object, 0 background, -1 ignored) `[B, N]` and regression targets
  `[B, N, 4]` (zeros off the positives), as torchvision's `assign_targets_to_anchors`."""
  matches = anchor_matches(anchors, gt_boxes, gt_valid, fg_iou_thresh, bg_iou_thresh, True)
  return matches_to_labels(matches), regression_targets(anchors, gt_boxes, matches, RPN_WEIGHTS)


def rpn_losses(objectness: jax.Array, deltas: jax.Array, labels: jax.Array,
               targets: jax.Array, key: jax.Array, *, batch_size_per_image: int = 256,
               positive_fraction: float = 0.5) -> dict[str, jax.Array]:
  """`{"loss_objectness", "loss_rpn_box_reg"}` as torchvision's `RPN.compute_loss`."""
  keys = jax.random.split(key, labels.shape[0])
  sample = jax.vmap(lambda l, k: balanced_sample(l, batch_size_per_image, positive_fraction,
                                                 k))(labels, keys)
  pos, neg = sample.positive_mask, sample.negative_mask
  chosen = pos | neg
  count = jnp.maximum(chosen.sum(), 1).astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(objectness, (labels == 1).astype(jnp.float32))
  loss_obj = jnp.sum(jnp.where(chosen, bce, 0.0)) / count
  box = smooth_l1_loss(deltas, targets, beta=1.0 / 9.0, reduction="none").sum(-1)
  loss_box = jnp.sum(jnp.where(pos, box, 0.0)) / count
  return {"loss_objectness": loss_obj, "loss_rpn_box_reg": loss_box}
