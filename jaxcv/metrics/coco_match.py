"""COCO matching: IoU, mask IoU and OKS of (detection, ground truth) pairs, and pycocotools'
greedy matching per IoU threshold and area range, jit-compiled over buckets of (image,
category) pairs.

Semantics (pycocotools 2.0.x `COCOeval.evaluateImg`, `computeIoU`, `computeOks`, maskApi.c):
- Detections of an (image, category) pair are sorted by score (stable) and cut to the last
  maxDet (100; keypoints 20); matching is done once at that maxDet and the smaller maxDets
  take a prefix, as pycocotools does.
- Greedy matching per IoU threshold t with start value min(t, 1 - 1e-10): non-ignored GTs
  first (stable), best IoU wins, ties go to the later GT, a crowd GT may match many
  detections, a match to a GT with id 0 counts as unmatched (pycocotools stores ids).
- bbox IoU as the C bbIou (crowd: intersection / detection area); mask IoU from RLE runs
  (integer intersection / union); OKS as computeOks (vars = (2 sigma)^2, / (area + eps) / 2,
  bbox-distance branch for GTs without visible keypoints, NumPy's summation order).

Numerics: float64; the caller (`jaxcv.metrics.coco`) runs these under a scoped
`jax.enable_x64(True)`. XLA CPU contracts `a * b + c` into FMA; products that feed additions
get a runtime `+ 0.0` so they round as in C.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcv.metrics.coco_inputs import Data


class Matches(NamedTuple):
  """The detections that take part (the first maxDet of each pair by score) and their match
  flags: `det` int [D] indices into the packed detections, `rank` [D] the rank inside the
  pair, `dtm` bool [D, T, A] matched to a GT with a non-zero id, `dtig` bool [D, T, A]
  matched to an ignored GT (crowd, or out of the area range)."""
  det: np.ndarray
  rank: np.ndarray
  dtm: np.ndarray
  dtig: np.ndarray


def next_pow(n: int, base: int = 2, minimum: int = 1) -> int:
  p = minimum
  while p < n:
    p *= base
  return p


@jax.jit
def _bbox_iou(d, g, crowd, zero):
  """C bbIou for flat pairs: d, g [Q, 4] xywh float64, crowd [Q] -> [Q]."""
  da = d[:, 2] * d[:, 3] + zero  # `+ zero` stops XLA from fusing the product into an FMA
  ga = g[:, 2] * g[:, 3] + zero
  w = jnp.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - jnp.maximum(d[:, 0], g[:, 0])
  h = jnp.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - jnp.maximum(d[:, 1], g[:, 1])
  i = w * h + zero
  u = jnp.where(crowd, da, da + ga - i)
  ok = (w > 0) & (h > 0)
  return jnp.where(ok, i / jnp.where(ok, u, 1.0), 0.0)


@jax.jit
def _mask_iou(ds, de, gs, ge, gl, da, ga, crowd):
  """rleIou for flat pairs from foreground runs: detection runs ds/de [Q, Rd] (padding
  0, 0), gt runs gs/ge [Q, Rg] (padding: a huge start), gl [Q, Rg + 1] cumulative gt run
  lengths, areas da/ga [Q], crowd [Q] -> [Q] float64."""

  def covered(s, e, l, x):  # number of gt pixels with index < x, for each x
    k = jnp.searchsorted(s, x, side="left")
    prev_end = jnp.take(e, jnp.maximum(k - 1, 0))
    return jnp.where(k > 0, l[k] - jnp.maximum(prev_end - x, 0), 0)

  def inter(s, e, l, xs, xe):
    return jnp.sum(covered(s, e, l, xe) - covered(s, e, l, xs))

  i = jax.vmap(inter)(gs, ge, gl, ds, de)
  u = jnp.where(crowd, da, da + ga - i)
  return jnp.where(i > 0, i.astype(jnp.float64) / jnp.maximum(u, 1).astype(jnp.float64), 0.0)


def _numpy_sum(x, n):
  """Sum of the first n entries of x [Q, K] in NumPy's pairwise order (n <= 128)."""
  k = x.shape[1]
  seq = jnp.zeros(x.shape[:1], x.dtype)
  for i in range(k):
    seq = jnp.where(i < n, seq + x[:, i], seq)
  if k < 8:
    return seq
  nb = n - n % 8
  r = [x[:, j] for j in range(8)]
  for i in range(8, k):
    r[i % 8] = jnp.where(i < nb, r[i % 8] + x[:, i], r[i % 8])
  res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
  for i in range(8, k):
    res = jnp.where((i >= nb) & (i < n), res + x[:, i], res)
  return jnp.where(n < 8, seq, res)


