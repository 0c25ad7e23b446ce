"""jaxcv.ops.nms against a NumPy greedy NMS written here and against TensorFlow's kernels.

References: `ref_nms` (the sequential greedy loop: stable score order, suppress when IoU with a
kept box > threshold, torchvision's float32 IoU), `ref_multiclass` (per-class greedy + top
total, as TF's combined NMS describes it), `ref_soft_nms` (Bodla et al.'s Soft-NMS loop), and
`tf.image.non_max_suppression`, `combined_non_max_suppression`,
`non_max_suppression_with_scores(soft_nms_sigma=...)`. Random cases are batched with vmap over
a few fixed padded sizes, so each shape compiles once.
"""
from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from jaxcv.ops.boxes import InvalidBoxesError
from jaxcv.ops.common import InvalidInputError
from jaxcv.ops.nms import batched_nms, multiclass_nms, nms, soft_nms

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9]


# ------------------------------------------------------------------------------------------
# NumPy references


def ref_iou_row(b, i, tf_style=False):
  """float32 IoU of box i with every box, torchvision's formula (TF's if tf_style)."""
  if tf_style:
    b = np.stack([np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                  np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])], axis=1)
  area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  zero = np.float32(0)
  w = np.maximum(np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]), zero)
  h = np.maximum(np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]), zero)
  inter = w * h
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = inter / (area[i] + area - inter)
  if tf_style:
    iou = np.where((area[i] > 0) & (area > 0), iou, zero)
  return iou.astype(np.float32)


def ref_nms(boxes, scores, thr, valid=None, classes=None, exact_threshold=False):
  """Sequential greedy NMS; `thr` compared as float32, or as the real number if exact."""
  n = len(scores)
  valid = np.ones(n, bool) if valid is None else valid
  order = sorted((i for i in range(n) if valid[i]), key=lambda i: (-scores[i], i))
  suppressed = np.zeros(n, bool)
  keep = []
  for i in order:
    if suppressed[i]:
      continue
    keep.append(i)
    iou = ref_iou_row(boxes, i)
    hit = iou.astype(np.float64) > thr if exact_threshold else iou > np.float32(thr)
    if classes is not None:
      hit &= classes == classes[i]
    suppressed |= hit
  return keep


def ref_multiclass(boxes, scores, sthr, thr, per_class, total, valid=None):
  """Per class: score > sthr, greedy NMS up to per_class; then the best `total`. Ties: lower
  box index, then lower class."""
  n, c = scores.shape
  valid = np.ones(n, bool) if valid is None else valid
  kept = []
  for k in range(c):
    b = boxes if boxes.ndim == 2 else boxes[:, k]
    s = scores[:, k]
    order = sorted((i for i in range(n) if valid[i] and s[i] > np.float32(sthr)),
                   key=lambda i: (-s[i], i))
    chosen = []
    for i in order:
      if len(chosen) == per_class:
        break
      if chosen and np.any(ref_iou_row(b, i, tf_style=True)[chosen] > np.float32(thr)):
        continue
      chosen.append(i)
    kept += [(-s[i], i, k) for i in chosen]
  kept.sort()
  return [(i, k) for _, i, k in kept[:total]]


def ref_soft_nms(boxes, scores, thr, sigma, method, sthr, max_out, valid=None):
  """Bodla et al. 2017, Algorithm 1, with TF's Gaussian scale -0.5/sigma."""
  n = len(scores)
  valid = np.ones(n, bool) if valid is None else valid
  s = np.where(valid & (scores > np.float32(sthr)), scores, -np.inf).astype(np.float32)
  idx, out = [], []
  while len(idx) < max_out and np.any(s > -np.inf):
    m = int(np.argmax(s))
    idx.append(m)
    out.append(float(s[m]))
    iou = ref_iou_row(boxes, m, tf_style=True)
    if method == "gaussian":
      w = np.exp((np.float32(-0.5) / np.float32(sigma)) * iou * iou).astype(np.float32)
    else:
      w = np.where(iou >= np.float32(thr), np.float32(1) - iou, np.float32(1))
    with np.errstate(invalid="ignore"):  # -inf * 0 for already dropped boxes
      s = (s * w).astype(np.float32)
    s[m] = -np.inf
    s = np.where(s > np.float32(sthr), s, -np.inf).astype(np.float32)
  return idx, np.array(out, np.float32)


