"""COCO detection evaluation (bbox, segm, keypoints) as jit-compiled JAX, equal to pycocotools.

Why: JAX vision code usually copies outputs to the host and runs pycocotools (about a minute
for COCO val). Here only JSON parsing and packing are host-side NumPy; IoU / mask IoU / OKS,
the greedy matching and the precision / recall accumulation are jit-compiled and vectorised
over (image, category) pairs, IoU thresholds and area ranges. The numbers are those of
pycocotools 2.0.x `COCO.loadRes` + `COCOeval(evaluate, accumulate, summarize)`.

Public API:
- `evaluate(gt, dets, iou_type="bbox", kpt_oks_sigmas=None) -> np.ndarray`: the summary stats
  (12 for bbox / segm, 10 for keypoints), as `COCOeval.stats`.
- `evaluate_full(...) -> COCOEvalResult(stats, precision [T,R,K,A,M], recall [T,K,A,M],
  scores [T,R,K,A,M])`, equal to `COCOeval.eval`.
- `COCOEvaluator`: accumulates padded model outputs and ground truth batches (conventions in
  docs/conventions.md) and returns `map`, `map50`, ... (+ `mask_map`, `kp_map`).
- `to_coco_gt(batches, ...)`, `to_coco_dets(outputs_and_ids, ...)`: export to COCO json dicts.

Semantics reproduced from pycocotools (cocoeval.py, coco.py, maskApi.c):
- loadRes: detection ids 1..N in list order; `area` = w*h when the first result has a
  non-empty `bbox`, else the RLE mask area (segm), else the keypoint-extent box (keypoints).
- gt ignore = iscrowd (keypoints: or num_keypoints == 0). Detections of a (image, category)
  pair are sorted by score (stable) and cut to the last maxDet (100; keypoints 20); matching
  is done once at that maxDet and the smaller maxDets take a prefix, as pycocotools does.
- Greedy matching per IoU threshold t with start value min(t, 1 - 1e-10): non-ignored GTs
  first (stable), best IoU wins, ties go to the later GT, a crowd GT may match many
  detections, a match to a GT with id 0 counts as unmatched (pycocotools stores ids).
- bbox IoU as the C bbIou (crowd: intersection / detection area); mask IoU from RLE runs
  (integer intersection / union); OKS as computeOks (vars = (2 sigma)^2, / (area + eps) / 2,
  bbox-distance branch for GTs without visible keypoints, NumPy's summation order).
- Accumulation: per category, detections of all images (sorted image ids) stably sorted by
  score, tp / fp cumsums, rc = tp / npig, pr = tp / (tp + fp + eps), precision made monotone
  from the right, `searchsorted(rc, recThrs, "left")`; -1 where a category has no
  non-ignored GT in the area range. Summary means over entries > -1.

Numerics: float64 inside a scoped `jax.enable_x64(True)` (the global flag is not touched;
training dtypes stay float32). On a backend without float64 (TPU) the evaluator runs on the
host CPU device. XLA CPU contracts `a * b + c` into FMA; products that feed additions get a
runtime `+ 0.0` so they round as in C. bbox and mask IoU are therefore bit-identical to
pycocotools; OKS can differ from NumPy's by a few ulp because XLA's `exp` is not libm's.

Inputs accepted: `segmentation` as RLE dicts (compressed `counts` str/bytes, or uncompressed
count lists) or polygon lists `[[x0, y0, x1, y1, ...], ...]` in GT and results, rasterised
as pycocotools' annToRLE (`merge(frPyObjects(polys, h, w))`, ported in `coco_rle`: identical
counts). GT area is always the annotation's `area` field; a polygon result's area is that of
its merged RLE (segm branch of loadRes) or w*h when the first result has a bbox (bbox branch,
as pycocotools). pycocotools' own loadRes fails on polygon results without a bbox
(maskUtils.area of a list); here they are evaluated as their merged RLEs would be.
Polygon lists pycocotools cannot read (empty, or a first polygon of <= 4 numbers) raise
ValueError.
Bad input (detection on an unknown image or category, negative box size, non-finite score,
wrong keypoint length, mask size differing from its image) raises ValueError.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcv.metrics import coco_rle

IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
COCO_KPT_OKS_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07,
                                1.07, .87, .87, .89, .89]) / 10.0
DET_AREA_RNG = np.array([[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2],
                         [96 ** 2, 1e5 ** 2]], dtype=np.float64)
KP_AREA_RNG = np.array([[0 ** 2, 1e5 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]],
                       dtype=np.float64)
DET_MAX_DETS = (1, 10, 100)
KP_MAX_DETS = (20,)
IOU_TYPES = ("bbox", "segm", "keypoints")


class COCOEvalResult(NamedTuple):
  """`stats` as COCOeval.stats; `precision [T,R,K,A,M]`, `recall [T,K,A,M]`, `scores
  [T,R,K,A,M]` as COCOeval.eval (float64; K = categories sorted by id)."""
  stats: np.ndarray
  precision: np.ndarray
  recall: np.ndarray
  scores: np.ndarray


# ------------------------------------------------------------------------------------------
# Host-side packing: COCO dicts -> arrays.


class _Data:
  """Ground truth and detections as flat arrays (original list order), indices into the
  sorted image / category id lists."""

  def __init__(self, iou_type, img_ids, img_hw, cat_ids, gt, dt):
    self.iou_type, self.img_ids, self.img_hw, self.cat_ids = iou_type, img_ids, img_hw, cat_ids
    self.gt, self.dt = gt, dt


def _index_of(ids: np.ndarray, sorted_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Positions of `ids` in `sorted_ids` and whether each was found."""
  if sorted_ids.size == 0:
    return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
  pos = np.clip(np.searchsorted(sorted_ids, ids), 0, sorted_ids.size - 1)
  return pos.astype(np.int64), sorted_ids[pos] == ids


