"""Panoptic quality (PQ, SQ, RQ) with the rules of panopticapi's `pq_compute_single_core` and
`PQStat.pq_average`.

Why: PQ numbers are only comparable when computed exactly as the COCO panoptic reference
does (void pixels left out of IoUs, crowd regions forgiving false positives, per-category
averaging over categories that occur), so those rules are ported one by one. This is a
host-side NumPy evaluation: per image, one bincount gives all gt x prediction segment
intersections, and the rules are vectorised over segment pairs; the counts accumulate over
images and batches.

Rules, per image (segment ids 0 = VOID, as the `panoptic` batch convention):
- intersection(g, p) = pixels with gt id g and predicted id p; area(p) and area(g) count
  all pixels of the segment (gt areas are pixel counts here, where panopticapi reads the
  json `area`, equal for COCO's ground truth);
- a gt segment g (not crowd) and a predicted segment p of the same category match when
  IoU = intersection / (area(p) + area(g) - intersection - intersection(VOID, p)) > 0.5;
  a match is a TP adding its IoU to the category's IoU sum (matches are unique by IoU > 0.5);
- an unmatched, non-crowd gt segment is a FN of its category; crowd gt segments are never
  matched nor counted;
- an unmatched predicted segment p is a FP of its category unless more than half of it lies
  on VOID or on crowd gt segments of its category: (intersection(VOID, p) +
  intersection(crowd of p's category, p)) / area(p) > 0.5. panopticapi keeps one crowd
  segment per category (the last listed; COCO has at most one); here all crowd segments of
  the category count, the same whenever there is at most one.
Per category: PQ = IoU sum / (TP + FP/2 + FN/2), SQ = IoU sum / TP (0 if no TP),
RQ = TP / (TP + FP/2 + FN/2); PQ, SQ, RQ of a group (all, things, stuff) are plain means over
its categories with TP + FP + FN > 0 (`n` of them; NaN when n = 0, where panopticapi divides
by zero).

Inputs:
- `pred_panoptic`, `gt_panoptic`: int `[H, W]` (one image) or `[B, H, W]` (a batch) segment
  id maps;
- `pred_segments`, `gt_segments`: dicts of `[S]` / `[B, S]` arrays with the batch keys
  `segment_ids`, `segment_classes` (category ids), `segment_iscrowd` (gt only; optional) and
  `segment_valid` (optional; padding rows False);
- `categories`: a mapping category id -> isthing (bool) or -> dict with `isthing`, or a
  sequence of dicts with `id` and `isthing` (COCO's `categories`).
Raises ValueError (panopticapi raises KeyError) for a non-zero id in a map that has no valid
segment, a valid predicted segment with no pixels, repeated or zero segment ids, categories
not in `categories`, and mismatched shapes.

`batch_counts` computes the same counts as a jit-able jnp function of a padded batch (for an
evaluation accumulator on device). Values cannot be checked under jit, so there: map ids
without a valid segment count as VOID, segments of unknown categories and predicted segments
without pixels are not counted, and repeated ids are undefined. Feed it data that `update`
accepts and the counts agree (IoU sums in float32).
"""
from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np


def _categories(categories):
  """(category ids int64 [K], isthing bool [K]) in the given order."""
  if isinstance(categories, Mapping):
    items = [(k, v["isthing"] if isinstance(v, Mapping) else v) for k, v in categories.items()]
  else:
    try:
      items = [(c["id"], c["isthing"]) for c in categories]
    except (TypeError, KeyError) as e:
      raise ValueError("categories must map id -> isthing (or -> dict with 'isthing'), or be "
                       f"a sequence of dicts with 'id' and 'isthing': {e!r}") from None
  ids = np.array([int(k) for k, _ in items], np.int64)
  if len(ids) == 0 or len(set(ids.tolist())) != len(ids):
    raise ValueError(f"categories must be non-empty with distinct ids, got {ids.tolist()}")
  return ids, np.array([bool(v) for _, v in items])


def init(categories) -> dict:
  """Zero counts per category: `{"iou": float64 [K], "tp", "fp", "fn": int64 [K]}`, in the
  order of `categories`."""
  k = len(_categories(categories)[0])
  return {"iou": np.zeros(k), "tp": np.zeros(k, np.int64), "fp": np.zeros(k, np.int64),
          "fn": np.zeros(k, np.int64)}


