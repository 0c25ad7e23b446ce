"""Property-based tests (hypothesis) of the box ops, NMS and COCO evaluation.

- Box ops: `box_iou` is symmetric, in [0, 1] and equal to a float64 NumPy loop; GIoU lies in
  [-1, IoU]; `box_convert` round-trips through xywh and cxcywh.
- NMS: on random valid inputs `nms` / `batched_nms` equal a NumPy greedy loop written here
  (the project's semantics: IoU > threshold suppresses, ties in score go to the lower index
  first, float32 IoU in torchvision's operation order, a traced threshold compared as the
  float32 it is), with padding rows holding garbage. Invalid rows (inverted, NaN, inf boxes,
  NaN scores) raise the named errors on concrete inputs and are treated as padding under jit.
- `coco.evaluate` equals pycocotools' COCOeval stats on random small GT / detection sets
  (crowds, ties, areas on the range edges), and corrupted sets raise the named errors.

Cost: fixed padded shapes (N <= 32 boxes padded to 32 with a valid mask) and functions
jitted once at module level, so XLA compiles once per function; derandomized (the same
cases on every run, no example database). `COUNTS` records how many cases each test ran to
the end (printed at the end of the module with `pytest -s`; `--hypothesis-show-statistics`
gives hypothesis' own count). Subnormal floats are left out: XLA's CPU backend flushes them
to 0 (see jaxcv/ops/nms.py), NumPy does not.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import io

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxcv.metrics import coco
from jaxcv.ops import boxes as B
from jaxcv.ops.boxes import InvalidBoxesError
from jaxcv.ops.common import InvalidInputError
from jaxcv.ops.nms import batched_nms, nms

N = 32  # every case is padded to N rows: one compilation per function
F32 = np.float32
COUNTS: collections.Counter = collections.Counter()

_BASE = dict(deadline=None, derandomize=True, database=None, print_blob=True,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CHEAP = settings(max_examples=150, **_BASE)
BOXES = settings(max_examples=100, **_BASE)
COCO = settings(max_examples=30, **_BASE)


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
  yield
  print("\nhypothesis cases run:", dict(sorted(COUNTS.items())))


# ------------------------------------------------------------------------------------------
# Strategies

# A grid of halves makes equal coordinates, duplicate boxes and IoUs exactly on thresholds
# likely; free float32 values (normal ones: see `score`) cover the rest. Sizes are 0 or
# >= 1/16 (no float32 underflow of areas, which a float64 reference would not share).
grid = st.integers(0, 64).map(lambda v: v / 2)
coord = st.one_of(grid, st.floats(0, 32, width=32, allow_subnormal=False))
size = st.one_of(st.integers(0, 24).map(lambda v: v / 2), st.just(0.0),
                 st.floats(0.0625, 16, width=32, allow_subnormal=False))
xyxy = st.tuples(coord, coord, size, size).map(lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3]))
# No subnormal scores: XLA CPU flushes them to 0, so they tie with 0 (documented in nms.py).
score = st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
                  st.floats(0, 1, width=32, allow_subnormal=False))
threshold = st.one_of(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]),
                      st.floats(0, 1, width=32, allow_subnormal=False))
garbage = st.sampled_from([(np.nan, 0, 1, 1), (5, 5, 1, 1), (0, 0, np.inf, 3), (1, 2, 3, 4)])


@st.composite
def nms_case(draw, classes=False, min_real=0):
  """Padded `[N, 4]` boxes, scores, valid, class ids: `min_real` <= n <= N real rows in
  random positions, the other rows garbage (NaN, inverted, high scores) with valid False."""
  n = draw(st.integers(min_real, N))
  boxes = np.zeros((N, 4), F32)
  scores = np.full(N, 10.0, F32)  # padding outranks everything: it must be ignored
  valid = np.zeros(N, bool)
  rows = draw(st.permutations(range(N)))[:n]
  for i in range(N):
    if i in rows:
      boxes[i], scores[i], valid[i] = draw(xyxy), draw(score), True
    else:
      boxes[i] = draw(garbage)
  cls = np.asarray(draw(st.lists(st.integers(0, 3), min_size=N, max_size=N)), np.int32)
  return boxes, scores, valid, (cls if classes else None), draw(threshold)


def ref_iou_row(b, i):
  """float32 IoU of box i with every box, torchvision's formula and operation order."""
  with np.errstate(invalid="ignore", divide="ignore"):  # padding rows hold NaN and inf
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = np.maximum(np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]), F32(0))
    h = np.maximum(np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]), F32(0))
    inter = w * h
    return (inter / (area[i] + area - inter)).astype(F32)