def _rle_of(segm, h: int, w: int, what: str) -> dict:
  if isinstance(segm, list):  # polygons, merged into one RLE as pycocotools' annToRLE
    try:
      counts = coco_rle.polygons_to_counts(segm, h, w)
    except (ValueError, TypeError) as e:
      raise ValueError(f"{what}: bad polygon segmentation ({e})") from None
    return {"size": [h, w], "counts": counts}
  if not isinstance(segm, dict):
    msg = f"{what}: segmentation must be an RLE dict or polygon list, got {type(segm).__name__}"
    raise ValueError(msg)  # noqa: TRY004
  sh, sw = (int(v) for v in segm.get("size", (-1, -1)))
  if (sh, sw) != (h, w):
    raise ValueError(f"{what}: mask size {[sh, sw]} differs from its image's {[h, w]}")
  return segm


def _runs_list(segms, hw, what) -> list[tuple[np.ndarray, np.ndarray]]:
  out = []
  for s, (h, w) in zip(segms, hw.tolist()):
    out.append(coco_rle.runs(coco_rle.rle_counts(_rle_of(s, h, w, what))))
  return out


def _float_rows(rows, width: int, what: str) -> np.ndarray:
  try:
    arr = np.asarray(rows, dtype=np.float64)
  except (ValueError, TypeError) as e:
    raise ValueError(f"{what}: every entry must be a list of {width} numbers ({e})") from None
  if arr.ndim != 2 or arr.shape[1] != width:
    if len(rows) == 0:
      return np.zeros((0, width), np.float64)
    raise ValueError(f"{what}: every entry must have {width} numbers, got shape {arr.shape}")
  return arr


