"""The Fast R-CNN box losses and test-time postprocess, as torchvision's `fastrcnn_loss`
and `RoIHeads.postprocess_detections`, with static shapes.

Loss: cross-entropy over the sampled RoIs of the whole batch (mean), and smooth L1 (beta
1/9) between the ground-truth class's deltas and the targets, summed over the positives
and divided by the number of sampled RoIs of the batch.

Postprocess, per image: class-specific boxes decoded (BoxCoder weights (10, 10, 5, 5),
deltas clamped at log(1000 / 16)) and clipped to the image's valid size, softmax scores,
the background column dropped, (box, class) pairs with score > `score_thresh` and both
sides >= 1e-2 kept, NMS at `nms_thresh` per class, the best `detections_per_img` by score.
The per-class NMS is `jaxcv.ops.multiclass_nms`, which ranks every (box, class) pair in one
list and runs class-aware greedy NMS on it: the same set as torchvision's `batched_nms`
followed by `keep[:detections_per_img]`, exact without a cap on the candidates.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxcv.ops.box_coder import decode_boxes
from jaxcv.ops.boxes import clip_boxes, small_boxes_mask
from jaxcv.ops.losses import smooth_l1_loss
from jaxcv.ops.nms import multiclass_nms

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def fast_rcnn_losses(class_logits, box_regression, labels, targets, valid):
  """Args: class_logits `[B, S, C + 1]`, box_regression `[B, S, (C + 1) * 4]`, labels
  `[B, S]` (0 background), targets `[B, S, 4]`, valid `[B, S]`.
  Returns `{"loss_classifier", "loss_box_reg"}`."""
  b, s, n = class_logits.shape
  count = jnp.maximum(valid.sum(), 1).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(class_logits, labels)
  loss_cls = jnp.sum(jnp.where(valid, ce, 0.0)) / count
  deltas = box_regression.reshape(b, s, n, 4)
  deltas = jnp.take_along_axis(deltas, labels[:, :, None, None], axis=2)[:, :, 0]
  pos = valid & (labels > 0)
  box = smooth_l1_loss(deltas, targets, beta=1.0 / 9.0, reduction="none").sum(-1)
  return {"loss_classifier": loss_cls, "loss_box_reg": jnp.sum(jnp.where(pos, box, 0.0)) / count}


def postprocess_detections(class_logits, box_regression, proposals, proposal_valid, image_hw,
                           *, score_thresh: float = 0.05, nms_thresh: float = 0.5,
                           detections_per_img: int = 100, weights=BOX_WEIGHTS):
  """Args: class_logits `[B, R, C + 1]`, box_regression `[B, R, (C + 1) * 4]`, proposals
  `[B, R, 4]` with `proposal_valid [B, R]`, image_hw int `[B, 2]`.
  Returns the detection dict: boxes `[B, D, 4]`, scores `[B, D]`, classes `[B, D]` (1..C),
  valid `[B, D]`, sorted by score, `D = detections_per_img`."""
  b, r, n = class_logits.shape
  boxes = decode_boxes(box_regression.reshape(b, r, n, 4), proposals[:, :, None, :], weights)
  hw = image_hw.astype(jnp.float32)
  boxes = clip_boxes(boxes, hw[:, None, :1], hw[:, None, 1:])[:, :, 1:]
  scores = jax.nn.softmax(class_logits, axis=-1)[:, :, 1:]
  ok = small_boxes_mask(boxes, 1e-2) & proposal_valid[..., None]
  scores = jnp.where(ok, scores, -jnp.inf)  # never above the threshold, never suppresses

  def one(bx, sc, v):
    return multiclass_nms(bx, sc, score_thresh, nms_thresh, detections_per_img,
                          detections_per_img, valid=v)

  out_boxes, out_scores, out_classes, out_valid = jax.vmap(one)(boxes, scores, proposal_valid)
  return {"boxes": out_boxes, "scores": out_scores,
          "classes": jnp.where(out_valid, out_classes + 1, 0).astype(jnp.int32),
          "valid": out_valid}
