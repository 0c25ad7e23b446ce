"""Panoptic FPN's test-time merge of instance and semantic predictions, exactly as detectron2's
`combine_semantic_and_instance_outputs` (`detectron2/modeling/meta_arch/panoptic_fpn.py`, the
heuristic of panopticapi's `combine_semantic_and_instance_predictions.py`), as a static-shape
JAX function: jit-able and vmappable over a batch, so that the merge runs on the device.

Rules, per image (detectron2's loop, step for step):
- instances in descending score order (`lax.scan`; padding rows, `valid` False, and NaN
  scores last and never used); detectron2's `break` at the first score <
  `instances_score_thresh` is the same as skipping every later instance, which is what the
  scan does;
- an instance with an empty mask is skipped; one whose mask overlaps the pixels painted so
  far by intersection / mask area > `overlap_threshold` is skipped; otherwise it takes the
  next segment id (1, 2, ...) and paints the unpainted pixels of its mask (a kept instance may
  paint no pixel at all when the threshold is >= 1, as in detectron2);
- then the stuff labels k = 1..S of the semantic map in ascending order (label 0 is the
  "things" class and never a segment): a label present in the map whose unpainted pixels
  number >= `stuff_area_thresh` takes the next id and paints them. detectron2 visits the
  labels `torch.unique` finds; here the S labels are static (`stuff_classes`), labels outside
  1..S are left void, and labels in 1..S but absent from the map are skipped as detectron2
  skips them (it never sees them).
Ratios are taken in float32 (detectron2: float64): only an intersection / area within a
float32 rounding of the threshold could decide differently.

Output: the panoptic map int32 `[H, W]` (0 = void, as the `panoptic` batch key) and a dict
of segment arrays of static length `D + S` with the batch keys of `jaxcv.metrics.panoptic`:
`segment_ids` int32 (1..n on the first n rows, in detectron2's `segments_info` order: the
kept things by score, then the stuff), `segment_classes` int32 (things: the instance's class
1..C; stuff label k: `stuff_classes[k - 1]`, a panoptic category id), `segment_isthing` bool,
`segment_scores` float32 (the instance's score; 0 for stuff), `segment_area` int32 (pixels
painted; detectron2 reports it for stuff only), `segment_instance` int32 (the detection row of
a thing, detectron2's `instance_id`; -1 otherwise) and `segment_valid` bool; padding rows are
zero (-1 for `segment_instance`) and not valid. `metrics.panoptic.batch_counts` takes the map
and this dict as they are; `metric_segments` drops the segments without pixels (which
detectron2 can list, and `metrics.panoptic.update` refuses).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SEGMENT_KEYS = ("segment_ids", "segment_classes", "segment_isthing", "segment_scores",
                "segment_area", "segment_instance", "segment_valid")


def _check(masks, scores, classes, valid, semantic, stuff_classes):
  """The arrays as jnp (masks bool, valid bool) after shape and dtype checks."""
  masks, scores, classes = jnp.asarray(masks), jnp.asarray(scores), jnp.asarray(classes)
  semantic = jnp.asarray(semantic)
  if masks.ndim != 3:
    raise ValueError(f"combine_semantic_and_instance_outputs: masks must be [D, H, W] (one "
                     f"image; vmap for a batch); got shape {tuple(masks.shape)}")
  d, h, w = masks.shape
  if jnp.issubdtype(masks.dtype, jnp.floating):
    raise ValueError(f"combine_semantic_and_instance_outputs: masks must be bool (or 0/1 "
                     f"integers); got {masks.dtype}: threshold mask probabilities first")
  valid = jnp.ones((d,), bool) if valid is None else jnp.asarray(valid)
  for name, x in (("scores", scores), ("classes", classes), ("valid", valid)):
    if x.shape != (d,):
      raise ValueError(f"combine_semantic_and_instance_outputs: {name} has shape "
                       f"{tuple(x.shape)}; masks {tuple(masks.shape)} need [{d}]")
  if not jnp.issubdtype(scores.dtype, jnp.floating):
    raise ValueError(f"combine_semantic_and_instance_outputs: scores must be floats; got "
                     f"{scores.dtype}")
  if not jnp.issubdtype(classes.dtype, jnp.integer):
    raise ValueError(f"combine_semantic_and_instance_outputs: classes must be integers; got "
                     f"{classes.dtype}")
  if semantic.shape != (h, w) or not jnp.issubdtype(semantic.dtype, jnp.integer):
    raise ValueError(f"combine_semantic_and_instance_outputs: semantic must be an integer "
                     f"[H, W] = [{h}, {w}] map (the argmax of the semantic logits); got "
                     f"{semantic.dtype} {tuple(semantic.shape)}")
  try:
    stuff = [int(c) for c in stuff_classes]
  except TypeError:
    raise ValueError(f"combine_semantic_and_instance_outputs: stuff_classes must be a "
                     f"sequence of ints (the category of semantic labels 1..S); got "
                     f"{stuff_classes!r}") from None
  return masks.astype(bool), scores, classes, valid.astype(bool), semantic, stuff


def combine_semantic_and_instance_outputs(
    masks, scores, classes, valid, semantic, *, stuff_classes: Sequence[int],
    overlap_threshold: float = 0.5, stuff_area_thresh: float = 4096,
    instances_score_thresh: float = 0.5) -> tuple[jax.Array, dict[str, jax.Array]]:
  """detectron2's panoptic merge of one image (see the module docstring).

  Args:
    masks: bool `[D, H, W]` instance masks (detectron2's `pred_masks`, thresholded).
    scores: float `[D]`; classes: int `[D]` (1..C); valid: bool `[D]` (None: all valid) -
      the detector's output rows.
    semantic: int `[H, W]`, the argmax of the semantic head (0 = things, k = stuff label k).
    stuff_classes: the category id of each stuff label 1..S, in label order (static; its
      length is S). `range(1, S + 1)` gives detectron2's own category ids (the labels).
    overlap_threshold, stuff_area_thresh, instances_score_thresh: detectron2's
      `combine_overlap_thresh` (0.5), `combine_stuff_area_thresh` (4096) and
      `combine_instances_score_thresh` (0.5); Python floats or scalar arrays.
  Returns:
    `(panoptic int32 [H, W], segments)`, segments a dict of `[D + S]` arrays (`SEGMENT_KEYS`).
  """
  masks, scores, classes, valid, semantic, stuff = _check(masks, scores, classes, valid,
                                                          semantic, stuff_classes)
  d, h, w = masks.shape
  flat = masks.reshape(d, h * w)
  scores32 = scores.astype(jnp.float32)
  usable = valid & ~jnp.isnan(scores32)
  order = jnp.argsort(jnp.where(usable, -scores32, jnp.inf), stable=True)
  t_overlap = jnp.asarray(overlap_threshold, jnp.float32)
  t_area = jnp.asarray(stuff_area_thresh, jnp.float32)
  t_score = jnp.asarray(instances_score_thresh, jnp.float32)

  def paint(carry, mask, keep):
    pan, last = carry
    new_id = last + 1
    drawn = mask & (pan == 0) & keep
    pan = jnp.where(drawn, new_id, pan)
    return (pan, jnp.where(keep, new_id, last)), (jnp.where(keep, new_id, 0),
                                                  jnp.sum(drawn, dtype=jnp.int32))

  def thing(carry, i):
    mask = flat[i]
    area = jnp.sum(mask, dtype=jnp.int32)
    inter = jnp.sum(mask & (carry[0] > 0), dtype=jnp.int32)
    ratio = inter.astype(jnp.float32) / jnp.maximum(area, 1).astype(jnp.float32)
    keep = usable[i] & (scores32[i] >= t_score) & (area > 0) & ~(ratio > t_overlap)
    carry, (seg_id, painted) = paint(carry, mask, keep)
    return carry, (seg_id, classes[i].astype(jnp.int32), jnp.where(keep, scores32[i], 0.0),
                   painted, jnp.where(keep, i.astype(jnp.int32), -1), keep)

  sem = semantic.reshape(-1)

  def stuff_step(carry, k):
    region = sem == k
    mask = region & (carry[0] == 0)
    area = jnp.sum(mask, dtype=jnp.int32)
    keep = region.any() & ~(area.astype(jnp.float32) < t_area)
    carry, (seg_id, painted) = paint(carry, mask, keep)
    return carry, (seg_id, painted, keep)

  carry = (jnp.zeros((h * w,), jnp.int32), jnp.int32(0))
  carry, (t_ids, t_cls, t_score_out, t_area_out, t_inst, t_keep) = lax.scan(
      thing, carry, order.astype(jnp.int32))
  n_stuff = len(stuff)
  labels = jnp.arange(1, n_stuff + 1, dtype=jnp.int32)
  carry, (s_ids, s_area, s_keep) = lax.scan(stuff_step, carry, labels)
  keep = jnp.concatenate([t_keep, s_keep])
  rows = {
      "segment_ids": jnp.concatenate([t_ids, s_ids]),
      "segment_classes": jnp.concatenate([t_cls, jnp.asarray(np.asarray(stuff, np.int32))]),
      "segment_isthing": jnp.concatenate([jnp.ones((d,), bool), jnp.zeros((n_stuff,), bool)]),
      "segment_scores": jnp.concatenate([t_score_out, jnp.zeros((n_stuff,), jnp.float32)]),
      "segment_area": jnp.concatenate([t_area_out, s_area]),
      "segment_instance": jnp.concatenate([t_inst, jnp.full((n_stuff,), -1, jnp.int32)]),
  }
  # The kept segments first, in the order their ids were given (so row j has id j + 1).
  perm = jnp.argsort(~keep, stable=True)
  keep = keep[perm]
  segments = {k: jnp.where(keep, v[perm], -1 if k == "segment_instance" else 0)
              for k, v in rows.items()}
  segments["segment_isthing"] = segments["segment_isthing"].astype(bool)
  segments["segment_valid"] = keep
  return carry[0].reshape(h, w), segments


def combine_batch(masks, scores, classes, valid, semantic, *, stuff_classes: Sequence[int],
                  overlap_threshold: float = 0.5, stuff_area_thresh: float = 4096,
                  instances_score_thresh: float = 0.5) -> tuple[jax.Array, dict[str, jax.Array]]:
  """`combine_semantic_and_instance_outputs` vmapped over a batch: masks `[B, D, H, W]`,
  scores, classes, valid `[B, D]` (valid may be None), semantic `[B, H, W]` -> panoptic
  `[B, H, W]` and `[B, D + S]` segment arrays (the batch layout `batch_counts` takes)."""
  masks = jnp.asarray(masks)
  if masks.ndim != 4:
    raise ValueError(f"combine_batch: masks must be [B, D, H, W]; got {tuple(masks.shape)}")
  b = masks.shape[0]
  for name, x in (("scores", scores), ("classes", classes), ("valid", valid),
                  ("semantic", semantic)):
    if x is not None and (jnp.ndim(x) < 1 or jnp.shape(x)[0] != b):
      raise ValueError(f"combine_batch: {name} has shape {tuple(jnp.shape(x))}; masks "
                       f"{tuple(masks.shape)} need a leading batch axis of {b}")
  if valid is None:
    valid = jnp.ones(masks.shape[:2], bool)
  fn = lambda m, s, c, v, sem: combine_semantic_and_instance_outputs(
      m, s, c, v, sem, stuff_classes=stuff_classes, overlap_threshold=overlap_threshold,
      stuff_area_thresh=stuff_area_thresh, instances_score_thresh=instances_score_thresh)
  return jax.vmap(fn)(masks, scores, classes, valid, semantic)


def metric_segments(segments: Mapping[str, Any]) -> dict[str, Any]:
  """The merge's segment dict for `jaxcv.metrics.panoptic` (`update`, `pq`, `batch_counts`):
  `segment_ids`, `segment_classes`, `segment_isthing` and `segment_valid` with the segments
  that got no pixels made invalid (detectron2 can list them: a stuff label when
  `stuff_area_thresh` <= 0, a thing when `overlap_threshold` >= 1; `update` refuses them).
  Works on one image's `[D + S]` arrays or a batch's `[B, D + S]`, NumPy or jnp."""
  missing = [k for k in ("segment_ids", "segment_classes", "segment_area", "segment_valid")
             if k not in segments]
  if missing:
    raise ValueError(f"metric_segments: the segment dict lacks {missing}")
  xp = jnp if isinstance(segments["segment_valid"], jax.Array) else np
  out = {k: segments[k] for k in ("segment_ids", "segment_classes", "segment_isthing")
         if k in segments}
  out["segment_valid"] = xp.asarray(segments["segment_valid"], bool) & (
      xp.asarray(segments["segment_area"]) > 0)
  return out
