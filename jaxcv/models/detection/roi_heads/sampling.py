"""Training samples for the box head, as torchvision's `RoIHeads.select_training_samples`:
the ground-truth boxes are appended to each image's proposals, every candidate is matched
to the ground truth (IoU, `Matcher(fg, bg)`, no low-quality matches), labelled with its
match's class (0 below `bg_iou_thresh`, ignored between), and `batch_size_per_image` are
sampled with at most `positive_fraction` positives. Static shapes: the sample has
`batch_size_per_image` slots with a validity mask (per image; vmapped over the batch).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcv.ops.box_coder import encode_boxes
from jaxcv.ops.boxes import box_iou
from jaxcv.ops.matching import BELOW_LOW_THRESHOLD, balanced_sample, match


class RoISample(NamedTuple):
  """`[B, S]` sampled RoIs: boxes `[B, S, 4]`, labels (0 background, 1..C), regression
  targets `[B, S, 4]` (zeros off the positives), valid, and `matched` int32 `[B, S]` the
  ground-truth row of each positive (0 elsewhere: mask and keypoint targets read it). The
  positives fill the first slots: all of them lie in the first
  `int(batch_size_per_image * positive_fraction)` (`positive_slots`)."""
  boxes: jax.Array
  labels: jax.Array
  targets: jax.Array
  valid: jax.Array
  matched: jax.Array


def positive_slots(batch_size_per_image: int, positive_fraction: float) -> int:
  """How many leading sample slots can hold positives (`balanced_sample`'s bound)."""
  return int(batch_size_per_image * positive_fraction)


def sample_rois(proposals, proposal_valid, gt_boxes, gt_classes, gt_valid, key, *,
                fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5,
                batch_size_per_image: int = 512, positive_fraction: float = 0.25,
                weights=(10.0, 10.0, 5.0, 5.0)) -> RoISample:
  """Args: proposals `[B, P, 4]` (no gradient) with `proposal_valid [B, P]`; the padded
  ground truth `gt_boxes [B, M, 4]`, `gt_classes [B, M]` (1..C), `gt_valid [B, M]`; a PRNG
  key. Returns a `RoISample`."""
  proposals = jax.lax.stop_gradient(proposals)
  gt_boxes = gt_boxes.astype(jnp.float32)
  keys = jax.random.split(key, proposals.shape[0])

  def one(props, pvalid, gt, cls, gvalid, k):
    cand = jnp.concatenate([props, jnp.where(gvalid[:, None], gt, 0.0)])
    cvalid = jnp.concatenate([pvalid, gvalid])
    matches = match(box_iou(gt, cand), fg_iou_thresh, bg_iou_thresh, False, gt_valid=gvalid)
    labels = jnp.where(matches >= 0, cls[jnp.maximum(matches, 0)].astype(jnp.int32),
                       jnp.where(matches == BELOW_LOW_THRESHOLD, 0, -1))
    s = balanced_sample(labels, batch_size_per_image, positive_fraction, k, valid=cvalid)
    boxes = cand[s.indices]
    pos = s.is_positive & s.valid
    matched = gt[jnp.maximum(matches[s.indices], 0)]
    unit = jnp.array([0.0, 0.0, 1.0, 1.0])  # no log(0) off the positives
    safe = jnp.where(pos[:, None], matched, unit)
    safe_ref = jnp.where(pos[:, None], boxes, unit)
    targets = jnp.where(pos[:, None], encode_boxes(safe, safe_ref, weights), 0.0)
    return RoISample(jnp.where(s.valid[:, None], boxes, 0.0),
                     jnp.where(pos, labels[s.indices], 0), targets, s.valid,
                     jnp.where(pos, jnp.maximum(matches[s.indices], 0), 0).astype(jnp.int32))

  return jax.vmap(one)(proposals, proposal_valid, gt_boxes, gt_classes, gt_valid, keys)