def ref_nms(boxes, scores, valid, thr, classes=None):
  """The sequential greedy loop: valid rows by (-score, index); a kept box suppresses every
  later one (of its class) whose float32 IoU with it is > float32(thr)."""
  order = sorted(np.flatnonzero(valid).tolist(), key=lambda i: (-scores[i], i))
  suppressed = np.zeros(len(scores), bool)
  keep = []
  for i in order:
    if suppressed[i]:
      continue
    keep.append(i)
    hit = ref_iou_row(boxes, i) > F32(thr)  # NaN (two zero-area boxes) > t is False
    if classes is not None:
      hit &= classes == classes[i]
    suppressed |= hit
  return keep


def ref_iou_matrix(a, b):
  """float64 IoU `[N, M]` from the definition (0 where the union is 0)."""
  p, q = a.astype(np.float64)[:, None], b.astype(np.float64)[None]
  iw = np.maximum(0.0, np.minimum(p[..., 2], q[..., 2]) - np.maximum(p[..., 0], q[..., 0]))
  ih = np.maximum(0.0, np.minimum(p[..., 3], q[..., 3]) - np.maximum(p[..., 1], q[..., 1]))
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
  union = area(p) + area(q) - iw * ih
  return np.where(union > 0, iw * ih / np.where(union > 0, union, 1.0), 0.0)


NMS = jax.jit(lambda b, s, v, t: nms(b, s, t, N, v))
BATCHED = jax.jit(lambda b, s, c, v, t: batched_nms(b, s, c, t, N, v))
IOU = jax.jit(lambda a, b: (B.box_iou(a, b), B.box_iou(b, a), B.generalized_box_iou(a, b)))
CONVERT = jax.jit(lambda b: [B.box_convert(B.box_convert(b, "xyxy", f), f, "xyxy")
                             for f in ("xywh", "cxcywh")])


def kept(out):
  idx, ok = (np.asarray(x) for x in out)
  assert ok.tolist() == sorted(ok.tolist(), reverse=True)  # valid entries are a prefix
  assert np.all(idx[~ok] == -1)
  return idx[ok].tolist()


# ------------------------------------------------------------------------------------------
# Box ops


def padded(boxes):
  """`[N, 4]` float32: the drawn boxes, then zero-area boxes at the origin."""
  out = np.zeros((N, 4), F32)
  out[:len(boxes)] = boxes
  return out


box_list = st.lists(xyxy, min_size=1, max_size=N)


@BOXES
@given(box_list, box_list)
def test_box_iou_symmetric_bounded_and_equal_to_numpy(a, b):
  a, b = padded(a), padded(b)
  iou, iou_t, giou = (np.asarray(x) for x in IOU(a, b))
  np.testing.assert_array_equal(iou, iou_t.T)
  assert np.all((iou >= 0) & (iou <= 1))
  np.testing.assert_allclose(iou, ref_iou_matrix(a, b), rtol=0, atol=1e-5)
  assert np.all((giou >= -1 - 1e-6) & (giou <= iou + 1e-6))
  COUNTS["box_iou"] += 1  # last: cases hypothesis abandons (invalid) are not counted


@BOXES
@given(box_list)
def test_box_convert_round_trips(boxes):
  boxes = padded(boxes)
  for back in CONVERT(boxes):
    np.testing.assert_allclose(np.asarray(back), boxes, rtol=0, atol=1e-5)
  COUNTS["box_convert"] += 1


# ------------------------------------------------------------------------------------------
# NMS


@CHEAP
@given(nms_case())
def test_nms_equals_numpy_greedy(case):
  boxes, scores, valid, _, thr = case
  assert kept(NMS(boxes, scores, valid, F32(thr))) == ref_nms(boxes, scores, valid, thr)
  COUNTS["nms"] += 1