# ------------------------------------------------------------------------------------------
# Random cases


def random_case(rng, size, real=None):
  """Boxes [size, 4] with clusters, duplicates, zero-area boxes; scores with ties; a valid
  mask padding rows beyond `real` (padding rows get high scores: they must be ignored)."""
  real = int(rng.integers(1, size + 1)) if real is None else real
  style = rng.integers(0, 5)
  centres = rng.uniform(0, 100, (int(rng.integers(1, 6)), 2))
  c = centres[rng.integers(0, len(centres), size)] + rng.normal(0, 5, (size, 2))
  wh = rng.uniform(0, 40, (size, 2))
  if style == 1:  # small integer boxes: many IoUs exactly equal to thresholds like 0.5, 0.4
    c, wh = rng.integers(0, 8, (size, 2)).astype(float), rng.integers(1, 5, (size, 2))
  wh[rng.uniform(size=size) < 0.1, int(rng.integers(0, 2))] = 0  # zero-area boxes
  boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1).astype(np.float32)
  dup = rng.uniform(size=size) < 0.15
  boxes[dup] = boxes[rng.integers(0, size, int(dup.sum()))]
  if style == 2:  # everything overlaps everything
    boxes[:] = boxes[0]
  if style == 3 or rng.uniform() < 0.4:  # tied scores
    scores = rng.integers(0, 4, size).astype(np.float32)
  else:
    scores = rng.uniform(0, 1, size).astype(np.float32)
  if style == 4:
    scores[:] = 0.5
  valid = np.arange(size) < real
  valid &= rng.uniform(size=size) > 0.05
  scores[~valid] += 10.0
  return boxes, scores, valid


def nms_batch(seed, count, size):
  rng = np.random.default_rng(seed)
  cases = [random_case(rng, size) for _ in range(count)]
  thr = np.array([THRESHOLDS[i % len(THRESHOLDS)] if i % 3 else rng.uniform(0.05, 0.95)
                  for i in range(count)], np.float32)
  b, s, v = (np.stack(x) for x in zip(*cases, strict=True))
  return b, s, v, thr


_NMS = {}


def batched_fn(size, max_out):
  """jit(vmap(nms)) for a padded size (threshold traced: compared as the float32 given)."""
  if (size, max_out) not in _NMS:
    _NMS[size, max_out] = jax.jit(jax.vmap(lambda b, s, t, v: nms(b, s, t, max_out, v)))
  return _NMS[size, max_out]


# ------------------------------------------------------------------------------------------
# nms


@pytest.mark.parametrize("size, max_out, count, seed", [(16, 16, 256, 0), (64, 20, 192, 1),
                                                        (256, 256, 64, 2)])
def test_nms_matches_numpy_greedy_under_vmap(size, max_out, count, seed):
  b, s, v, thr = nms_batch(seed, count, size)
  idx, ok = (np.asarray(x) for x in batched_fn(size, max_out)(b, s, thr, v))
  mismatches = []
  for i in range(count):
    want = ref_nms(b[i], s[i], thr[i], v[i])[:max_out]
    got = idx[i][ok[i]].tolist()
    if got != want or not np.all(idx[i][~ok[i]] == -1) or not np.all(ok[i][:len(got)]):
      mismatches.append((i, float(thr[i]), got, want))
  assert not mismatches, mismatches[:3]