def _segments(name, segs, crowd, xp=np):
  """The segment arrays of `segs`: ids, classes, (iscrowd,) valid, defaults filled in."""
  if not isinstance(segs, Mapping) or "segment_ids" not in segs \
     or "segment_classes" not in segs:
    raise ValueError(f"{name} must be a dict with segment_ids and segment_classes")
  shape = np.shape(segs["segment_ids"])
  keys = [("segment_ids", 0), ("segment_classes", 0)] + (
      [("segment_iscrowd", False)] if crowd else []) + [("segment_valid", True)]
  out = []
  for key, default in keys:
    x = xp.asarray(segs[key]) if key in segs else xp.full(shape, default)
    if x.shape != shape:
      raise ValueError(f"{name}[{key!r}] has shape {x.shape}, segment_ids {shape}")
    out.append(x)
  return out


def _index_map(name, panoptic, ids):
  """Per pixel: 0 for VOID, k + 1 for the segment ids[k]."""
  if len(ids) and (ids <= 0).any():
    raise ValueError(f"{name}: valid segment ids must be > 0 (0 is VOID), got "
                     f"{ids[ids <= 0].tolist()}")
  if len(set(ids.tolist())) != len(ids):
    raise ValueError(f"{name}: repeated segment ids {ids.tolist()}")
  uniq, inverse = np.unique(panoptic, return_inverse=True)
  known = np.zeros(len(uniq), bool)
  lut = np.zeros(len(uniq), np.int64)
  if len(ids):
    order = np.argsort(ids)
    pos = np.minimum(np.searchsorted(ids[order], uniq), len(ids) - 1)
    known = ids[order][pos] == uniq
    lut = np.where(known, order[pos] + 1, 0)
  missing = uniq[~known & (uniq != 0)]
  if missing.size:
    raise ValueError(f"{name}: segment id(s) {missing[:10].tolist()} in the map have no valid "
                     "segment")
  return lut[inverse.reshape(-1)]


def _image_counts(counts, pred, p_ids, p_cls, gt, g_ids, g_cls, g_crowd, cat_ids):
  cat_pos = {c: k for k, c in enumerate(cat_ids.tolist())}
  for name, cls in (("pred", p_cls), ("gt", g_cls)):
    bad = sorted(set(cls.tolist()) - set(cat_pos))
    if bad:
      raise ValueError(f"{name} segments have categories {bad[:10]} not in categories")
  n_g, n_p = len(g_ids), len(p_ids)
  gi = _index_map("gt_panoptic", gt, g_ids)
  pi = _index_map("pred_panoptic", pred, p_ids)
  inter = np.bincount(gi * (n_p + 1) + pi, minlength=(n_g + 1) * (n_p + 1))
  inter = inter.reshape(n_g + 1, n_p + 1).astype(np.int64)
  g_area, p_area = inter[1:].sum(1), inter[:, 1:].sum(0)
  p_void = inter[0, 1:]
  both = inter[1:, 1:]
  if (p_area == 0).any():
    raise ValueError(f"pred_panoptic: valid segment id(s) {p_ids[p_area == 0][:10].tolist()} "
                     "have no pixels")
  g_cat = np.array([cat_pos[c] for c in g_cls.tolist()], np.int64)
  p_cat = np.array([cat_pos[c] for c in p_cls.tolist()], np.int64)
  same = (g_cat[:, None] == p_cat[None, :]) & ~g_crowd[:, None]
  union = p_area[None, :] + g_area[:, None] - both - p_void[None, :]
  iou = both / np.maximum(union, 1)
  match = same & (both > 0) & (iou > 0.5)
  rows, cols = np.nonzero(match)
  np.add.at(counts["tp"], g_cat[rows], 1)
  np.add.at(counts["iou"], g_cat[rows], iou[rows, cols])
  fn = ~match.any(1) & ~g_crowd
  np.add.at(counts["fn"], g_cat[fn], 1)
  crowd_same = (g_cat[:, None] == p_cat[None, :]) & g_crowd[:, None]
  ignored = p_void + (both * crowd_same).sum(0)
  fp = ~match.any(0) & ~(ignored / p_area > 0.5)
  np.add.at(counts["fp"], p_cat[fp], 1)