@CHEAP
@given(nms_case(classes=True))
def test_batched_nms_equals_numpy_class_aware_greedy(case):
  boxes, scores, valid, cls, thr = case
  want = ref_nms(boxes, scores, valid, thr, cls)
  assert kept(BATCHED(boxes, scores, cls, valid, F32(thr))) == want
  COUNTS["batched_nms"] += 1


FAULTS = ["x2 < x1", "y2 < y1", "NaN coordinate", "inf coordinate", "NaN score"]


@pytest.mark.parametrize("fault", FAULTS)  # each fault its own cases
@settings(max_examples=30, **_BASE)
@given(nms_case(classes=True, min_real=1), st.data())
def test_nms_invalid_rows_raise_when_concrete_and_are_padding_under_jit(fault, case, data):
  boxes, scores, valid, cls, thr = case
  i = int(data.draw(st.sampled_from(np.flatnonzero(valid).tolist())))
  boxes, scores = boxes.copy(), scores.copy()
  if fault == "x2 < x1":
    boxes[i, 2] = boxes[i, 0] - data.draw(st.floats(0.0625, 10, width=32))
  elif fault == "y2 < y1":
    boxes[i, 3] = boxes[i, 1] - data.draw(st.floats(0.0625, 10, width=32))
  elif fault == "NaN score":
    scores[i] = np.nan
  else:
    boxes[i, data.draw(st.integers(0, 3))] = np.nan if fault == "NaN coordinate" else np.inf
  if fault == "NaN score":
    error, match = InvalidInputError, rf"scores\[{i}\] is NaN"
  else:
    error, match = InvalidBoxesError, rf"boxes\[{i}\] = .* is not a valid \(x1, y1, x2, y2\)"
  with pytest.raises(error, match=match):
    nms(boxes, scores, thr, N, valid)
  with pytest.raises(error, match=match):
    batched_nms(boxes, scores, cls, thr, N, valid)
  # under jit nothing raises: the row is treated as padding
  as_padding = valid.copy()
  as_padding[i] = False
  assert kept(NMS(boxes, scores, valid, F32(thr))) == ref_nms(boxes, scores, as_padding, thr)
  COUNTS[f"nms_invalid ({fault})"] += 1


@CHEAP
@given(st.lists(st.floats(-4, 4, width=32), min_size=N, max_size=N))
def test_float_class_ids_are_an_error(ids):
  boxes = np.tile(np.array([[0, 0, 1, 1]], F32), (N, 1))
  with pytest.raises(ValueError, match="class_ids must be integers"):
    batched_nms(boxes, np.ones(N, F32), np.asarray(ids, F32), 0.5, N)
  COUNTS["float_class_ids"] += 1


# ------------------------------------------------------------------------------------------
# COCO evaluation against pycocotools


coco_box = st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40),
                     st.integers(0, 40)).map(lambda b: [b[0] / 2, b[1] / 2, b[2] / 2, b[3] / 2])
coco_score = st.one_of(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]), st.floats(0, 1))


@st.composite
def coco_case(draw, min_gt=0):
  """A small gt dict and result list: 1-3 images, 1-3 categories, up to 8 GTs (crowds, areas
  on the 32^2 / 96^2 edges), 1-12 results (copies or jitters of GTs, random boxes, ties)."""
  img_ids = draw(st.lists(st.integers(1, 50), min_size=1, max_size=3, unique=True))
  cat_ids = draw(st.lists(st.integers(1, 9), min_size=1, max_size=3, unique=True))
  anns = []
  for k in range(draw(st.integers(min_gt, 8))):
    b = draw(coco_box)
    area = draw(st.sampled_from(["wh", 32.0 ** 2, 96.0 ** 2, "wh"]))
    anns.append({"id": k + 1, "image_id": draw(st.sampled_from(img_ids)),
                 "category_id": draw(st.sampled_from(cat_ids)), "bbox": b,
                 "area": b[2] * b[3] if area == "wh" else area,
                 "iscrowd": int(draw(st.integers(0, 5)) == 0)})
  dets = []
  for _ in range(draw(st.integers(1, 12))):
    if anns and draw(st.booleans()):
      a = draw(st.sampled_from(anns))
      dx, dy = draw(st.integers(-2, 2)), draw(st.integers(-2, 2))
      b = [a["bbox"][0] + dx / 2, a["bbox"][1] + dy / 2, a["bbox"][2], a["bbox"][3]]
      img, cat = a["image_id"], a["category_id"]
    else:
      b, img, cat = draw(coco_box), draw(st.sampled_from(img_ids)), draw(st.sampled_from(cat_ids))
    dets.append({"image_id": img, "category_id": cat, "bbox": b, "score": draw(coco_score)})
  gt = {"images": [{"id": i, "height": 64, "width": 64} for i in img_ids],
        "annotations": anns, "categories": [{"id": c} for c in cat_ids]}
  return gt, dets