def test_nms_single_call_under_jit_equals_vmapped():
  b, s, v, thr = nms_batch(3, 8, 64)
  single = jax.jit(lambda b, s, t, v: nms(b, s, t, 20, v))
  batched = batched_fn(64, 20)(b, s, thr, v)
  for i in range(8):
    idx, ok = (np.asarray(x) for x in single(b[i], s[i], thr[i], v[i]))
    assert np.array_equal(idx, batched[0][i]) and np.array_equal(ok, batched[1][i])
    assert idx[ok].tolist() == ref_nms(b[i], s[i], thr[i], v[i])[:20]


def test_nms_concrete_threshold_compares_the_real_number():
  # Find boxes whose float32 IoU is exactly float32(0.3) > 0.3: torchvision's CPU kernel
  # (double compare) suppresses, a float32 compare (TF, torchvision CUDA) does not.
  t32 = np.float32(0.3)
  assert float(t32) > 0.3
  rng = np.random.default_rng(0)
  for _ in range(200000):
    x = np.float32(rng.integers(1, 64))
    a = np.array([[0, 0, 10, 10], [10 - x, 0, 20 - x, 10]], np.float32)
    w = np.float32(rng.integers(1, 200)) / np.float32(8)
    a[1, 2] = a[1, 0] + w
    if ref_iou_row(a, 0)[1] == t32:
      break
  else:
    pytest.skip("no box pair with IoU == float32(0.3) found")
  scores = np.array([1.0, 0.5], np.float32)
  idx, ok = jax.jit(lambda b, s: nms(b, s, 0.3, 2))(a, scores)
  assert idx[ok].tolist() == ref_nms(a, scores, 0.3, exact_threshold=True) == [0]
  idx, ok = jax.jit(lambda b, s, t: nms(b, s, t, 2))(a, scores, t32)  # traced: float32
  assert idx[ok].tolist() == ref_nms(a, scores, t32) == [0, 1]


def test_nms_zero_area_boxes_never_suppress_nor_are_suppressed():
  boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10], [5, 5, 5, 9]], np.float32)
  scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
  idx, ok = jax.jit(lambda b, s: nms(b, s, 0.0, 4))(boxes, scores)
  assert idx[ok].tolist() == [0, 1, 2, 3] == ref_nms(boxes, scores, 0.0)


def test_nms_empty_and_all_invalid():
  boxes = np.zeros((5, 4), np.float32)
  idx, ok = jax.jit(lambda b, s, v: nms(b, s, 0.5, 3, v))(boxes, np.ones(5, np.float32),
                                                         np.zeros(5, bool))
  assert idx.tolist() == [-1, -1, -1] and not ok.any()
  idx, ok = nms(boxes, np.ones(5, np.float32), 0.5, 0)
  assert idx.shape == (0,) and ok.shape == (0,)


@pytest.mark.parametrize("call, message", [
    (lambda: nms(np.zeros((3, 5)), np.zeros(3), 0.5, 2), "last dimension 4"),
    (lambda: nms(np.zeros((2, 3, 4)), np.zeros(3), 0.5, 2), "rank"),
    (lambda: nms(np.zeros((3, 4)), np.zeros(4), 0.5, 2), "scores has 4"),
    (lambda: nms(np.zeros((3, 4)), np.zeros(3), 0.5, 2, valid=np.ones(2, bool)), "valid"),
    (lambda: nms(np.zeros((3, 4)), np.zeros(3), 0.5, -1), ">= 0"),
    (lambda: nms(np.zeros((3, 4)), np.zeros(3), 1.5, 2), "[0, 1]"),
    (lambda: nms(np.zeros((3, 4)), np.zeros(3), -0.1, 2), "[0, 1]"),
    (lambda: batched_nms(np.zeros((3, 4)), np.zeros(3), np.zeros(2), 0.5, 2), "class_ids"),
    (lambda: multiclass_nms(np.zeros((3, 4)), np.zeros((4, 2)), 0.0, 0.5, 2, 2), "rows"),
    (lambda: multiclass_nms(np.zeros((3, 2, 5)), np.zeros((3, 2)), 0.0, 0.5, 2, 2), "4"),
    (lambda: multiclass_nms(np.zeros((3, 3, 4)), np.zeros((3, 2)), 0.0, 0.5, 2, 2), "classes"),
    (lambda: multiclass_nms(np.zeros((3, 4)), np.zeros(3), 0.0, 0.5, 2, 2), "2-D"),
    (lambda: multiclass_nms(np.zeros((3, 4)), np.zeros((3, 2)), 0.0, 0.5, -2, 2), ">= 0"),
    (lambda: soft_nms(np.zeros((3, 4)), np.zeros(3), 0.5, 0.5, "cubic", 0.0, 2), "method"),
    (lambda: soft_nms(np.zeros((3, 4)), np.zeros(3), 0.5, 0.0, "gaussian", 0.0, 2), "sigma"),
])
def test_bad_input_raises_value_error(call, message):
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
    call()