def update(counts, pred_panoptic, pred_segments, gt_panoptic, gt_segments, categories,
           valid=None) -> dict:
  """`counts` (from `init`) plus the TP / FP / FN / IoU sums of one image or a batch.

  valid: bool `[B]` (a batch's `example_valid`); images where False are skipped.
  Returns new counts (the input is not modified).
  """
  cat_ids, _ = _categories(categories)
  counts = {k: np.array(v, copy=True) for k, v in counts.items()}
  if counts["tp"].shape != cat_ids.shape:
    raise ValueError(f"counts are for {counts['tp'].shape[0]} categories, categories has "
                     f"{len(cat_ids)}")
  pred, gt = np.asarray(pred_panoptic), np.asarray(gt_panoptic)
  if pred.shape != gt.shape or pred.ndim not in (2, 3):
    raise ValueError(f"pred_panoptic {pred.shape} and gt_panoptic {gt.shape} must be the same "
                     "[H, W] or [B, H, W] shape")
  if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(gt.dtype, np.integer)):
    raise ValueError(f"panoptic maps must be integer ids, got {pred.dtype} and {gt.dtype}")
  p_ids, p_cls, p_valid = _segments("pred_segments", pred_segments, crowd=False)
  g_ids, g_cls, g_crowd, g_valid = _segments("gt_segments", gt_segments, crowd=True)
  single = pred.ndim == 2
  if single:
    pred, gt = pred[None], gt[None]
    p_ids, p_cls, p_valid, g_ids, g_cls, g_crowd, g_valid = (
        x[None] for x in (p_ids, p_cls, p_valid, g_ids, g_cls, g_crowd, g_valid))
  b = pred.shape[0]
  for name, x in (("pred segment_ids", p_ids), ("gt segment_ids", g_ids)):
    if x.ndim != 2 or x.shape[0] != b:
      raise ValueError(f"{name} has shape {x.shape}; the maps need [{b}, S]"
                       if not single else f"{name} must be [S], got {x.shape[1:]}")
  valid = np.ones(b, bool) if valid is None else np.asarray(valid, bool).reshape(-1)
  if valid.shape != (b,):
    raise ValueError(f"valid has shape {valid.shape}; need [{b}]")
  for i in range(b):
    if not valid[i]:
      continue
    pv, gv = p_valid[i].astype(bool), g_valid[i].astype(bool)
    _image_counts(counts, pred[i].reshape(-1), p_ids[i][pv].astype(np.int64),
                  p_cls[i][pv].astype(np.int64), gt[i].reshape(-1),
                  g_ids[i][gv].astype(np.int64), g_cls[i][gv].astype(np.int64),
                  g_crowd[i][gv].astype(bool), cat_ids)
  return counts


def _slots(panoptic, ids, valid):
  """Per pixel: 0 for VOID or an id without a valid segment, k + 1 for the segment ids[k]."""
  big = jnp.iinfo(jnp.int32).max
  key = jnp.where(valid & (ids > 0), ids.astype(jnp.int32), big)
  order = jnp.argsort(key)
  sorted_key = key[order]
  pos = jnp.clip(jnp.searchsorted(sorted_key, panoptic), 0, ids.shape[0] - 1)
  hit = (sorted_key[pos] == panoptic) & (sorted_key[pos] != big) & (panoptic != 0)
  return jnp.where(hit, order[pos] + 1, 0)


def _image_counts_jnp(pred, p_ids, p_cls, p_valid, gt, g_ids, g_cls, g_crowd, g_valid,
                      cat_ids):
  k = cat_ids.shape[0]
  s_g, s_p = g_ids.shape[0], p_ids.shape[0]
  gi = _slots(gt.reshape(-1).astype(jnp.int32), g_ids, g_valid)
  pi = _slots(pred.reshape(-1).astype(jnp.int32), p_ids, p_valid)
  inter = jax.ops.segment_sum(jnp.ones(gi.shape, jnp.int32), gi * (s_p + 1) + pi,
                              num_segments=(s_g + 1) * (s_p + 1)).reshape(s_g + 1, s_p + 1)
  g_area, p_area = inter[1:].sum(1), inter[:, 1:].sum(0)
  p_void, both = inter[0, 1:], inter[1:, 1:]
  g_eq, p_eq = g_cls[:, None] == cat_ids[None], p_cls[:, None] == cat_ids[None]
  g_cat, p_cat = jnp.argmax(g_eq, 1), jnp.argmax(p_eq, 1)
  g_ok = g_valid & (g_ids > 0) & g_eq.any(1)
  p_ok = p_valid & (p_ids > 0) & p_eq.any(1) & (p_area > 0)
  cat_same = (g_cat[:, None] == p_cat[None, :]) & g_ok[:, None] & p_ok[None, :]
  union = p_area[None, :] + g_area[:, None] - both - p_void[None, :]
  match = cat_same & ~g_crowd[:, None] & (2 * both > union)  # IoU > 0.5, exact in ints
  iou = jnp.where(match, both / jnp.maximum(union, 1).astype(jnp.float32), 0.0)
  g_matched, p_matched = match.any(1), match.any(0)
  crowd = cat_same & g_crowd[:, None]
  ignored = p_void + jnp.sum(jnp.where(crowd, both, 0), 0)
  fn = g_ok & ~g_crowd & ~g_matched
  fp = p_ok & ~p_matched & ~(2 * ignored > p_area)
  count = lambda x, cat: jax.ops.segment_sum(x.astype(jnp.int32), cat, num_segments=k)
  return {"iou": jax.ops.segment_sum(iou.sum(1), g_cat, num_segments=k),
          "tp": count(g_matched, g_cat), "fp": count(fp, p_cat), "fn": count(fn, g_cat)}