@jax.jit
def _oks(dk, gk, garea, gbox, variances, zero):
  """computeOks for flat pairs: dk [Q, K, 3], gk [Q, K, 3], garea [Q], gbox [Q, 4] -> [Q]."""
  xd, yd = dk[..., 0], dk[..., 1]
  xg, yg, vg = gk[..., 0], gk[..., 1], gk[..., 2]
  vis = vg > 0
  k1 = vis.sum(-1)
  x0 = gbox[:, 0] - gbox[:, 2]
  x1 = gbox[:, 0] + gbox[:, 2] * 2
  y0 = gbox[:, 1] - gbox[:, 3]
  y1 = gbox[:, 1] + gbox[:, 3] * 2
  far_x = jnp.maximum(0.0, x0[:, None] - xd) + jnp.maximum(0.0, xd - x1[:, None])
  far_y = jnp.maximum(0.0, y0[:, None] - yd) + jnp.maximum(0.0, yd - y1[:, None])
  has = (k1 > 0)[:, None]
  dx = jnp.where(has, xd - xg, far_x)
  dy = jnp.where(has, yd - yg, far_y)
  e = ((dx * dx + zero) + (dy * dy + zero)) / variances / (garea[:, None] + np.spacing(1)) / 2
  sel = jnp.where(has, vis, True)
  order = jnp.argsort(~sel, axis=1, stable=True)  # visible keypoints first, in order
  ex = jnp.take_along_axis(jnp.exp(-e), order, axis=1)
  n = sel.sum(-1)
  return _numpy_sum(ex, n) / n


@jax.jit
def _match(ious, g_ig, g_crowd, g_area, g_valid, g_idnz, d_valid, thr, area_rng):
  """Greedy COCO matching for P pairs of one bucket.

  ious [P, D, G] (detections in score order), gt flags [P, G], d_valid [P, D], thr [T],
  area_rng [A, 2]. Returns (dt_matched_nonzero_id, dt_ignored_by_match), bool [P, D, T, A].
  """
  p, _, g = ious.shape
  t, a = thr.shape[0], area_rng.shape[0]
  out_rng = (g_area[:, None, :] < area_rng[None, :, 0, None]) | (
      g_area[:, None, :] > area_rng[None, :, 1, None])
  ig = (g_ig[:, None, :] | out_rng)[:, None]  # [P, 1, A, G]
  crowd = g_crowd[:, None, None, :]
  valid = g_valid[:, None, None, :]
  idnz = g_idnz[:, None, None, :]
  pos = jnp.arange(g)

  def step(matched, x):
    iou, dv = x  # [P, G], [P]
    iou = iou[:, None, None, :]
    cand = valid & (~matched | crowd) & (iou >= thr[None, :, None, None])
    regular = cand & ~ig
    cand = jnp.where(jnp.any(regular, -1, keepdims=True), regular, cand & ig)
    v = jnp.where(cand, iou, -jnp.inf)
    best = jnp.max(v, -1, keepdims=True)
    m = jnp.max(jnp.where(cand & (v == best), pos, -1), -1)  # last best gt, or -1
    hit = (m >= 0) & dv[:, None, None]
    onehot = (pos == m[..., None]) & hit[..., None]
    dtm = jnp.any(onehot & idnz, -1)
    dtig = jnp.any(onehot & ig, -1)
    return matched | onehot, (dtm, dtig)

  init = jnp.zeros((p, t, a, g), bool)
  _, (dtm, dtig) = lax.scan(step, init, (jnp.moveaxis(ious, 1, 0), d_valid.T))
  return jnp.moveaxis(dtm, 0, 1), jnp.moveaxis(dtig, 0, 1)