# ------------------------------------------------------------------------------------------
# Bad values: named errors on concrete inputs, masks under jit

GOOD = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
SCORES = np.array([0.9, 0.8, 0.7], np.float32)
CLASSES = np.array([0, 1, 0], np.int32)
# every op as f(boxes, scores, valid) with the same keep-everything-possible settings
OPS = {
    "nms": lambda b, s, v=None: nms(b, s, 0.5, 3, v),
    "batched_nms": lambda b, s, v=None: batched_nms(b, s, CLASSES, 0.5, 3, v),
    "multiclass_nms": lambda b, s, v=None: multiclass_nms(b, s[:, None], 0.0, 0.5, 3, 3, v),
    "soft_nms": lambda b, s, v=None: soft_nms(b, s, 0.5, 0.5, "gaussian", 0.0, 3, v),
}


def with_row(a, row, value):
  a = a.copy()
  a[row] = value
  return a


def kept(op, out):
  """The kept input rows of an op's output, in output order."""
  if op == "multiclass_nms":  # boxes, not indices: find them in GOOD
    boxes, ok = np.asarray(out[0]), np.asarray(out[3])
    return [int(np.flatnonzero((GOOD == b).all(1))[0]) for b in boxes[ok]]
  idx, ok = np.asarray(out[0]), np.asarray(out[-1])
  return idx[ok].tolist()


BAD_BOXES = {"x2 < x1": [10, 1, 2, 11], "y2 < y1": [1, 11, 11, 1], "NaN": [1, np.nan, 11, 11],
             "inf": [1, 1, np.inf, 11]}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("fault", sorted(BAD_BOXES))
def test_invalid_boxes_raise_on_concrete_input(op, fault):
  boxes = with_row(GOOD, 1, BAD_BOXES[fault])
  with pytest.raises(InvalidBoxesError, match=r"boxes\[1\] = .* is not a valid \(x1, y1, x2, y2\)"
                     r" box .*finite with x1 <= x2 and y1 <= y2"):
    OPS[op](boxes, SCORES)
  assert issubclass(InvalidBoxesError, ValueError)


@pytest.mark.parametrize("op", sorted(OPS))
def test_padding_rows_are_not_checked_and_bad_rows_are_masked_under_jit(op):
  valid = np.array([True, False, True])
  boxes = with_row(GOOD, 1, [np.nan, 5, -np.inf, 0])
  want = kept(op, OPS[op](GOOD, SCORES, valid))
  assert kept(op, OPS[op](boxes, SCORES, valid)) == want  # padding may hold anything
  # under jit nothing can raise: an inverted box, a NaN box and a NaN score are never kept
  fn = jax.jit(lambda b, s: OPS[op](b, s))
  for b, s in ((with_row(GOOD, 1, BAD_BOXES["x2 < x1"]), SCORES),
               (with_row(GOOD, 1, BAD_BOXES["NaN"]), SCORES),
               (GOOD, with_row(SCORES, 1, np.nan))):
    assert kept(op, fn(b, s)) == want


@pytest.mark.parametrize("op", sorted(OPS))
def test_nan_score_raises_on_concrete_input(op):
  at = "1, 0" if op == "multiclass_nms" else "1"
  with pytest.raises(InvalidInputError, match=rf"scores\[{at}\] is NaN .* valid=False"):
    OPS[op](GOOD, with_row(SCORES, 1, np.nan))
  OPS[op](GOOD, with_row(SCORES, 1, np.nan), np.array([True, False, True]))  # padding: fine