def _pack(gt: dict, dets: Sequence[dict], iou_type: str, num_kpts: int | None) -> _Data:
  if iou_type not in IOU_TYPES:
    raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
  if not isinstance(gt, dict) or "images" not in gt or "categories" not in gt:
    raise ValueError("gt must be a COCO dict with 'images', 'annotations' and 'categories'")
  if not isinstance(dets, (list, tuple)):
    raise ValueError(f"dets must be a list of result dicts, got {type(dets).__name__}")  # noqa: TRY004
  images = gt["images"]
  img_all = np.asarray([im["id"] for im in images], dtype=np.int64)
  img_ids, first = np.unique(img_all, return_index=True)
  img_hw = np.asarray([[images[i].get("height", 0), images[i].get("width", 0)] for i in first],
                      dtype=np.int64).reshape(-1, 2)
  cat_ids = np.unique(np.asarray([c["id"] for c in gt["categories"]], dtype=np.int64))

  # Ground truth: annotations of listed images and categories, in list order.
  anns = gt.get("annotations", [])
  g_img = np.asarray([a["image_id"] for a in anns], dtype=np.int64)
  g_cat = np.asarray([a["category_id"] for a in anns], dtype=np.int64)
  gi, ok_i = _index_of(g_img, img_ids)
  gc, ok_c = _index_of(g_cat, cat_ids)
  keep = np.flatnonzero(ok_i & ok_c)
  anns = [anns[i] for i in keep]
  g = {"img": gi[keep], "cat": gc[keep]}
  g["id"] = np.asarray([a["id"] for a in anns], dtype=np.int64)
  g["area"] = np.asarray([a["area"] for a in anns], dtype=np.float64)
  g["crowd"] = np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
  g["ignore"] = g["crowd"].copy()
  if iou_type == "bbox":
    g["box"] = _float_rows([a["bbox"] for a in anns], 4, "gt bbox")
  elif iou_type == "segm":
    g["runs"] = _runs_list([a["segmentation"] for a in anns], img_hw[g["img"]], "gt")
  else:
    if any("keypoints" not in a for a in anns):
      raise ValueError("keypoints evaluation: every gt annotation needs 'keypoints'")
    g["kps"] = _float_rows([a["keypoints"] for a in anns], 3 * num_kpts,
                           "gt keypoints").reshape(-1, num_kpts, 3)
    g["box"] = _float_rows([a["bbox"] for a in anns], 4, "gt bbox")
    nk = np.asarray([a.get("num_keypoints", -1) for a in anns], dtype=np.int64)
    nk = np.where(nk < 0, (g["kps"][..., 2] > 0).sum(-1), nk)  # absent: count of v > 0
    g["ignore"] |= nk == 0

  # Detections, with COCO.loadRes' area rule (decided by the first result).
  d = {}
  n = len(dets)
  d["score"] = np.asarray([r["score"] for r in dets], dtype=np.float64)
  if not np.all(np.isfinite(d["score"])):
    raise ValueError(f"detection scores must be finite; {int((~np.isfinite(d['score'])).sum())}"
                     " are NaN or inf")
  d_img = np.asarray([r["image_id"] for r in dets], dtype=np.int64)
  d_cat = np.asarray([r["category_id"] for r in dets], dtype=np.int64)
  d["img"], ok_i = _index_of(d_img, img_ids)
  d["cat"], ok_c = _index_of(d_cat, cat_ids)
  if not ok_i.all():
    raise ValueError(f"detections refer to image ids not in gt['images']: "
                     f"{np.unique(d_img[~ok_i])[:10].tolist()}")
  if not ok_c.all():
    raise ValueError(f"detections refer to category ids not in gt['categories']: "
                     f"{np.unique(d_cat[~ok_c])[:10].tolist()}")
  branch = None
  if n:
    first = dets[0]
    if "bbox" in first and first["bbox"] != []:
      branch = "bbox"
    elif "segmentation" in first:
      branch = "segm"
    elif "keypoints" in first:
      branch = "keypoints"
    else:
      raise ValueError("results need 'bbox', 'segmentation' or 'keypoints'")
  if branch == "bbox" or (iou_type == "bbox" and n):
    if any("bbox" not in r for r in dets):
      raise ValueError("every result needs a 'bbox' (the first one has one)")
    d["box"] = _float_rows([r["bbox"] for r in dets], 4, "detection bbox")
    if np.any(d["box"][:, 2:] < 0) or not np.all(np.isfinite(d["box"])):
      raise ValueError("detection bbox [x, y, w, h] must be finite with w, h >= 0")
  if iou_type == "segm" and n:
    if any("segmentation" not in r for r in dets):
      raise ValueError("segm evaluation: every result needs a 'segmentation' (RLE or polygons)")
    d["runs"] = _runs_list([r["segmentation"] for r in dets], img_hw[d["img"]], "detection")
  if iou_type == "keypoints" and n:
    if any("keypoints" not in r for r in dets):
      raise ValueError("keypoints evaluation: every result needs 'keypoints'")
    d["kps"] = _float_rows([r["keypoints"] for r in dets], 3 * num_kpts,
                           "detection keypoints").reshape(-1, num_kpts, 3)
  if branch == "bbox":
    d["area"] = d["box"][:, 2] * d["box"][:, 3]
  elif branch == "segm":
    if "runs" not in d:
      d["runs"] = _runs_list([r["segmentation"] for r in dets], img_hw[d["img"]], "detection")
    d["area"] = np.asarray([float((e - s).sum()) for s, e in d["runs"]], dtype=np.float64)
  elif branch == "keypoints":
    kp = _float_rows([r["keypoints"] for r in dets], 3 * num_kpts if num_kpts else
                     len(dets[0]["keypoints"]), "detection keypoints")
    x, y = kp[:, 0::3], kp[:, 1::3]
    d["area"] = (x.max(1) - x.min(1)) * (y.max(1) - y.min(1))
  else:
    d["area"] = np.zeros((0,), np.float64)
  return _Data(iou_type, img_ids, img_hw, cat_ids, g, d)


