"""Exact, static-shape non-maximum suppression: `nms`, `batched_nms`, `multiclass_nms`,
`soft_nms`.

What: greedy NMS with exactly torchvision's semantics (`nms`, `batched_nms`), TF's
`tf.image.combined_non_max_suppression` (`multiclass_nms`) and Soft-NMS (Bodla et al. 2017;
the Gaussian form as TF's `non_max_suppression_with_scores(soft_nms_sigma=...)`), as pure
jnp functions with static output shapes (padded, with a bool validity mask), usable under
`jax.jit` and `jax.vmap` (vmap over a batch of images is the intended batching).

Why this algorithm: the result must be exactly the sequential greedy one at every threshold
(later models load torchvision weights and must reproduce its detections). Boxes are ranked
once (score descending, ties: lower index first) and processed in tiles of `T` boxes. A
tile's boxes are first suppressed by the boxes kept in earlier tiles (a `[T, T]` IoU block
per `T` kept boxes, so the cost grows with the number KEPT, not with N^2); the greedy result
inside the tile is then the unique fixpoint of
`keep_i = candidate_i & ~any_{j<i}(keep_j & iou_ij > t)`, reached by iterating that update
from `keep = candidate` until nothing changes (after k iterations the first k boxes are
final, so it is exact, and it stops at the first unchanged pass). The loop stops as soon as
`max_output_size` boxes are kept or no candidate is left. This is NOT the tiled TPU NMS of
other JAX projects (which compares against a hard-coded 0.5 inside a tile).

Conventions:
- boxes `[..., 4]` float32 as (x1, y1, x2, y2); scores float32.
- IoU is `inter / (area_i + area_j - inter)` in float32 with `area = (x2 - x1) * (y2 - y1)`
  and `inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1))`, exactly as
  torchvision's kernel. Two zero-area boxes give 0/0 = NaN, and NaN > t is False: a
  zero-area box is never suppressed by IoU and never suppresses (torchvision and TF agree).
- A box is suppressed when its IoU with an already kept, higher-ranked box is STRICTLY
  greater than `iou_threshold`.
- Padded outputs: indices -1 (never a valid index, so a forgotten mask shows), scores 0,
  boxes 0, classes 0, and `valid` False.
- `valid` inputs (bool `[N]`) mark real boxes; invalid (padding) boxes are never kept and
  never suppress. NaN scores are treated as invalid.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_TILE = 64  # boxes per tile: big enough that loop overhead is small, small enough to stop early


# ------------------------------------------------------------------------------------------
# Checks (trace time)


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_boxes(boxes, name="boxes", ranks=(2,)):
  boxes = jnp.asarray(boxes)
  if boxes.ndim not in ranks:
    raise ValueError(f"{name} must have rank {' or '.join(map(str, ranks))} "
                     f"(got shape {boxes.shape}); vmap over a batch of images")
  if boxes.shape[-1] != 4:
    raise ValueError(f"{name} must have last dimension 4 (x1, y1, x2, y2); got shape "
                     f"{boxes.shape}")
  return boxes.astype(jnp.float32)


def _check_vector(x, n, name, dtype):
  x = jnp.asarray(x)
  if x.ndim != 1:
    raise ValueError(f"{name} must be 1-D [N]; got shape {x.shape}")
  if x.shape[0] != n:
    raise ValueError(f"{name} has {x.shape[0]} entries but boxes has {n}")
  return x.astype(dtype)


def _check_size(v, name) -> int:
  if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
    raise ValueError(f"{name} must be a Python int (a static size); got {v!r}")  # noqa: TRY004
  if v < 0:
    raise ValueError(f"{name} must be >= 0; got {v}")
  return int(v)


def _check_iou_threshold(t, name="iou_threshold"):
  if _is_concrete(t):
    v = np.asarray(t)
    if v.ndim != 0:
      raise ValueError(f"{name} must be a scalar; got shape {v.shape}")
    v = float(v)
    if not 0.0 <= v <= 1.0:
      raise ValueError(f"{name} must be in [0, 1]; got {v}")
  elif jnp.ndim(t) != 0:
    raise ValueError(f"{name} must be a scalar; got shape {jnp.shape(t)}")


def _exact_threshold(t):
  """float32 threshold `t32` with `iou > t32` == `iou > t` for float32 `iou` and the real `t`.

  torchvision's CPU kernel compares the float32 IoU with the threshold as a C++ double, so an
  IoU one float32 step above the threshold's nearest float32 (which may round UP) is still
  suppressed. Rounding a concrete threshold DOWN to float32 reproduces that exactly; a traced
  threshold is already float32.
  """
  if _is_concrete(t):
    v = float(np.asarray(t, np.float64))
    v32 = np.float32(v)
    if float(v32) > v:
      v32 = np.nextafter(v32, np.float32(-np.inf))
    return jnp.float32(v32)
  return jnp.asarray(t, jnp.float32)


# ------------------------------------------------------------------------------------------
# Kernels


def _iou(a, b):
  """IoU `[P, Q]` of boxes a `[P, 4]` (the higher-ranked ones) and b `[Q, 4]`, torchvision's
  float32 formula. Private rather than `jaxcv.ops.boxes.box_iou` because the tiled loops below
  call it on `[T, T]` blocks and must reproduce torchvision's operation order bit for bit."""
  ax1, ay1, ax2, ay2 = (a[:, k, None] for k in range(4))
  bx1, by1, bx2, by2 = (b[None, :, k] for k in range(4))
  area_a = (ax2 - ax1) * (ay2 - ay1)
  area_b = (bx2 - bx1) * (by2 - by1)
  w = jnp.maximum(jnp.minimum(ax2, bx2) - jnp.maximum(ax1, bx1), 0.0)
  h = jnp.maximum(jnp.minimum(ay2, by2) - jnp.maximum(ay1, by1), 0.0)
  inter = w * h
  return inter / (area_a + area_b - inter)


