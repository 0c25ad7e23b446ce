"""COCO accumulation and summary: pycocotools' `COCOeval.accumulate` (precision, recall and
scores per IoU threshold, recall threshold, category, area range and maxDet) and
`COCOeval.summarize` (the 12 / 10 stats), from the match flags of `coco_match`.

Semantics: per category, detections of all images (sorted image ids) stably sorted by score,
tp / fp cumsums, rc = tp / npig, pr = tp / (tp + fp + eps), precision made monotone from the
right, `searchsorted(rc, recThrs, "left")`; -1 where a category has no non-ignored GT in the
area range. Summary means over entries > -1. The accumulation is one jit-compiled call per
maxDet over all categories at once (float64; the caller scopes enable_x64).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcv.metrics.coco_inputs import Data
from jaxcv.metrics.coco_match import Matches, next_pow, pad_rows
from jaxcv.metrics.coco_params import DET_MAX_DETS, IOU_THRS, KP_MAX_DETS, REC_THRS


def _segment_suffix_max(v, seg):
  """Suffix max of v [A, N] within runs of equal seg [N] (pointer doubling, log2 N steps)."""
  n = v.shape[1]
  pos = jnp.arange(n)

  def body(j, v):
    nxt = pos + jnp.left_shift(1, j)
    nxt_c = jnp.minimum(nxt, n - 1)
    same = (nxt < n) & (seg[nxt_c] == seg)
    return jnp.where(same, jnp.maximum(v, v[:, nxt_c]), v)

  return lax.fori_loop(0, max(1, (n - 1).bit_length()), body, v)


@jax.jit
def _accumulate(dtm, dtig, area, score, seg, valid, seg_start, seg_end, npig, c_r, area_rng):
  """COCOeval.accumulate for one maxDet over all categories at once.

  Detections [N] sorted by (category, -score, image, rank): dtm / dtig bool [T, A, N], area,
  score float64 [N], seg [N] category index (padding: K), valid [N]; seg_start / seg_end [K+1]
  positions; npig [K, A] non-ignored GT counts; c_r [K, A, R] the smallest tp count whose
  recall tp / npig reaches each recall threshold. Returns precision [T, R, K, A], recall
  [T, K, A], scores [T, R, K, A] (-1 where npig == 0).
  """
  n = score.shape[0]
  k = npig.shape[0]
  out_rng = (area[None] < area_rng[:, 0, None]) | (area[None] > area_rng[:, 1, None])  # [A, N]
  nd = (seg_end - seg_start)[:k]
  start = seg_start[:k]

  def one_threshold(args):
    m, mig = args  # [A, N]
    ig = mig | (~m & out_rng)
    tp = m & ~ig & valid
    fp = ~m & ~ig & valid
    tc = jnp.cumsum(tp, axis=1, dtype=jnp.int64)
    fc = jnp.cumsum(fp, axis=1, dtype=jnp.int64)
    tpad = jnp.pad(tc, ((0, 0), (1, 0)))
    fpad = jnp.pad(fc, ((0, 0), (1, 0)))
    t0, f0 = tpad[:, seg_start], fpad[:, seg_start]  # [A, K+1]
    tl = (tc - t0[:, seg]).astype(jnp.float64)
    fl = (fc - f0[:, seg]).astype(jnp.float64)
    pr = tl / (fl + tl + np.spacing(1))
    prm = _segment_suffix_max(pr, seg)
    total = (tpad[:, seg_end] - t0)[:, :k]  # [A, K]
    c = jnp.moveaxis(c_r, 1, 0)  # [A, K, R]
    target = t0[:, :k, None] + c
    idx = jax.vmap(lambda s, q: jnp.searchsorted(s, q, side="left"))(
        tc, target.reshape(target.shape[0], -1)).reshape(target.shape)
    idx = jnp.where(c == 0, start[None, :, None], idx)
    ok = jnp.where(c == 0, (nd > 0)[None, :, None], c <= total[..., None])
    idx = jnp.clip(idx, 0, n - 1)
    q = jnp.where(ok, jnp.take_along_axis(prm, idx.reshape(idx.shape[0], -1), axis=1).reshape(
        idx.shape), 0.0)
    ss = jnp.where(ok, score[idx], 0.0)
    rec = jnp.where(nd[None] > 0, total / jnp.maximum(npig.T, 1), 0.0)  # [A, K]
    none = (npig.T == 0)
    q = jnp.where(none[..., None], -1.0, q)
    ss = jnp.where(none[..., None], -1.0, ss)
    rec = jnp.where(none, -1.0, rec)
    return jnp.transpose(q, (2, 1, 0)), rec.T, jnp.transpose(ss, (2, 1, 0))

  return lax.map(one_threshold, (dtm, dtig))


def _min_count(npig: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
  """Smallest integer c with float64(c / npig) >= r, for npig [K, A] and r [R] -> [K, A, R]."""
  n = np.maximum(npig, 1).astype(np.float64)[..., None]
  r = rec_thrs[None, None, :]
  c = np.ceil(r * n)
  for _ in range(4):
    c = np.where((c > 0) & ((c - 1) / n >= r), c - 1, c)
    c = np.where(c / n < r, c + 1, c)
  return c.astype(np.int64)


def count_gt(data: Data, area_rng: np.ndarray) -> np.ndarray:
  """npig int64 [K, A]: the non-ignored GTs of each category inside each area range."""
  g = data.gt
  area = g["area"][:, None]
  in_rng = (area >= area_rng[None, :, 0]) & (area <= area_rng[None, :, 1])
  npig = np.zeros((data.cat_ids.size, area_rng.shape[0]), np.int64)
  np.add.at(npig, g["cat"], (in_rng & ~g["ignore"][:, None]).astype(np.int64))
  return npig


def accumulate(data: Data, m: Matches, npig: np.ndarray, area_rng: np.ndarray,
               max_dets: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """COCOeval.accumulate: precision [T, R, K, A, M], recall [T, K, A, M], scores
  [T, R, K, A, M] float64 (-1 where a category has no non-ignored GT in an area range)."""
  t_n, r_n, a_n, m_n = IOU_THRS.size, REC_THRS.size, area_rng.shape[0], len(max_dets)
  k_n = data.cat_ids.size
  d = data.dt
  det, rank, dtm, dtig = m
  # per maxDet: detections sorted by (category, -score, image, rank)
  d_cat = d["cat"][det]
  acc_order = np.lexsort((rank, d["img"][det], -d["score"][det], d_cat))
  c_r = _min_count(npig, REC_THRS)
  precision = -np.ones((t_n, r_n, k_n, a_n, m_n))
  recall = -np.ones((t_n, k_n, a_n, m_n))
  scores = -np.ones((t_n, r_n, k_n, a_n, m_n))
  if k_n:
    for mi, md in enumerate(max_dets):
      idx = acc_order[rank[acc_order] < md]
      nm = idx.size
      size = next_pow(max(nm, 1), 2, 1024)
      seg = pad_rows(d_cat[idx], size, k_n)
      seg_start = np.searchsorted(seg, np.arange(k_n + 1), side="left")
      seg_end = np.searchsorted(seg, np.arange(k_n + 1), side="right")
      di = det[idx]
      pr, rc, ss = _accumulate(
          np.transpose(pad_rows(dtm[idx], size), (1, 2, 0)),
          np.transpose(pad_rows(dtig[idx], size), (1, 2, 0)),
          pad_rows(d["area"][di], size), pad_rows(d["score"][di], size), seg,
          np.arange(size) < nm, seg_start, seg_end, npig, c_r, area_rng)
      precision[..., mi] = np.asarray(pr)
      recall[..., mi] = np.asarray(rc)
      scores[..., mi] = np.asarray(ss)
  return precision, recall, scores


def summarize(precision, recall, kp: bool) -> np.ndarray:
  """COCOeval.summarize's stats from precision / recall."""
  labels = ["all", "medium", "large"] if kp else ["all", "small", "medium", "large"]
  max_dets = KP_MAX_DETS if kp else DET_MAX_DETS

  def one(ap, iou=None, area="all", md=100):
    a = labels.index(area)
    m = max_dets.index(md)
    s = precision if ap else recall
    if iou is not None:
      s = s[np.where(iou == IOU_THRS)[0]]
    s = s[..., a, m]
    return -1.0 if s[s > -1].size == 0 else float(np.mean(s[s > -1]))

  if kp:
    return np.array([one(1, md=20), one(1, .5, md=20), one(1, .75, md=20),
                     one(1, area="medium", md=20), one(1, area="large", md=20), one(0, md=20),
                     one(0, .5, md=20), one(0, .75, md=20), one(0, area="medium", md=20),
                     one(0, area="large", md=20)])
  return np.array([one(1), one(1, .5), one(1, .75), one(1, area="small"),
                   one(1, area="medium"), one(1, area="large"), one(0, md=1), one(0, md=10),
                   one(0), one(0, area="small"), one(0, area="medium"), one(0, area="large")])