def test_float_class_ids_are_an_error_also_under_jit():
  msg = "class_ids must be integers; got dtype float32"
  with pytest.raises(ValueError, match=msg):
    batched_nms(GOOD, SCORES, np.array([0.2, 0.7, 0.7], np.float32), 0.5, 3)
  with pytest.raises(ValueError, match=msg):
    jax.jit(lambda c: batched_nms(GOOD, SCORES, c, 0.5, 3))(np.zeros(3, np.float32))
  with pytest.raises(ValueError, match="class_ids must be integers; got dtype bool"):
    batched_nms(GOOD, SCORES, np.zeros(3, bool), 0.5, 3)


@pytest.mark.parametrize("call, message", [
    (lambda: nms(GOOD, SCORES, np.nan, 3), "iou_threshold is NaN"),
    (lambda: batched_nms(GOOD, SCORES, CLASSES, np.float32(np.nan), 3), "iou_threshold is NaN"),
    (lambda: soft_nms(GOOD, SCORES, np.nan, 0.5), "iou_threshold is NaN"),
    (lambda: multiclass_nms(GOOD, SCORES[:, None], np.nan, 0.5, 3, 3), "score_threshold is NaN"),
    (lambda: multiclass_nms(GOOD, SCORES[:, None], 0.0, np.nan, 3, 3), "iou_threshold is NaN"),
    (lambda: soft_nms(GOOD, SCORES, 0.5, 0.5, "linear", np.nan, 3), "score_threshold is NaN"),
    (lambda: nms(GOOD, SCORES, 1.5, 3), r"iou_threshold must be in \[0, 1\]; got 1.5"),
])
def test_nan_thresholds_raise_on_concrete_input(call, message):
  with pytest.raises(InvalidInputError, match=message):
    call()


def test_traced_nan_thresholds_are_documented_behaviour():
  # a NaN iou_threshold suppresses nothing (iou > NaN is False): the top boxes by score
  idx, ok = jax.jit(lambda t: nms(GOOD, SCORES, t, 3))(np.float32(np.nan))
  assert idx[ok].tolist() == [0, 1, 2]
  # a NaN score_threshold keeps nothing (score > NaN is False)
  out = jax.jit(lambda t: multiclass_nms(GOOD, SCORES[:, None], t, 0.5, 3, 3))(np.nan)
  assert not np.asarray(out[3]).any()
  out = jax.jit(lambda t: soft_nms(GOOD, SCORES, 0.5, 0.5, score_threshold=t))(np.nan)
  assert not np.asarray(out[2]).any()


# ------------------------------------------------------------------------------------------
# batched_nms


def test_batched_nms_matches_numpy_class_aware_greedy():
  rng = np.random.default_rng(10)
  b, s, v, thr = nms_batch(10, 128, 64)
  cls = rng.integers(0, 4, (128, 64)).astype(np.int32)
  fn = jax.jit(jax.vmap(lambda b, s, c, t, v: batched_nms(b, s, c, t, 30, v)))
  idx, ok = (np.asarray(x) for x in fn(b, s, cls, thr, v))
  bad = [i for i in range(128)
         if idx[i][ok[i]].tolist() != ref_nms(b[i], s[i], thr[i], v[i], cls[i])[:30]]
  assert not bad, bad[:5]


# ------------------------------------------------------------------------------------------
# multiclass_nms


def multiclass_batch(seed, count, size, classes, per_class_boxes=False, tied=True):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    b, _, v = random_case(rng, size)
    if per_class_boxes:
      b = np.stack([random_case(rng, size)[0] for _ in range(classes)], axis=1)
    if tied and rng.uniform() < 0.5:
      s = rng.integers(0, 5, (size, classes)).astype(np.float32) / 4
    else:
      s = rng.uniform(0, 1, (size, classes)).astype(np.float32)
    out.append((b, s, v))
  return (np.stack(x) for x in zip(*out, strict=True))