# ------------------------------------------------------------------------------------------
# Jitted kernels (float64 under a scoped enable_x64).


def _next_pow(n: int, base: int = 2, minimum: int = 1) -> int:
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


# ------------------------------------------------------------------------------------------
# Orchestration.


@contextlib.contextmanager
def _x64_scope():
  """float64 for the evaluator's jitted calls only; host CPU where the backend has no f64."""
  with jax.enable_x64(True):
    if jax.default_backend() == "tpu":
      with jax.default_device(jax.devices("cpu")[0]):
        yield
    else:
      yield


def _pad_rows(x: np.ndarray, n: int, value=0) -> np.ndarray:
  pad = [(0, n - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
  return np.pad(x, pad, constant_values=value)


def _run_flat(fn, n_flat: int, arrays: list[np.ndarray], pad_values, *extra) -> np.ndarray:
  """Calls a flat-pair kernel on arrays padded to a power of two (>= 256) rows."""
  size = _next_pow(max(n_flat, 1), 2, 256)
  padded = [_pad_rows(a, size, v) for a, v in zip(arrays, pad_values)]
  return np.asarray(fn(*padded, *extra))[:n_flat]


def _pair_ious(data: _Data, d_idx: np.ndarray, g_idx: np.ndarray, sigmas) -> np.ndarray:
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
  rd = _next_pow(max(max(d["runs"][i][0].size for i in du), 1), 2, 8)
  rg = _next_pow(max(max(g["runs"][i][0].size for i in gu), 1), 2, 8)
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


def _min_count(npig: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
  """Smallest integer c with float64(c / npig) >= r, for npig [K, A] and r [R] -> [K, A, R]."""
  n = np.maximum(npig, 1).astype(np.float64)[..., None]
  r = rec_thrs[None, None, :]
  c = np.ceil(r * n)
  for _ in range(4):
    c = np.where((c > 0) & ((c - 1) / n >= r), c - 1, c)
    c = np.where(c / n < r, c + 1, c)
  return c.astype(np.int64)


def _evaluate_data(data: _Data, sigmas=None) -> COCOEvalResult:
  kp = data.iou_type == "keypoints"
  area_rng = KP_AREA_RNG if kp else DET_AREA_RNG
  max_dets = KP_MAX_DETS if kp else DET_MAX_DETS
  t_n, r_n, a_n, m_n = IOU_THRS.size, REC_THRS.size, area_rng.shape[0], len(max_dets)
  k_n = data.cat_ids.size
  g, d = data.gt, data.dt
  n_pairs_key = max(k_n, 1)

  # Detections by (pair, -score) with a stable order; keep the first maxDet of each pair.
  d_pair = d["img"] * n_pairs_key + d["cat"]
  order = np.lexsort((-d["score"], d_pair))
  sp = d_pair[order]
  starts = np.flatnonzero(np.r_[True, sp[1:] != sp[:-1]]) if sp.size else np.zeros(0, int)
  rank = np.arange(sp.size) - np.repeat(starts, np.diff(np.r_[starts, sp.size]))
  keep = rank < max_dets[-1]
  det = order[keep]
  rank = rank[keep]
  sp = sp[keep]
  n_det = det.size

  # Ground truth by pair (stable: annotation order inside a pair).
  g_pair = g["img"] * n_pairs_key + g["cat"]
  g_order = np.argsort(g_pair, kind="stable")
  gp = g_pair[g_order]
  g_ig = g["ignore"][g_order]
  g_area = g["area"][g_order]

  # Non-ignored gt counts per category and area range.
  npig = np.zeros((k_n, a_n), np.int64)
  in_rng = (g_area[:, None] >= area_rng[None, :, 0]) & (g_area[:, None] <= area_rng[None, :, 1])
  np.add.at(npig, g["cat"][g_order], (in_rng & ~g_ig[:, None]).astype(np.int64))

  # Pairs with both detections and gts go through matching.
  up_d, d_first, d_cnt = np.unique(sp, return_index=True, return_counts=True)
  up_g, g_first, g_cnt = np.unique(gp, return_index=True, return_counts=True)
  both, bi_d, bi_g = np.intersect1d(up_d, up_g, assume_unique=True, return_indices=True)
  dtm = np.zeros((n_det, t_n, a_n), bool)
  dtig = np.zeros((n_det, t_n, a_n), bool)
  thr = np.minimum(IOU_THRS, 1 - 1e-10)
  with _x64_scope():
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
      db = np.array([_next_pow(int(x), 4, 8) for x in pd])
      db = np.minimum(db, _next_pow(max_dets[-1], 2, 4))
      gb = np.array([_next_pow(int(x), 4, 4) for x in pg])
      for dsz, gsz in sorted(set(zip(db.tolist(), gb.tolist()))):
        sel = np.flatnonzero((db == dsz) & (gb == gsz))
        chunk = max(8, 1 << int(math.log2(max(1, 32768 // (dsz * gsz)))))
        for c0 in range(0, sel.size, chunk):
          ps = sel[c0:c0 + chunk]
          _match_chunk(ps, chunk, dsz, gsz, pd, pg, p0d, p0g, q, qp, qd, qg, flat_iou, g,
                       g_order, thr, area_rng, dtm, dtig)

    # Accumulate per maxDet: detections sorted by (category, -score, image, rank).
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
        size = _next_pow(max(nm, 1), 2, 1024)
        seg = _pad_rows(d_cat[idx], size, k_n)
        seg_start = np.searchsorted(seg, np.arange(k_n + 1), side="left")
        seg_end = np.searchsorted(seg, np.arange(k_n + 1), side="right")
        di = det[idx]
        pr, rc, ss = _accumulate(
            np.transpose(_pad_rows(dtm[idx], size), (1, 2, 0)),
            np.transpose(_pad_rows(dtig[idx], size), (1, 2, 0)),
            _pad_rows(d["area"][di], size), _pad_rows(d["score"][di], size), seg,
            np.arange(size) < nm, seg_start, seg_end, npig, c_r, area_rng)
        precision[..., mi] = np.asarray(pr)
        recall[..., mi] = np.asarray(rc)
        scores[..., mi] = np.asarray(ss)
  stats = _summarize(precision, recall, kp)
  return COCOEvalResult(stats, precision, recall, scores)


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
      ious, _pad_rows(g["ignore"][gi] & g_valid, chunk), _pad_rows(g["crowd"][gi] & g_valid,
                                                                     chunk),
      _pad_rows(g["area"][gi], chunk), np.pad(g_valid, ((0, pad), (0, 0))),
      _pad_rows((g["id"][gi] != 0) & g_valid, chunk), np.pad(d_valid, ((0, pad), (0, 0))),
      thr, area_rng)
  m, mig = np.asarray(m)[:n], np.asarray(mig)[:n]
  rows = p0d[ps][:, None] + np.arange(dsz)[None, :]
  dtm[rows[d_valid]] = m[d_valid]
  dtig[rows[d_valid]] = mig[d_valid]


def _summarize(precision, recall, kp: bool) -> np.ndarray:
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


def _sigmas_for(iou_type, kpt_oks_sigmas):
  if iou_type != "keypoints":
    return None
  s = COCO_KPT_OKS_SIGMAS if kpt_oks_sigmas is None else np.asarray(kpt_oks_sigmas, np.float64)
  if s.ndim != 1 or s.size == 0:
    raise ValueError(f"kpt_oks_sigmas must be a 1-D list of per-keypoint sigmas, got {s.shape}")
  return s


def evaluate_full(gt: dict, dets: Sequence[dict], iou_type: str = "bbox",
                  kpt_oks_sigmas=None) -> COCOEvalResult:
  """pycocotools' COCO(gt).loadRes(dets) + COCOeval(iou_type): evaluate, accumulate and
  summarize. Returns stats and the full precision / recall / scores arrays (float64)."""
  sigmas = _sigmas_for(iou_type, kpt_oks_sigmas)
  data = _pack(gt, dets, iou_type, None if sigmas is None else sigmas.size)
  return _evaluate_data(data, sigmas)


def evaluate(gt: dict, dets: Sequence[dict], iou_type: str = "bbox",
             kpt_oks_sigmas=None) -> np.ndarray:
  """COCOeval.stats for COCO gt dict and result list: 12 numbers for bbox / segm
  (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl), 10 for keypoints."""
  return evaluate_full(gt, dets, iou_type, kpt_oks_sigmas).stats


# ------------------------------------------------------------------------------------------
# Padded batches (docs/conventions.md) -> COCO json, and the training-loop evaluator.


# Batch-level export and the training-loop evaluator live in coco_batches.py.
from jaxcv.metrics.coco_batches import (COCOEvaluator, to_coco_dets,  # noqa: E402,F401
                                        to_coco_gt)
