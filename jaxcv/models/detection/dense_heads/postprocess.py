"""Test-time selection of the dense detectors, static-shape: `dense_detections` as
torchvision's `RetinaNet.postprocess_detections` / `FCOS.postprocess_detections` (top-k per
level), `per_class_detections` as `SSD.postprocess_detections` (top-k per class).

Per image and FPN level: the (location, class) scores above `score_thresh` (strictly), the
best `topk_candidates` of them (fewer where the level has fewer entries; padding masked);
their boxes (decoded per location beforehand, clipped to the image's valid size); then over
all levels class-aware NMS at `nms_thresh` (`jaxcv.ops.batched_nms`, torchvision's
`batched_nms`) and the best `detections_per_img`. Output: the detection contract
(`boxes [B, D, 4]`, `scores`, `classes` (1..C), `valid`), sorted by score.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxcv.ops.boxes import clip_boxes
from jaxcv.ops.nms import batched_nms


def dense_detections(scores: jax.Array, boxes: jax.Array, level_sizes: Sequence[int],
                     image_hw: jax.Array, *, score_thresh: float, topk_candidates: int,
                     nms_thresh: float, detections_per_img: int, first_class: int = 1) -> dict:
  """Args:
    scores: `[B, N, K]` per-location class scores (probabilities), levels concatenated in
      the order of `level_sizes` (static, summing to N); column `k` is class
      `first_class + k`.
    boxes: `[B, N, 4]` decoded boxes of the locations (canvas pixels).
    image_hw: int `[B, 2]` valid (height, width) of each image.
  """
  k = scores.shape[-1]
  hw = image_hw.astype(jnp.float32)
  boxes = clip_boxes(boxes, hw[:, :1], hw[:, 1:])

  def one(s, bx):
    cand_s, cand_b, cand_c, start = [], [], [], 0
    for n in level_sizes:
      flat = s[start:start + n].reshape(-1)
      key = jnp.where(flat > score_thresh, flat, -jnp.inf)
      vals, idx = jax.lax.top_k(key, min(topk_candidates, flat.shape[0]))
      cand_s.append(vals)
      cand_b.append(bx[start + idx // k])
      cand_c.append((idx % k + first_class).astype(jnp.int32))
      start += n
    return _nms_select(jnp.concatenate(cand_s), jnp.concatenate(cand_b),
                       jnp.concatenate(cand_c), nms_thresh, detections_per_img)

  return jax.vmap(one)(scores, boxes)


def _nms_select(vals: jax.Array, boxes: jax.Array, classes: jax.Array, nms_thresh: float,
                detections_per_img: int) -> dict:
  """One image's candidates (`vals` -inf on padding) -> class-aware NMS -> the best
  `detections_per_img`, in the detection contract."""
  ok = vals > -jnp.inf
  keep, kept = batched_nms(boxes, jnp.where(ok, vals, 0.0), classes, nms_thresh,
                           detections_per_img, valid=ok)
  keep = jnp.maximum(keep, 0)
  return {"boxes": jnp.where(kept[:, None], boxes[keep], 0.0),
          "scores": jnp.where(kept, vals[keep], 0.0),
          "classes": jnp.where(kept, classes[keep], 0), "valid": kept}


def per_class_detections(scores: jax.Array, boxes: jax.Array, image_hw: jax.Array, *,
                         score_thresh: float, topk_candidates: int, nms_thresh: float,
                         detections_per_img: int, first_class: int = 1) -> dict:
  """SSD's selection (torchvision's `SSD.postprocess_detections`): per image and class, the
  boxes scoring above `score_thresh` (strictly), the best `topk_candidates` of them; then
  class-aware NMS over all classes' candidates (in class order) and the best
  `detections_per_img`. scores `[B, N, K]` (column `k` class `first_class + k`), boxes
  `[B, N, 4]` decoded (clipped here to `image_hw`)."""
  k = scores.shape[-1]
  hw = image_hw.astype(jnp.float32)
  boxes = clip_boxes(boxes, hw[:, :1], hw[:, 1:])
  top = min(topk_candidates, scores.shape[1])

  def one(s, bx):
    key = jnp.where(s.T > score_thresh, s.T, -jnp.inf)                  # [K, N]
    vals, idx = jax.lax.top_k(key, top)                                 # [K, top]
    classes = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[:, None] + first_class, idx.shape)
    return _nms_select(vals.reshape(-1), bx[idx.reshape(-1)], classes.reshape(-1), nms_thresh,
                       detections_per_img)

  return jax.vmap(one)(scores, boxes)