def pad_rows(x: np.ndarray, n: int, value=0) -> np.ndarray:
  pad = [(0, n - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
  return np.pad(x, pad, constant_values=value)


def _run_flat(fn, n_flat: int, arrays: list[np.ndarray], pad_values, *extra) -> np.ndarray:
  """Calls a flat-pair kernel on arrays padded to a power of two (>= 256) rows."""
  size = next_pow(max(n_flat, 1), 2, 256)
  padded = [pad_rows(a, size, v) for a, v in zip(arrays, pad_values)]
  return np.asarray(fn(*padded, *extra))[:n_flat]


def _pair_ious(data: Data, d_idx: np.ndarray, g_idx: np.ndarray, sigmas) -> np.ndarray:
  """IoU / OKS for flat (detection, gt) index pairs, float64."""
  q = d_idx.size
  if q == 0:
    return np.zeros((0,), np.float64)
  g, d = data.gt, data.dt
  zero = np.float64(0.0)
  if data.iou_type == "bbox":
    return _run_flat(_bbox_iou, q, [d["box"][d_idx], g["box"][g_idx], g["crowd"][g_idx]],
                     [0, 0, False], zero)
  if data.iou_type == "keypoints":
    return _run_flat(_oks, q, [d["kps"][d_idx], g["kps"][g_idx], g["area"][g_idx],
                               g["box"][g_idx]], [0, 0, 0, 0],
                     np.asarray((sigmas * 2) ** 2, np.float64), zero)
  # segm: pack the runs of the masks involved, padded to a power of two.
  big = np.int64(1) << 62
  du, d_inv = np.unique(d_idx, return_inverse=True)
  gu, g_inv = np.unique(g_idx, return_inverse=True)
  rd = next_pow(max(max(d["runs"][i][0].size for i in du), 1), 2, 8)
  rg = next_pow(max(max(g["runs"][i][0].size for i in gu), 1), 2, 8)
  ds = np.zeros((du.size, rd), np.int64)
  de = np.zeros((du.size, rd), np.int64)
  d_area = np.zeros((du.size,), np.int64)
  for j, i in enumerate(du):
    s, e = d["runs"][i]
    ds[j, :s.size], de[j, :s.size], d_area[j] = s, e, (e - s).sum()
  gs = np.full((gu.size, rg), big, np.int64)
  ge = np.full((gu.size, rg), big, np.int64)
  gl = np.zeros((gu.size, rg + 1), np.int64)
  for j, i in enumerate(gu):
    s, e = g["runs"][i]
    gs[j, :s.size], ge[j, :s.size] = s, e
    gl[j, 1:] = np.cumsum(np.pad(e - s, (0, rg - s.size)))
  return _run_flat(_mask_iou, q, [ds[d_inv], de[d_inv], gs[g_inv], ge[g_inv], gl[g_inv],
                                  d_area[d_inv], gl[g_inv, -1], g["crowd"][g_idx]],
                   [0, 0, big, big, 0, 0, 0, False])


def match_detections(data: Data, sigmas, iou_thrs: np.ndarray, area_rng: np.ndarray,
                     max_det: int) -> Matches:
  """COCOeval.evaluate for every (image, category) pair at the largest maxDet, float64 (call
  under a scoped enable_x64). iou_thrs [T], area_rng [A, 2]."""
  t_n, a_n = iou_thrs.size, area_rng.shape[0]
  g, d = data.gt, data.dt
  n_pairs_key = max(data.cat_ids.size, 1)

  # Detections by (pair, -score) with a stable order; keep the first maxDet of each pair.
  d_pair = d["img"] * n_pairs_key + d["cat"]
  order = np.lexsort((-d["score"], d_pair))
  sp = d_pair[order]
  starts = np.flatnonzero(np.r_[True, sp[1:] != sp[:-1]]) if sp.size else np.zeros(0, int)
  rank = np.arange(sp.size) - np.repeat(starts, np.diff(np.r_[starts, sp.size]))
  keep = rank < max_det
  det = order[keep]
  rank = rank[keep]
  sp = sp[keep]
  n_det = det.size

  # Ground truth by pair (stable: annotation order inside a pair).
  g_pair = g["img"] * n_pairs_key + g["cat"]
  g_order = np.argsort(g_pair, kind="stable")
  gp = g_pair[g_order]

  # Pairs with both detections and gts go through matching.
  up_d, d_first, d_cnt = np.unique(sp, return_index=True, return_counts=True)
  up_g, g_first, g_cnt = np.unique(gp, return_index=True, return_counts=True)
  both, bi_d, bi_g = np.intersect1d(up_d, up_g, assume_unique=True, return_indices=True)
  dtm = np.zeros((n_det, t_n, a_n), bool)
  dtig = np.zeros((n_det, t_n, a_n), bool)
  thr = np.minimum(iou_thrs, 1 - 1e-10)
  if both.size:
    pd, pg = d_cnt[bi_d], g_cnt[bi_g]
    p0d, p0g = d_first[bi_d], g_first[bi_g]
    # flat (det, gt) pairs for the IoU kernel
    q = pd * pg
    qp = np.repeat(np.arange(both.size), q)
    local = np.arange(q.sum()) - np.repeat(np.cumsum(q) - q, q)
    qd = local // pg[qp]
    qg = local % pg[qp]
    flat_iou = _pair_ious(data, det[p0d[qp] + qd], g_order[p0g[qp] + qg], sigmas)
    # bucket pairs by padded (D, G)
    db = np.array([next_pow(int(x), 4, 8) for x in pd])
    db = np.minimum(db, next_pow(max_det, 2, 4))
    gb = np.array([next_pow(int(x), 4, 4) for x in pg])
    for dsz, gsz in sorted(set(zip(db.tolist(), gb.tolist()))):
      sel = np.flatnonzero((db == dsz) & (gb == gsz))
      chunk = max(8, 1 << int(math.log2(max(1, 32768 // (dsz * gsz)))))
      for c0 in range(0, sel.size, chunk):
        ps = sel[c0:c0 + chunk]
        _match_chunk(ps, chunk, dsz, gsz, pd, pg, p0d, p0g, q, qp, qd, qg, flat_iou, g,
                     g_order, thr, area_rng, dtm, dtig)
  return Matches(det, rank, dtm, dtig)


def _match_chunk(ps, chunk, dsz, gsz, pd, pg, p0d, p0g, q, qp, qd, qg, flat_iou, g, g_order,
                 thr, area_rng, dtm, dtig):
  """Fills dtm / dtig rows of the detections of pairs `ps` (one padded (D, G) bucket)."""
  n = ps.size
  ious = np.full((chunk, dsz, gsz), -1.0)
  # flat iou entries of these pairs
  qstart = np.cumsum(q) - q
  qn = q[ps]
  slot = np.repeat(np.arange(n), qn)
  sel = np.repeat(qstart[ps], qn) + np.arange(qn.sum()) - np.repeat(np.cumsum(qn) - qn, qn)
  ious[slot, qd[sel], qg[sel]] = flat_iou[sel]
  gl = np.arange(gsz)[None, :]
  g_valid = gl < pg[ps][:, None]
  gi = g_order[np.minimum(p0g[ps][:, None] + gl, g_order.size - 1)]
  d_valid = np.arange(dsz)[None, :] < pd[ps][:, None]
  pad = chunk - n
  m, mig = _match(
      ious, pad_rows(g["ignore"][gi] & g_valid, chunk), pad_rows(g["crowd"][gi] & g_valid,
                                                                     chunk),
      pad_rows(g["area"][gi], chunk), np.pad(g_valid, ((0, pad), (0, 0))),
      pad_rows((g["id"][gi] != 0) & g_valid, chunk), np.pad(d_valid, ((0, pad), (0, 0))),
      thr, area_rng)
  m, mig = np.asarray(m)[:n], np.asarray(mig)[:n]
  rows = p0d[ps][:, None] + np.arange(dsz)[None, :]
  dtm[rows[d_valid]] = m[d_valid]
  dtig[rows[d_valid]] = mig[d_valid]