def check_multiclass(b, s, v, sthr, thr, per_class, total, out):
  ob, os_, oc, ov = (np.asarray(x) for x in out)
  bad = []
  for i in range(len(s)):
    want = ref_multiclass(b[i], s[i], sthr, thr[i], per_class, total, v[i])
    k = len(want)
    got_box = [(ob[i][j], os_[i][j], oc[i][j]) for j in range(k)]
    exp = [((b[i][n] if b.ndim == 3 else b[i][n, c]), s[i][n, c], c) for n, c in want]
    same = ov[i].sum() == k and np.all(ov[i][:k]) and all(
        np.array_equal(g[0], e[0]) and g[1] == e[1] and g[2] == e[2]
        for g, e in zip(got_box, exp, strict=True))
    same &= np.all(ob[i][k:] == 0) and np.all(os_[i][k:] == 0) and np.all(oc[i][k:] == 0)
    if not same:
      bad.append(i)
  assert not bad, bad[:5]


def test_multiclass_nms_matches_numpy_reference_with_ties():
  b, s, v = multiclass_batch(20, 128, 32, 4)
  thr = np.array([THRESHOLDS[i % len(THRESHOLDS)] for i in range(128)], np.float32)
  fn = jax.jit(jax.vmap(lambda b, s, t, v: multiclass_nms(b, s, 0.25, t, 5, 12, v)))
  check_multiclass(b, s, v, 0.25, thr, 5, 12, fn(b, s, thr, v))


def test_multiclass_nms_per_class_boxes():
  b, s, v = multiclass_batch(21, 32, 16, 3, per_class_boxes=True)
  thr = np.full(32, 0.45, np.float32)
  fn = jax.jit(jax.vmap(lambda b, s, v: multiclass_nms(b, s, 0.1, 0.45, 4, 9, v)))
  check_multiclass(b, s, v, 0.1, thr, 4, 9, fn(b, s, v))


def test_multiclass_nms_needs_more_candidates_than_the_first_round():
  # 300 identical boxes in 2 classes: every candidate after the first of each class is
  # suppressed, so the first round of candidates is exhausted before max_total are kept.
  rng = np.random.default_rng(22)
  b = np.tile(np.array([[0, 0, 10, 10]], np.float32), (300, 1))
  b[250:] += 50  # a second object late in index order
  s = rng.uniform(0.2, 1, (300, 2)).astype(np.float32)
  s[250:] = rng.uniform(0.1, 0.15, (50, 2))
  out = jax.jit(lambda b, s: multiclass_nms(b, s, 0.0, 0.5, 10, 100))(b, s)
  check_multiclass(b[None], s[None], np.ones((1, 300), bool), 0.0, [0.5], 10, 100,
                   [x[None] for x in out])
  assert int(out[3].sum()) == 4


# ------------------------------------------------------------------------------------------
# soft_nms


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_matches_numpy_paper_algorithm(method):
  rng = np.random.default_rng(30)
  b, _, v, thr = nms_batch(30, 64, 32)
  s = rng.uniform(0, 1, (64, 32)).astype(np.float32)  # distinct: decayed ties are fragile
  fn = jax.jit(jax.vmap(lambda b, s, t, v: soft_nms(b, s, t, 0.5, method, 0.05, 20, v)))
  idx, sc, ok = (np.asarray(x) for x in fn(b, s, thr, v))
  for i in range(64):
    want_idx, want_sc = ref_soft_nms(b[i], s[i], thr[i], 0.5, method, 0.05, 20, v[i])
    assert idx[i][ok[i]].tolist() == want_idx
    np.testing.assert_allclose(sc[i][ok[i]], want_sc, rtol=0, atol=1e-6)
    assert np.all(idx[i][~ok[i]] == -1) and np.all(sc[i][~ok[i]] == 0)


