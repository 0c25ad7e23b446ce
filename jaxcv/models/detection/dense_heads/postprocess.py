"""Test-time selection of the dense detectors (RetinaNet, FCOS), as torchvision's
`RetinaNet.postprocess_detections` / `FCOS.postprocess_detections`, static-shape.

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
    vals, cb, cc = (jnp.concatenate(c) for c in (cand_s, cand_b, cand_c))
    ok = vals > -jnp.inf
    keep, kept = batched_nms(cb, jnp.where(ok, vals, 0.0), cc, nms_thresh, detections_per_img,
                             valid=ok)
    keep = jnp.maximum(keep, 0)
    return {"boxes": jnp.where(kept[:, None], cb[keep], 0.0),
            "scores": jnp.where(kept, vals[keep], 0.0),
            "classes": jnp.where(kept, cc[keep], 0), "valid": kept}

  return jax.vmap(one)(scores, boxes)