def batch_counts(pred_panoptic, pred_segments, gt_panoptic, gt_segments, category_ids,
                 valid=None) -> dict:
  """Jit-able counts of a batch: `{"iou": float32 [K], "tp", "fp", "fn": int32 [K]}`.

  pred_panoptic, gt_panoptic: int `[B, H, W]`; *_segments: dicts of `[B, S]` arrays as for
  `update` (padded, `segment_valid`); category_ids: the K category ids in the order of
  `categories` (a static sequence of ints); valid: bool `[B]` (`example_valid`).
  Accumulate with `jax.tree.map(jnp.add, counts, batch_counts(...))` from
  `jax.tree.map(jnp.zeros_like, ...)`, then `compute(counts, categories)` on the host.
  """
  pred, gt = jnp.asarray(pred_panoptic), jnp.asarray(gt_panoptic)
  if pred.shape != gt.shape or pred.ndim != 3:
    raise ValueError(f"pred_panoptic {pred.shape} and gt_panoptic {gt.shape} must be the same "
                     "[B, H, W] shape")
  if not (jnp.issubdtype(pred.dtype, jnp.integer) and jnp.issubdtype(gt.dtype, jnp.integer)):
    raise ValueError(f"panoptic maps must be integer ids, got {pred.dtype} and {gt.dtype}")
  cat_ids = jnp.asarray(np.asarray(category_ids, np.int32).reshape(-1))
  b = pred.shape[0]
  segs = []
  for name, seg, crowd in (("pred_segments", pred_segments, False),
                           ("gt_segments", gt_segments, True)):
    arrays = _segments(name, seg, crowd, jnp)
    if arrays[0].ndim != 2 or arrays[0].shape[0] != b:
      raise ValueError(f"{name} segment_ids has shape {arrays[0].shape}; the maps need "
                       f"[{b}, S]")
    segs.append(arrays)
  (p_ids, p_cls, p_valid), (g_ids, g_cls, g_crowd, g_valid) = segs
  per_image = jax.vmap(_image_counts_jnp, in_axes=(0,) * 9 + (None,))(
      pred, p_ids, p_cls.astype(jnp.int32), p_valid.astype(bool), gt, g_ids,
      g_cls.astype(jnp.int32), g_crowd.astype(bool), g_valid.astype(bool), cat_ids)
  v = jnp.ones((b,), bool) if valid is None else jnp.asarray(valid, bool).reshape(b)
  return {key: jnp.sum(jnp.where(v[:, None], x, 0), 0).astype(x.dtype)
          for key, x in per_image.items()}


def compute(counts, categories) -> dict:
  """PQ / SQ / RQ from accumulated counts.

  Returns floats `pq`, `sq`, `rq`, `n` (all categories), the same with `_things` and
  `_stuff` suffixes, and `per_class`: category id -> {pq, sq, rq} (zeros for categories with
  no TP, FP or FN, as panopticapi).
  """
  cat_ids, isthing = _categories(categories)
  iou, tp = np.asarray(counts["iou"], np.float64), np.asarray(counts["tp"], np.float64)
  fp, fn = np.asarray(counts["fp"], np.float64), np.asarray(counts["fn"], np.float64)
  denom = tp + 0.5 * fp + 0.5 * fn
  used = (tp + fp + fn) > 0
  safe = np.where(used, denom, 1.0)
  pq = np.where(used, iou / safe, 0.0)
  sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
  rq = np.where(used, tp / safe, 0.0)
  out = {}
  for suffix, group in (("", np.ones_like(isthing)), ("_things", isthing),
                        ("_stuff", ~isthing)):
    sel = group & used
    n = int(sel.sum())
    for name, values in (("pq", pq), ("sq", sq), ("rq", rq)):
      out[name + suffix] = float(values[sel].mean()) if n else float("nan")
    out["n" + suffix] = n
  out["per_class"] = {int(c): {"pq": float(pq[k]), "sq": float(sq[k]), "rq": float(rq[k])}
                      for k, c in enumerate(cat_ids)}
  return out


def pq(pred_panoptic, pred_segments, gt_panoptic, gt_segments, categories,
       valid=None) -> dict:
  """PQ / SQ / RQ (all, things, stuff) of one image or a batch: `compute(update(init(...)))`.
  For a data set, accumulate `update` over batches and call `compute` once."""
  counts = update(init(categories), pred_panoptic, pred_segments, gt_panoptic, gt_segments,
                  categories, valid)
  return compute(counts, categories)