# ------------------------------------------------------------------------------------------
# TensorFlow


def _tf():
  return pytest.importorskip("tensorflow")


def to_tf(boxes):
  return boxes[..., [1, 0, 3, 2]]


def test_nms_matches_tensorflow():
  tf = _tf()
  # TF's rule, checked: IoU exactly 0.5 is kept at threshold 0.5 (strict >), dropped at 0.49.
  pair = np.array([[0, 0, 2, 1], [0, 0, 1, 1]], np.float32)
  two = np.array([1.0, 0.9], np.float32)
  assert tf.image.non_max_suppression(pair, two, 2, 0.5).numpy().tolist() == [0, 1]
  assert tf.image.non_max_suppression(pair, two, 2, 0.49).numpy().tolist() == [0]
  b, s, v, thr = nms_batch(40, 64, 64)
  rng = np.random.default_rng(40)
  s = rng.uniform(0, 1, s.shape).astype(np.float32)  # TF ranks equal scores the same, but
  idx, ok = (np.asarray(x) for x in batched_fn(64, 20)(b, s, thr, v))  # keep ties to NumPy
  for i in range(64):
    keep = np.flatnonzero(v[i])
    want = tf.image.non_max_suppression(to_tf(b[i][keep]), s[i][keep], 20,
                                        iou_threshold=thr[i]).numpy()
    assert idx[i][ok[i]].tolist() == keep[want].tolist(), i


def test_multiclass_nms_matches_tensorflow_combined():
  tf = _tf()
  b, s, v = multiclass_batch(50, 32, 48, 5, tied=False)
  v[:] = True
  fn = jax.jit(jax.vmap(lambda b, s: multiclass_nms(b, s, 0.3, 0.45, 6, 20)))
  ob, os_, oc, ov = (np.asarray(x) for x in fn(b, s))
  rb, rs, rc, rn = (x.numpy() for x in tf.image.combined_non_max_suppression(
      to_tf(b)[:, :, None, :], s, 6, 20, iou_threshold=0.45, score_threshold=0.3,
      clip_boxes=False))
  assert np.array_equal(ov.sum(1), rn)
  assert np.array_equal(to_tf(ob), rb) and np.array_equal(os_, rs)
  assert np.array_equal(oc, rc.astype(np.int32))
  # TF keeps strictly above the score threshold: a score equal to it is dropped.
  _, _, _, n_tf = tf.image.combined_non_max_suppression(
      np.array([[[[0, 0, 1, 1]], [[0, 5, 1, 6]]]], np.float32),
      np.array([[[0.5], [0.3]]], np.float32), 10, 10, score_threshold=0.3, clip_boxes=False)
  ours = jax.jit(lambda b, s: multiclass_nms(b, s, 0.3, 0.5, 10, 10))(
      np.array([[0, 0, 1, 1], [5, 0, 6, 1]], np.float32), np.array([[0.5], [0.3]], np.float32))
  assert int(n_tf[0]) == int(ours[3].sum()) == 1


def test_soft_nms_gaussian_matches_tensorflow():
  tf = _tf()
  rng = np.random.default_rng(60)
  b, _, _, _ = nms_batch(60, 32, 32)
  s = rng.uniform(0, 1, (32, 32)).astype(np.float32)
  fn = jax.jit(jax.vmap(lambda b, s: soft_nms(b, s, 0.5, 0.5, "gaussian", 0.05, 20)))
  idx, sc, ok = (np.asarray(x) for x in fn(b, s))
  for i in range(32):
    # TF ignores iou_threshold in Soft-NMS mode (checked: 0.0 and 1.0 give the same).
    want_i, want_s = tf.image.non_max_suppression_with_scores(
        to_tf(b[i]), s[i], 20, iou_threshold=0.5, score_threshold=0.05, soft_nms_sigma=0.5)
    assert idx[i][ok[i]].tolist() == want_i.numpy().tolist(), i
    np.testing.assert_allclose(sc[i][ok[i]], want_s.numpy(), rtol=0, atol=1e-6)