def _normalize_tf(boxes):
  """TF's IoU convention: corners sorted per axis; its kernel then returns IoU 0 where either
  area is <= 0, which torchvision's formula gives as well (0/area or NaN -> not > t)."""
  x1 = jnp.minimum(boxes[..., 0], boxes[..., 2])
  x2 = jnp.maximum(boxes[..., 0], boxes[..., 2])
  y1 = jnp.minimum(boxes[..., 1], boxes[..., 3])
  y2 = jnp.maximum(boxes[..., 1], boxes[..., 3])
  return jnp.stack([x1, y1, x2, y2], axis=-1)


def _score_key(scores, valid):
  """float32 ranking key: score, -inf for invalid/NaN, -0.0 made +0.0 (torch ranks them equal)."""
  ok = valid & ~jnp.isnan(scores)
  key = jnp.where(ok, scores, -jnp.inf)
  return jnp.where(key == 0, jnp.float32(0), key), ok


def _rank(key):
  """Indices ordering `key` descending, ties lower index first (lax.top_k is stable and on CPU
  several times faster than a sort)."""
  return lax.top_k(key, key.shape[0])[1]


def _round_up(n, m):
  return -(-n // m) * m


def _new_state(capacity, num_classes):
  return {"boxes": jnp.zeros((capacity, 4), jnp.float32),
          "cls": jnp.zeros((capacity,), jnp.int32),
          "src": jnp.full((capacity,), -1, jnp.int32),
          "n": jnp.zeros((), jnp.int32),
          "counts": jnp.zeros((max(num_classes, 1),), jnp.int32)}


def _greedy(state, boxes, cand, cls, src, thr, max_out, tile, class_aware, max_per_class):
  """Greedy NMS over a ranked candidate list, continuing from `state` (the kept boxes so far).

  boxes `[M, 4]` in rank order, cand bool `[M]` (candidates; others are skipped), cls int32
  `[M]` (only used when `class_aware`), src int32 `[M]` (what to record for a kept box), M a
  multiple of `tile`. Stops when `max_out` are kept or no candidate is left. With
  `max_per_class`, a class stops keeping after that many (later boxes of that class are
  neither kept nor suppressing, which is what per-class greedy NMS with a cap gives).
  """
  m = boxes.shape[0]
  num_tiles = m // tile
  capacity = state["boxes"].shape[0]
  last = jnp.max(jnp.where(cand, jnp.arange(m, dtype=jnp.int32), -1))
  lower = jnp.arange(tile)[:, None] < jnp.arange(tile)[None, :]  # [i, j]: i ranked before j
  eye_t = jnp.arange(tile)

  def tile_cond(c):
    t, st = c
    return (t < num_tiles) & (t * tile <= last) & (st["n"] < max_out)

  def tile_body(c):
    t, st = c
    start = t * tile
    tb = lax.dynamic_slice_in_dim(boxes, start, tile)
    tc = lax.dynamic_slice_in_dim(cand, start, tile)
    tcls = lax.dynamic_slice_in_dim(cls, start, tile)
    tsrc = lax.dynamic_slice_in_dim(src, start, tile)

    # 1. Suppression by boxes kept in earlier tiles, T kept boxes at a time.
    def kept_cond(kc):
      j, sup = kc
      return (j * tile < st["n"]) & ~jnp.all(sup | ~tc)

    def kept_body(kc):
      j, sup = kc
      kb = lax.dynamic_slice_in_dim(st["boxes"], j * tile, tile)
      hit = (_iou(kb, tb) > thr) & ((j * tile + eye_t) < st["n"])[:, None]
      if class_aware:
        kcls = lax.dynamic_slice_in_dim(st["cls"], j * tile, tile)
        hit &= kcls[:, None] == tcls[None, :]
      return j + 1, sup | jnp.any(hit, axis=0)

    _, sup = lax.while_loop(kept_cond, kept_body, (jnp.int32(0), jnp.zeros((tile,), bool)))
    alive = tc & ~sup

    # 2. Exact greedy inside the tile: fixpoint iteration (see the module docstring).
    over = (_iou(tb, tb) > thr) & lower
    same = (tcls[:, None] == tcls[None, :]) & lower
    if class_aware:
      over &= same
    base = st["counts"][tcls] if max_per_class is not None else None

    def step(keep):
      new = alive & ~jnp.any(over & keep[:, None], axis=0)
      if max_per_class is not None:
        before = base + jnp.sum(same & keep[:, None], axis=0, dtype=jnp.int32)
        new &= before < max_per_class
      return new

    def fix_cond(fc):
      return fc[1]

    def fix_body(fc):
      keep, _ = fc
      new = step(keep)
      return new, jnp.any(new != keep)

    keep, _ = lax.while_loop(fix_cond, fix_body, (alive, jnp.any(alive)))

    # 3. Truncate to max_out and append the kept boxes.
    rank = jnp.cumsum(keep.astype(jnp.int32))
    keep &= rank <= max_out - st["n"]
    pos = jnp.where(keep, st["n"] + rank - 1, capacity)
    new = {
        "boxes": st["boxes"].at[pos].set(tb, mode="drop"),
        "cls": st["cls"].at[pos].set(tcls, mode="drop"),
        "src": st["src"].at[pos].set(tsrc, mode="drop"),
        "n": st["n"] + jnp.sum(keep, dtype=jnp.int32),
        "counts": (st["counts"].at[tcls].add(keep.astype(jnp.int32))
                   if max_per_class is not None else st["counts"])}
    return t + 1, new

  _, state = lax.while_loop(tile_cond, tile_body, (jnp.int32(0), state))
  return state


def _pad_to(x, m, value):
  pad = m - x.shape[0]
  if pad == 0:
    return x
  return jnp.concatenate([x, jnp.full((pad,) + x.shape[1:], value, x.dtype)])


def _sorted_greedy(boxes, scores, valid, class_ids, iou_threshold, max_output_size):
  n = boxes.shape[0]
  if max_output_size == 0 or n == 0:
    return (jnp.full((max_output_size,), -1, jnp.int32), jnp.zeros((max_output_size,), bool))
  key, ok = _score_key(scores, valid)
  order = _rank(key)
  tile = min(_TILE, _round_up(n, 8))
  m = _round_up(n, tile)
  sb = _pad_to(boxes[order], m, 0.0)
  sc = _pad_to(ok[order], m, False)
  scls = _pad_to(class_ids[order] if class_ids is not None else jnp.zeros((n,), jnp.int32),
                 m, 0)
  ssrc = _pad_to(order.astype(jnp.int32), m, -1)
  max_out = min(max_output_size, n)
  state = _new_state(_round_up(max_out, tile), 0)
  state = _greedy(state, sb, sc, scls, ssrc, _exact_threshold(iou_threshold), max_out, tile,
                  class_ids is not None, None)
  idx = _pad_to(state["src"][:max_out], max_output_size, -1)
  return idx, jnp.arange(max_output_size) < state["n"]


# ------------------------------------------------------------------------------------------
# Public API


def nms(boxes, scores, iou_threshold, max_output_size: int, valid=None):
  """Greedy non-maximum suppression, exactly `torchvision.ops.nms` truncated and padded.

  Args:
    boxes: float32 `[N, 4]` (x1, y1, x2, y2).
    scores: float32 `[N]`.
    iou_threshold: scalar in [0, 1]; a box is dropped when its IoU with a kept higher-ranked
      box is > iou_threshold (compared as the real number, as torchvision's CPU kernel does
      in double; a traced threshold is taken as the float32 it is).
    max_output_size: static int >= 0, the output length.
    valid: optional bool `[N]`; False rows are never kept and never suppress.

  Returns:
    indices int32 `[max_output_size]`: kept boxes' indices into `boxes` in descending score
      order (ties: lower index first); padding entries are -1.
    valid bool `[max_output_size]`: True for real entries (a prefix).
  """
  boxes = _check_boxes(boxes)
  n = boxes.shape[0]
  scores = _check_vector(scores, n, "scores", jnp.float32)
  valid = (jnp.ones((n,), bool) if valid is None else _check_vector(valid, n, "valid", bool))
  max_output_size = _check_size(max_output_size, "max_output_size")
  _check_iou_threshold(iou_threshold)
  return _sorted_greedy(boxes, scores, valid, None, iou_threshold, max_output_size)


def batched_nms(boxes, scores, class_ids, iou_threshold, max_output_size: int, valid=None):
  """Class-aware NMS: boxes of different classes never suppress each other.

  Same as `torchvision.ops.batched_nms(boxes, scores, class_ids, iou_threshold)` truncated to
  `max_output_size` (IoU on the original coordinates, as its per-class path; its coordinate-
  offset path can differ from that by float rounding of the shifted boxes).

  Args: as `nms`, plus class_ids int `[N]` (any integers).
  Returns: (indices int32 `[max_output_size]`, valid bool `[max_output_size]`), indices in
    descending score order over all classes (ties: lower index first), padding -1.
  """
  boxes = _check_boxes(boxes)
  n = boxes.shape[0]
  scores = _check_vector(scores, n, "scores", jnp.float32)
  class_ids = _check_vector(class_ids, n, "class_ids", jnp.int32)
  valid = (jnp.ones((n,), bool) if valid is None else _check_vector(valid, n, "valid", bool))
  max_output_size = _check_size(max_output_size, "max_output_size")
  _check_iou_threshold(iou_threshold)
  return _sorted_greedy(boxes, scores, valid, class_ids, iou_threshold, max_output_size)


def multiclass_nms(boxes, scores, score_threshold, iou_threshold, max_per_class: int,
                   max_total: int, valid=None):
  """Per-class greedy NMS then the best `max_total` over all classes, as
  `tf.image.combined_non_max_suppression(..., pad_per_class=False, clip_boxes=False)`.

  Per class c: boxes with `scores[:, c] > score_threshold` (strictly, as TF), greedy NMS
  (IoU > iou_threshold suppresses) keeping at most `max_per_class`; then the `max_total`
  highest-scoring of all classes' kept boxes. Thresholds are float32 (as TF's op takes them).
  IoU as TF: corners sorted per axis first, so flipped boxes count like their normal form.

  Tie-breaking (TF leaves it unspecified: its per-class queue and final sort are not stable):
  equal scores are ranked by lower box index first, then lower class; this decides both the
  per-class greedy order and the cut at `max_total`.

  Method (exact, see module docstring): all (box, class) candidates of the image are ranked
  by score in one list and run through class-aware greedy NMS with a per-class cap; the first
  `max_total` kept are the answer, so the loop stops there. The list is built `K` candidates
  at a time (the best rows by max class score, then the best entries in them) and extended
  only when the first `K` did not give `max_total` boxes.

  Args:
    boxes: float32 `[N, 4]` (shared by all classes) or `[N, C, 4]` (per class).
    scores: float32 `[N, C]`.
    score_threshold, iou_threshold: scalars (iou_threshold in [0, 1]).
    max_per_class, max_total: static ints >= 0.
    valid: optional bool `[N]`; False rows are never kept and never suppress.

  Returns:
    boxes float32 `[max_total, 4]` (as given, not clipped), scores float32 `[max_total]`,
    classes int32 `[max_total]` (column of `scores`), valid bool `[max_total]`; sorted by
    score descending; padding entries are 0 (as TF) with valid False.
  """
  boxes = _check_boxes(boxes, ranks=(2, 3))
  scores = jnp.asarray(scores)
  if scores.ndim != 2:
    raise ValueError(f"scores must be 2-D [N, C]; got shape {scores.shape}")
  scores = scores.astype(jnp.float32)
  n, c = scores.shape
  if boxes.shape[0] != n:
    raise ValueError(f"boxes has {boxes.shape[0]} rows but scores has {n}")
  if boxes.ndim == 3 and boxes.shape[1] != c:
    raise ValueError(f"per-class boxes have {boxes.shape[1]} classes but scores has {c}")
  valid = (jnp.ones((n,), bool) if valid is None else _check_vector(valid, n, "valid", bool))
  max_per_class = _check_size(max_per_class, "max_per_class")
  max_total = _check_size(max_total, "max_total")
  _check_iou_threshold(iou_threshold)
  if jnp.ndim(score_threshold) != 0:
    raise ValueError(f"score_threshold must be a scalar; got shape {jnp.shape(score_threshold)}")

  max_out = min(max_total, n * c, max_per_class * c)
  if max_out == 0:
    return (jnp.zeros((max_total, 4), jnp.float32), jnp.zeros((max_total,), jnp.float32),
            jnp.zeros((max_total,), jnp.int32), jnp.zeros((max_total,), bool))

  thr = jnp.asarray(iou_threshold, jnp.float32)
  above = valid[:, None] & (scores > jnp.asarray(score_threshold, jnp.float32))
  key, _ = _score_key(scores, above)  # [N, C], -inf where not a candidate
  norm = _normalize_tf(boxes)
  # Candidates per round: enough rows for max_total boxes plus some suppressed ones.
  k_rows = min(n, max(2 * max_out, 64))
  tile = min(_TILE, _round_up(k_rows, 8))
  k = _round_up(k_rows, tile)
  state = _new_state(_round_up(max_out, tile), c)

  def round_cond(rc):
    _, st, more = rc
    return more & (st["n"] < max_out)

  def round_body(rc):
    key, st, _ = rc
    # The best k entries of `key` (global order: score desc, then flat index n*C+c) lie in
    # the best k rows by row maximum (each better row holds an entry ranked before any entry
    # of a worse row), so one small top_k over those rows finds them.
    rows = lax.top_k(jnp.max(key, axis=1), k_rows)[1]
    rows = jnp.sort(rows)  # ascending row index keeps the flat order for ties
    sub = key[rows].reshape(-1)
    vals, pos = lax.top_k(sub, k_rows)  # no more entries than rows: see above
    vals, pos = _pad_to(vals, k, -jnp.inf), _pad_to(pos, k, 0)
    box = rows[pos // c]
    cls = (pos % c).astype(jnp.int32)
    cand = vals > -jnp.inf
    cb = norm[box] if norm.ndim == 2 else norm[box, cls]
    st = _greedy(st, cb, cand, cls, (box * c + cls).astype(jnp.int32), thr, max_out, tile,
                 True, max_per_class)
    key = key.at[jnp.where(cand, box, n), cls].set(-jnp.inf, mode="drop")
    return key, st, cand[k_rows - 1]

  _, state, _ = lax.while_loop(round_cond, round_body, (key, state, jnp.bool_(True)))
  ok = jnp.arange(max_out) < state["n"]
  src = jnp.where(ok, state["src"][:max_out], 0)
  box, cls = src // c, src % c
  out_boxes = boxes[box] if boxes.ndim == 2 else boxes[box, cls]
  out_boxes = jnp.where(ok[:, None], out_boxes, 0.0)
  out_scores = jnp.where(ok, scores[box, cls], 0.0)
  out_cls = jnp.where(ok, cls, 0).astype(jnp.int32)
  return (_pad_to(out_boxes, max_total, 0.0), _pad_to(out_scores, max_total, 0.0),
          _pad_to(out_cls, max_total, 0), _pad_to(ok, max_total, False))


def soft_nms(boxes, scores, iou_threshold, sigma, method: str = "gaussian",
             score_threshold=0.0, max_output_size: int = 100, valid=None):
  """Soft-NMS (Bodla et al. 2017): selecting a box decays the scores of the others.

  Repeatedly select the highest current score (ties: lower index first), then multiply every
  other remaining score by a weight of its IoU with the selected box and drop those no longer
  > score_threshold (candidates must also start > score_threshold):
  - "linear": weight `1 - iou` where `iou >= iou_threshold`, else 1 (the paper's Eq. 2).
  - "gaussian": weight `exp(-0.5 * iou^2 / sigma)` for every box, exactly TF's
    `non_max_suppression_with_scores(soft_nms_sigma=sigma)` (TF's scale is -0.5/sigma, so the
    paper's sigma is 2x this one); `iou_threshold` is ignored, as in TF.
  IoU as TF: corners sorted per axis, and 0 where either box has zero area (no NaN).

  Args:
    boxes float32 `[N, 4]`, scores float32 `[N]`; iou_threshold in [0, 1]; sigma > 0
    (gaussian); score_threshold scalar; max_output_size static int >= 0; valid bool `[N]`.
  Returns:
    indices int32 `[max_output_size]` in selection order (padding -1), new_scores float32
    `[max_output_size]` (the decayed score at selection, padding 0), valid bool.
  """
  boxes = _check_boxes(boxes)
  n = boxes.shape[0]
  scores = _check_vector(scores, n, "scores", jnp.float32)
  valid = (jnp.ones((n,), bool) if valid is None else _check_vector(valid, n, "valid", bool))
  max_output_size = _check_size(max_output_size, "max_output_size")
  _check_iou_threshold(iou_threshold)
  if method not in ("linear", "gaussian"):
    raise ValueError(f"method must be 'linear' or 'gaussian'; got {method!r}")
  if method == "gaussian" and _is_concrete(sigma) and not float(np.asarray(sigma)) > 0:
    raise ValueError(f"sigma must be > 0 for the gaussian method; got {sigma}")
  max_out = min(max_output_size, n)
  idx = jnp.full((max_output_size,), -1, jnp.int32)
  out = jnp.zeros((max_output_size,), jnp.float32)
  if max_out == 0:
    return idx, out, jnp.zeros((max_output_size,), bool)

  sthr = jnp.asarray(score_threshold, jnp.float32)
  thr = jnp.asarray(iou_threshold, jnp.float32)
  norm = _normalize_tf(boxes)
  area = (norm[:, 2] - norm[:, 0]) * (norm[:, 3] - norm[:, 1])
  scale = jnp.float32(-0.5) / jnp.asarray(sigma, jnp.float32)
  key, _ = _score_key(scores, valid & (scores > sthr))

  def cond(c):
    i, s, _, _ = c
    return (i < max_out) & jnp.any(s > -jnp.inf)

  def body(c):
    i, s, idx, out = c
    j = jnp.argmax(s).astype(jnp.int32)  # first maximum: lower index on ties
    idx = idx.at[i].set(j)
    out = out.at[i].set(s[j])
    iou = _iou(norm[j][None], norm)[0]
    iou = jnp.where((area[j] > 0) & (area > 0), iou, 0.0)
    if method == "gaussian":
      w = jnp.exp(scale * iou * iou)
    else:
      w = jnp.where(iou >= thr, 1.0 - iou, 1.0)
    s = s * w
    s = jnp.where((s > sthr) & (jnp.arange(n) != j), s, -jnp.inf)
    return i + 1, s, idx, out

  i, _, idx, out = lax.while_loop(cond, body, (jnp.int32(0), key, idx, out))
  return idx, out, jnp.arange(max_output_size) < i


__all__ = ["batched_nms", "multiclass_nms", "nms", "soft_nms"]