def pycoco_stats(gt, dets):
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  with contextlib.redirect_stdout(io.StringIO()):
    cg = COCO()
    cg.dataset = copy.deepcopy(gt)
    cg.createIndex()
    e = COCOeval(cg, cg.loadRes(copy.deepcopy(dets)), "bbox")
    e.evaluate()
    e.accumulate()
    e.summarize()
  return np.asarray(e.stats)


@COCO
@given(coco_case())
def test_coco_evaluate_equals_pycocotools(case):
  pytest.importorskip("pycocotools")
  gt, dets = case
  np.testing.assert_allclose(coco.evaluate(gt, dets), pycoco_stats(gt, dets), rtol=0,
                             atol=1e-12)
  COUNTS["coco_evaluate"] += 1


COCO_FAULTS = {  # name: (error, message)
    "inverted gt box": (coco.GroundTruthError, r"gt\['annotations'\]\[\d+\] .*w, h >= 0"),
    "NaN gt box": (coco.GroundTruthError, r"bbox \[.*nan.*\] must be \[x, y, w, h\], finite"),
    "NaN gt area": (coco.GroundTruthError, r"area nan must be a finite number >= 0"),
    "duplicate annotation id": (coco.GroundTruthError, r"annotation id \d+ appears 2 times"),
    "duplicate image id": (coco.GroundTruthError, r"image id \d+ appears 2 times"),
    "gt on an unknown image": (coco.GroundTruthError, r"image_id 999 is not in gt\['images'\]"),
    "missing score": (coco.DetectionError, r"dets\[\d+\] .*has no 'score'"),
    "NaN score": (coco.DetectionError, r"score nan must be finite"),
    "inverted detection box": (coco.DetectionError, r"dets\[\d+\] .*w, h >= 0"),
    "detection on an unknown category": (coco.DetectionError, r"category_id 99 is not in"),
}


@pytest.mark.parametrize("fault", sorted(COCO_FAULTS))
@settings(max_examples=12, **_BASE)
@given(coco_case(min_gt=1), st.data())
def test_coco_corrupted_inputs_raise_named_errors(fault, case, data):
  gt, dets = copy.deepcopy(case)
  anns = gt["annotations"]
  a = data.draw(st.sampled_from(anns))
  d = data.draw(st.sampled_from(dets))
  if fault == "inverted gt box":
    a["bbox"][data.draw(st.sampled_from([2, 3]))] = -data.draw(st.floats(0.5, 20))
  elif fault == "NaN gt box":
    a["bbox"][data.draw(st.integers(0, 3))] = float("nan")
  elif fault == "NaN gt area":
    a["area"] = float("nan")
  elif fault == "duplicate annotation id":
    anns.append(dict(copy.deepcopy(a)))
  elif fault == "duplicate image id":
    gt["images"].append(dict(gt["images"][0]))
  elif fault == "gt on an unknown image":
    a["image_id"] = 999
  elif fault == "missing score":
    del d["score"]
  elif fault == "NaN score":
    d["score"] = float("nan")
  elif fault == "inverted detection box":
    d["bbox"][2] = -1.0
  else:
    d["category_id"] = 99
  error, match = COCO_FAULTS[fault]
  with pytest.raises(error, match=match):
    coco.evaluate(gt, dets)
  COUNTS[f"coco_invalid ({fault})"] += 1
