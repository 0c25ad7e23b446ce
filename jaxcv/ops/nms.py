"""Exact, static-shape non-maximum suppression: `nms`, `batched_nms`, `multiclass_nms`,
`soft_nms`.

What: greedy NMS with exactly torchvision's semantics (`nms`, `batched_nms`), TF's
`tf.image.combined_non_max_suppression` (`multiclass_nms`) and Soft-NMS (Bodla et al. 2017;
the Gaussian form as TF's `non_max_suppression_with_scores(soft_nms_sigma=...)`), as pure
jnp functions with static output shapes (padded, with a bool validity mask), usable under
`jax.jit` and `jax.vmap` (vmap over a batch of images is the intended batching). The exact
tiled greedy kernel and why it is exact: `jaxcv.ops.nms_greedy`.

Conventions:
- boxes `[N, 4]` float32 (x1, y1, x2, y2) with x1 <= x2, y1 <= y2, finite (one image; vmap
  over images); scores float32; class ids integers.
- IoU as torchvision's kernel, in float32 (see `nms_greedy`); a zero-area box is never
  suppressed by IoU and never suppresses.
- A box is suppressed when its IoU with an already kept, higher-ranked box is STRICTLY
  greater than `iou_threshold`.
- Padded outputs: indices -1 (never a valid index, so a forgotten mask shows), scores 0,
  boxes 0, classes 0, and `valid` False.
- `valid` inputs (bool `[N]`) mark real boxes; invalid (padding) boxes are never kept and
  never suppress, and their values are never looked at (they may hold anything).

Bad values (checked on the rows with `valid` True):
- Concrete inputs (not tracers): a box that is not finite or has x2 < x1 / y2 < y1 raises
  `InvalidBoxesError`; a NaN score, a NaN or out-of-range `iou_threshold`, a NaN
  `score_threshold` raise `InvalidInputError` (both ValueErrors, from
  `jaxcv.ops.boxes` / `jaxcv.ops.common`). Non-integer class ids are a ValueError always
  (the dtype is static).
- Under `jit` / `vmap` nothing can raise. A row whose box fails `valid_boxes_mask` or whose
  score is NaN is treated as padding: never kept, never suppresses (the output's `valid`
  says so, never a wrong box marked valid). A traced NaN `iou_threshold` suppresses nothing
  (`iou > NaN` is False: the top `max_output_size` by score are kept); a traced NaN
  `score_threshold` keeps nothing.
- Subnormal float32 values (below 1.2e-38) count as 0 on XLA's CPU backend, which flushes
  denormals: such a score ties with 0 (ranked by index) and is not > a score_threshold of 0.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcv.ops.boxes import check_boxes, valid_boxes_mask
from jaxcv.ops.common import InvalidInputError, is_concrete
from jaxcv.ops.nms_greedy import (TILE, greedy, new_state, pad_to, pairwise_iou, round_up,
                                  score_key, sorted_greedy)

# ------------------------------------------------------------------------------------------
# Checks (trace time; values only where concrete)


def _check_vector(x, n, name, dtype):
  x = jnp.asarray(x)
  if x.ndim != 1:
    raise ValueError(f"{name} must be 1-D [N]; got shape {x.shape}")
  if x.shape[0] != n:
    raise ValueError(f"{name} has {x.shape[0]} entries but boxes has {n}")
  return x.astype(dtype)


def _check_valid(valid, n):
  return jnp.ones((n,), bool) if valid is None else _check_vector(valid, n, "valid", bool)


def _check_scores(scores, valid, shape):
  """float32 scores `[N]` (or `[N, C]`, shape checked by the caller); a concrete NaN on a
  valid row raises."""
  if len(shape) == 1:
    scores = _check_vector(scores, shape[0], "scores", jnp.float32)
  else:  # multiclass_nms has checked the shape
    scores = jnp.asarray(scores, jnp.float32)
  if is_concrete(scores, valid):
    rows = np.asarray(valid, bool).reshape((-1,) + (1,) * (scores.ndim - 1))
    bad = np.isnan(np.asarray(scores)) & rows
    if bad.any():
      at = ", ".join(str(int(i)) for i in np.argwhere(bad)[0])
      raise InvalidInputError(f"scores[{at}] is NaN ({int(bad.sum())} NaN scores on valid "
                              "rows): a NaN has no rank; mark such rows valid=False instead")
  return scores


def _check_class_ids(class_ids, n):
  class_ids = jnp.asarray(class_ids)
  if not jnp.issubdtype(class_ids.dtype, jnp.integer):
    raise ValueError(f"class_ids must be integers; got dtype {class_ids.dtype} (a float id "
                     "would be truncated, merging classes such as 0.2 and 0.7)")
  return _check_vector(class_ids, n, "class_ids", jnp.int32)


def _check_size(v, name) -> int:
  if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
    raise ValueError(f"{name} must be a Python int (a static size); got {v!r}")  # noqa: TRY004
  if v < 0:
    raise ValueError(f"{name} must be >= 0; got {v}")
  return int(v)


def _check_threshold(t, name, unit_interval):
  """A scalar threshold; when concrete, not NaN (and in [0, 1] if `unit_interval`)."""
  if jnp.ndim(t) != 0:
    raise ValueError(f"{name} must be a scalar; got shape {jnp.shape(t)}")
  if is_concrete(t):
    v = float(np.asarray(t))
    if np.isnan(v):
      raise InvalidInputError(f"{name} is NaN; it must be a number"
                              + (" in [0, 1]" if unit_interval else ""))
    if unit_interval and not 0.0 <= v <= 1.0:
      raise InvalidInputError(f"{name} must be in [0, 1]; got {v}")


# ------------------------------------------------------------------------------------------
# Public API


def _check_single(boxes, scores, valid, max_output_size, iou_threshold):
  """The checks `nms`, `batched_nms` and `soft_nms` share: boxes `[N, 4]` (values where
  concrete, `valid` rows only), scores `[N]`, the output size and the IoU threshold. Returns
  (boxes float32, scores, valid, max_output_size)."""
  boxes = check_boxes(boxes, ranks=(2,), dtype=jnp.float32)
  valid = _check_valid(valid, boxes.shape[0])
  check_boxes(boxes, values=True, valid=valid)
  scores = _check_scores(scores, valid, (boxes.shape[0],))
  max_output_size = _check_size(max_output_size, "max_output_size")
  _check_threshold(iou_threshold, "iou_threshold", unit_interval=True)
  return boxes, scores, valid, max_output_size


def nms(boxes, scores, iou_threshold, max_output_size: int, valid=None):
  """Greedy non-maximum suppression, exactly `torchvision.ops.nms` truncated and padded.

  Args:
    boxes: float32 `[N, 4]` (x1, y1, x2, y2), finite, x1 <= x2 and y1 <= y2.
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

  Bad values (module docstring): concrete invalid boxes raise InvalidBoxesError, NaN scores
  or threshold InvalidInputError; under jit such rows are never kept and never suppress, and
  a NaN threshold suppresses nothing.
  """
  boxes, scores, valid, max_output_size = _check_single(boxes, scores, valid, max_output_size,
                                                       iou_threshold)
  return sorted_greedy(boxes, scores, valid & valid_boxes_mask(boxes), None, iou_threshold,
                       max_output_size)


def batched_nms(boxes, scores, class_ids, iou_threshold, max_output_size: int, valid=None):
  """Class-aware NMS: boxes of different classes never suppress each other.

  Same as `torchvision.ops.batched_nms(boxes, scores, class_ids, iou_threshold)` truncated to
  `max_output_size` (IoU on the original coordinates, as its per-class path; its coordinate-
  offset path can differ from that by float rounding of the shifted boxes).

  Args: as `nms`, plus class_ids `[N]` of an integer dtype (any values; a float array is a
    ValueError, also under jit).
  Returns: (indices int32 `[max_output_size]`, valid bool `[max_output_size]`), indices in
    descending score order over all classes (ties: lower index first), padding -1.
  Bad values: as `nms`.
  """
  boxes, scores, valid, max_output_size = _check_single(boxes, scores, valid, max_output_size,
                                                       iou_threshold)
  class_ids = _check_class_ids(class_ids, boxes.shape[0])
  return sorted_greedy(boxes, scores, valid & valid_boxes_mask(boxes), class_ids,
                       iou_threshold, max_output_size)


def multiclass_nms(boxes, scores, score_threshold, iou_threshold, max_per_class: int,
                   max_total: int, valid=None):
  """Per-class greedy NMS then the best `max_total` over all classes, as
  `tf.image.combined_non_max_suppression(..., pad_per_class=False, clip_boxes=False)`.

  Per class c: boxes with `scores[:, c] > score_threshold` (strictly, as TF), greedy NMS
  (IoU > iou_threshold suppresses) keeping at most `max_per_class`; then the `max_total`
  highest-scoring of all classes' kept boxes. Thresholds are float32 (as TF's op takes them).
  Boxes follow this module's contract (x1 <= x2, y1 <= y2), so TF's sorting of the corners
  changes nothing and is not done; a flipped box is bad input, not its normal form.

  Tie-breaking (TF leaves it unspecified: its per-class queue and final sort are not stable):
  equal scores are ranked by lower box index first, then lower class; this decides both the
  per-class greedy order and the cut at `max_total`.

  Method (exact, see `jaxcv.ops.nms_greedy`): all (box, class) candidates of the image are ranked
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

  Bad values (module docstring): concrete invalid boxes (per class for `[N, C, 4]`) raise
  InvalidBoxesError, a NaN score or threshold InvalidInputError; under jit such (box, class)
  entries are never kept and never suppress, a NaN score_threshold keeps nothing.
  """
  boxes = check_boxes(boxes, ranks=(2, 3), dtype=jnp.float32)
  scores = jnp.asarray(scores)
  if scores.ndim != 2:
    raise ValueError(f"scores must be 2-D [N, C]; got shape {scores.shape}")
  n, c = scores.shape
  if boxes.shape[0] != n:
    raise ValueError(f"boxes has {boxes.shape[0]} rows but scores has {n}")
  if boxes.ndim == 3 and boxes.shape[1] != c:
    raise ValueError(f"per-class boxes have {boxes.shape[1]} classes but scores has {c}")
  valid = _check_valid(valid, n)
  check_boxes(boxes, values=True, valid=valid[:, None] if boxes.ndim == 3 else valid)
  scores = _check_scores(scores, valid, (n, c))
  max_per_class = _check_size(max_per_class, "max_per_class")
  max_total = _check_size(max_total, "max_total")
  _check_threshold(iou_threshold, "iou_threshold", unit_interval=True)
  _check_threshold(score_threshold, "score_threshold", unit_interval=False)

  max_out = min(max_total, n * c, max_per_class * c)
  if max_out == 0:
    return (jnp.zeros((max_total, 4), jnp.float32), jnp.zeros((max_total,), jnp.float32),
            jnp.zeros((max_total,), jnp.int32), jnp.zeros((max_total,), bool))

  thr = jnp.asarray(iou_threshold, jnp.float32)
  box_ok = valid_boxes_mask(boxes)
  box_ok = box_ok if boxes.ndim == 3 else box_ok[:, None]
  above = valid[:, None] & box_ok & (scores > jnp.asarray(score_threshold, jnp.float32))
  key, _ = score_key(scores, above)  # [N, C], -inf where not a candidate
  # Candidates per round: enough rows for max_total boxes plus some suppressed ones.
  k_rows = min(n, max(2 * max_out, 64))
  tile = min(TILE, round_up(k_rows, 8))
  k = round_up(k_rows, tile)
  state = new_state(round_up(max_out, tile), c)

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
    vals, pos = pad_to(vals, k, -jnp.inf), pad_to(pos, k, 0)
    box = rows[pos // c]
    cls = (pos % c).astype(jnp.int32)
    cand = vals > -jnp.inf
    cb = boxes[box] if boxes.ndim == 2 else boxes[box, cls]
    st = greedy(st, cb, cand, cls, (box * c + cls).astype(jnp.int32), thr, max_out, tile,
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
  return (pad_to(out_boxes, max_total, 0.0), pad_to(out_scores, max_total, 0.0),
          pad_to(out_cls, max_total, 0), pad_to(ok, max_total, False))


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
  IoU as TF's kernel: 0 where either box has zero area (no NaN); boxes follow the module's
  contract (x1 <= x2, y1 <= y2), so TF's corner sorting is not needed.

  Args:
    boxes float32 `[N, 4]`, scores float32 `[N]`; iou_threshold in [0, 1]; sigma > 0
    (gaussian); score_threshold scalar; max_output_size static int >= 0; valid bool `[N]`.
  Returns:
    indices int32 `[max_output_size]` in selection order (padding -1), new_scores float32
    `[max_output_size]` (the decayed score at selection, padding 0), valid bool.
  Bad values: as `nms` (and a NaN score_threshold: InvalidInputError, under jit nothing kept).
  """
  boxes, scores, valid, max_output_size = _check_single(boxes, scores, valid, max_output_size,
                                                       iou_threshold)
  n = boxes.shape[0]
  _check_threshold(score_threshold, "score_threshold", unit_interval=False)
  if method not in ("linear", "gaussian"):
    raise ValueError(f"method must be 'linear' or 'gaussian'; got {method!r}")
  if method == "gaussian" and is_concrete(sigma) and not float(np.asarray(sigma)) > 0:
    raise InvalidInputError(f"sigma must be > 0 for the gaussian method; got {sigma}")
  max_out = min(max_output_size, n)
  idx = jnp.full((max_output_size,), -1, jnp.int32)
  out = jnp.zeros((max_output_size,), jnp.float32)
  if max_out == 0:
    return idx, out, jnp.zeros((max_output_size,), bool)

  sthr = jnp.asarray(score_threshold, jnp.float32)
  thr = jnp.asarray(iou_threshold, jnp.float32)
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  scale = jnp.float32(-0.5) / jnp.asarray(sigma, jnp.float32)
  key, _ = score_key(scores, valid & valid_boxes_mask(boxes) & (scores > sthr))

  def cond(c):
    i, s, _, _ = c
    return (i < max_out) & jnp.any(s > -jnp.inf)

  def body(c):
    i, s, idx, out = c
    j = jnp.argmax(s).astype(jnp.int32)  # first maximum: lower index on ties
    idx = idx.at[i].set(j)
    out = out.at[i].set(s[j])
    iou = pairwise_iou(boxes[j][None], boxes)[0]
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
