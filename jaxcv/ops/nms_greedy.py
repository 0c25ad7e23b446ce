"""The exact greedy NMS kernel behind `jaxcv.ops.nms`: ranked candidates in tiles, each tile
suppressed by the boxes kept before it and then solved as a fixpoint.

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

IoU is `inter / (area_i + area_j - inter)` in float32 with `area = (x2 - x1) * (y2 - y1)` and
`inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1))`, exactly as torchvision's
kernel. Two zero-area boxes give 0/0 = NaN, and NaN > t is False: a zero-area box is never
suppressed by IoU and never suppresses (torchvision and TF agree).

Internal to `jaxcv.ops.nms` (the checks and the public functions live there); everything
here assumes checked float32 inputs and a candidate mask that already excludes invalid rows.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcv.ops.common import is_concrete

TILE = 64  # boxes per tile: big enough that loop overhead is small, small enough to stop early


def exact_threshold(t):
  """float32 threshold `t32` with `iou > t32` == `iou > t` for float32 `iou` and the real `t`.

  torchvision's CPU kernel compares the float32 IoU with the threshold as a C++ double, so an
  IoU one float32 step above the threshold's nearest float32 (which may round UP) is still
  suppressed. Rounding a concrete threshold DOWN to float32 reproduces that exactly; a traced
  threshold is already float32.
  """
  if is_concrete(t):
    v = float(np.asarray(t, np.float64))
    v32 = np.float32(v)
    if float(v32) > v:
      v32 = np.nextafter(v32, np.float32(-np.inf))
    return jnp.float32(v32)
  return jnp.asarray(t, jnp.float32)


def pairwise_iou(a, b):
  """IoU `[P, Q]` of boxes a `[P, 4]` (the higher-ranked ones) and b `[Q, 4]`, torchvision's
  float32 formula. Not `jaxcv.ops.boxes.box_iou` because the tiled loops here call it on
  `[T, T]` blocks and must reproduce torchvision's operation order bit for bit."""
  ax1, ay1, ax2, ay2 = (a[:, k, None] for k in range(4))
  bx1, by1, bx2, by2 = (b[None, :, k] for k in range(4))
  area_a = (ax2 - ax1) * (ay2 - ay1)
  area_b = (bx2 - bx1) * (by2 - by1)
  w = jnp.maximum(jnp.minimum(ax2, bx2) - jnp.maximum(ax1, bx1), 0.0)
  h = jnp.maximum(jnp.minimum(ay2, by2) - jnp.maximum(ay1, by1), 0.0)
  inter = w * h
  return inter / (area_a + area_b - inter)


def score_key(scores, valid):
  """float32 ranking key: score, -inf for invalid/NaN, -0.0 made +0.0 (torch ranks them equal)."""
  ok = valid & ~jnp.isnan(scores)
  key = jnp.where(ok, scores, -jnp.inf)
  return jnp.where(key == 0, jnp.float32(0), key), ok


def _rank(key):
  """Indices ordering `key` descending, ties lower index first (lax.top_k is stable and on CPU
  several times faster than a sort)."""
  return lax.top_k(key, key.shape[0])[1]


def round_up(n, m):
  return -(-n // m) * m


def new_state(capacity, num_classes):
  return {"boxes": jnp.zeros((capacity, 4), jnp.float32),
          "cls": jnp.zeros((capacity,), jnp.int32),
          "src": jnp.full((capacity,), -1, jnp.int32),
          "n": jnp.zeros((), jnp.int32),
          "counts": jnp.zeros((max(num_classes, 1),), jnp.int32)}


def greedy(state, boxes, cand, cls, src, thr, max_out, tile, class_aware, max_per_class):
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
      hit = (pairwise_iou(kb, tb) > thr) & ((j * tile + eye_t) < st["n"])[:, None]
      if class_aware:
        kcls = lax.dynamic_slice_in_dim(st["cls"], j * tile, tile)
        hit &= kcls[:, None] == tcls[None, :]
      return j + 1, sup | jnp.any(hit, axis=0)

    _, sup = lax.while_loop(kept_cond, kept_body, (jnp.int32(0), jnp.zeros((tile,), bool)))
    alive = tc & ~sup

    # 2. Exact greedy inside the tile: fixpoint iteration (see the module docstring).
    over = (pairwise_iou(tb, tb) > thr) & lower
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


def pad_to(x, m, value):
  pad = m - x.shape[0]
  if pad == 0:
    return x
  return jnp.concatenate([x, jnp.full((pad,) + x.shape[1:], value, x.dtype)])


def sorted_greedy(boxes, scores, valid, class_ids, iou_threshold, max_output_size):
  """`nms` / `batched_nms` (class-aware when `class_ids` is given) on checked inputs: boxes
  float32 `[N, 4]`, scores `[N]`, valid bool `[N]` (the rows that may be kept), class_ids
  int32 `[N]` or None. Returns (indices int32 `[max_output_size]`, valid bool)."""
  n = boxes.shape[0]
  if max_output_size == 0 or n == 0:
    return (jnp.full((max_output_size,), -1, jnp.int32), jnp.zeros((max_output_size,), bool))
  key, ok = score_key(scores, valid)
  order = _rank(key)
  tile = min(TILE, round_up(n, 8))
  m = round_up(n, tile)
  sb = pad_to(boxes[order], m, 0.0)
  sc = pad_to(ok[order], m, False)
  scls = pad_to(class_ids[order] if class_ids is not None else jnp.zeros((n,), jnp.int32),
                m, 0)
  ssrc = pad_to(order.astype(jnp.int32), m, -1)
  max_out = min(max_output_size, n)
  state = new_state(round_up(max_out, tile), 0)
  state = greedy(state, sb, sc, scls, ssrc, exact_threshold(iou_threshold), max_out, tile,
                 class_ids is not None, None)
  idx = pad_to(state["src"][:max_out], max_output_size, -1)
  return idx, jnp.arange(max_output_size) < state["n"]

