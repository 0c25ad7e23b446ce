"""jaxcv.ops.boxes against hand-computed values and a float64 NumPy loop (no torch needed):
IoU family, format round-trips, clipping, degenerate boxes, jit/vmap/grad, bad input."""
from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from jaxcv.ops import boxes as B

N, M = 12, 9


def random_boxes(rng, n):
  xy = rng.uniform(0, 40, (n, 2))
  wh = rng.uniform(0.5, 25, (n, 2))
  return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def numpy_ious(a, b, eps=1e-7):
  """(iou, giou, diou, ciou) [N, M] by a float64 loop over pairs, from the papers' formulas."""
  out = np.zeros((4, len(a), len(b)))
  for i, p in enumerate(a.astype(np.float64)):
    for j, q in enumerate(b.astype(np.float64)):
      iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
      ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
      inter = iw * ih
      union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
      iou = inter / union
      cw = max(p[2], q[2]) - min(p[0], q[0])
      ch = max(p[3], q[3]) - min(p[1], q[1])
      giou = iou - (cw * ch - union) / (cw * ch)
      d2 = (((p[0] + p[2]) / 2 - (q[0] + q[2]) / 2) ** 2
            + ((p[1] + p[3]) / 2 - (q[1] + q[3]) / 2) ** 2)
      diou = iou - d2 / (cw ** 2 + ch ** 2 + eps)
      v = 4 / math.pi ** 2 * (math.atan((p[2] - p[0]) / (p[3] - p[1]))
                              - math.atan((q[2] - q[0]) / (q[3] - q[1]))) ** 2
      ciou = diou - v / (1 - iou + v + eps) * v
      out[:, i, j] = iou, giou, diou, ciou
  return out


PAIRWISE = [jax.jit(f) for f in (B.box_iou, B.generalized_box_iou, B.distance_box_iou,
                                 B.complete_box_iou)]


def test_pairwise_match_numpy_loop():
  worst = 0.0
  for seed in range(4):
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, N), random_boxes(rng, M)
    b[0] = a[0]
    want = numpy_ious(a, b)
    for k, fn in enumerate(PAIRWISE):
      got = np.asarray(fn(a, b))
      assert got.shape == (N, M)
      worst = max(worst, float(np.abs(got - want[k]).max()))
  assert worst <= 1e-5


def test_hand_computed_values():
  a = np.array([[0, 0, 2, 2]], np.float32)
  b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 0, 6, 2], [2, 0, 4, 2]], np.float32)
  iou = np.asarray(B.box_iou(a, b))[0]
  np.testing.assert_allclose(iou, [1 / 7, 1.0, 0.0, 0.0], atol=1e-7)  # touching: IoU 0
  giou = np.asarray(B.generalized_box_iou(a, b))[0]
  # enclosing boxes 3x3, 2x2, 6x2, 4x2; unions 7, 4, 6, 8
  np.testing.assert_allclose(giou, [1 / 7 - 2 / 9, 1.0, -6 / 12, 0.0], atol=1e-6)
  diou = np.asarray(B.distance_box_iou(a, b, eps=0.0))[0]
  # centre distances^2 2, 0, 20.25, 4; enclosing diagonals^2 18, 8, 40, 20
  np.testing.assert_allclose(diou, [1 / 7 - 2 / 18, 1.0, -20.25 / 40, -4 / 20], atol=1e-6)
  ciou = np.asarray(B.complete_box_iou(a, b))[0]
  v = 4 / math.pi ** 2 * (math.atan(1.0) - math.atan(0.5)) ** 2  # 2x2 against 1x2
  want = [diou[0], 1.0, diou[2] - v / (1 + v) * v, diou[3]]
  np.testing.assert_allclose(ciou, want, atol=1e-6)


def test_elementwise_is_diagonal_of_pairwise():
  rng = np.random.default_rng(5)
  a, b = random_boxes(rng, N), random_boxes(rng, N)
  pairs = [(B.elementwise_box_iou, B.box_iou), (B.elementwise_generalized_box_iou,
                                                B.generalized_box_iou),
           (B.elementwise_distance_box_iou, B.distance_box_iou),
           (B.elementwise_complete_box_iou, B.complete_box_iou)]
  for elementwise, pairwise in pairs:
    got, full = jax.jit(lambda a, b, e=elementwise, p=pairwise: (e(a, b), p(a, b)))(a, b)
    np.testing.assert_allclose(got, np.diagonal(full), rtol=0, atol=1e-6)


def test_leading_dims_broadcast_and_vmap():
  rng = np.random.default_rng(6)
  a = np.stack([random_boxes(rng, N) for _ in range(3)])       # [3, N, 4]
  b = random_boxes(rng, M)[None]                               # [1, M, 4]
  giou = jax.jit(B.generalized_box_iou)
  got = np.asarray(giou(a, b))
  assert got.shape == (3, N, M)
  want = numpy_ious(np.concatenate(a), b[0])[1]  # [3N, M]
  np.testing.assert_allclose(got.reshape(3 * N, M), want, rtol=0, atol=1e-5)
  vmapped = jax.jit(jax.vmap(B.generalized_box_iou, in_axes=(0, None)))(a, b[0])
  np.testing.assert_allclose(vmapped, got, rtol=0, atol=1e-6)


def test_box_convert_round_trips_and_values():
  rng = np.random.default_rng(7)
  boxes = random_boxes(rng, N)
  for fmt in ("xywh", "cxcywh"):
    back = B.box_convert(B.box_convert(boxes, "xyxy", fmt), fmt, "xyxy")
    np.testing.assert_allclose(back, boxes, rtol=0, atol=1e-5)
  np.testing.assert_allclose(B.box_convert(np.array([1, 2, 5, 8.0]), "xyxy", "cxcywh"),
                             [3, 5, 4, 6])
  np.testing.assert_allclose(B.box_convert(np.array([1, 2, 4, 6.0]), "xywh", "xyxy"),
                             [1, 2, 5, 8])
  np.testing.assert_allclose(B.box_convert(np.array([3, 5, 4, 6.0]), "cxcywh", "xywh"),
                             [1, 2, 4, 6])


def test_area_clip_and_small_boxes():
  boxes = np.array([[-5, 2, 8, 30], [1, 1, 3, 4], [0, 0, 0, 7]], np.float32)
  np.testing.assert_allclose(B.box_area(boxes), [13 * 28, 6, 0])
  np.testing.assert_allclose(B.clip_boxes(boxes, 20, 6), [[0, 2, 6, 20], [1, 1, 3, 4],
                                                          [0, 0, 0, 7]])
  # per-image sizes under jit: boxes [2, 3, 4], sizes [2, 1]
  per_image = jax.jit(B.clip_boxes)(np.stack([boxes, boxes]), np.array([[20], [3]]),
                                    np.array([[6], [2]]))
  np.testing.assert_allclose(per_image[1, 0], [0, 2, 2, 3])
  np.testing.assert_array_equal(B.small_boxes_mask(boxes, 2.0), [True, True, False])
  np.testing.assert_array_equal(B.small_boxes_mask(boxes, 3.0), [True, False, False])


def test_degenerate_boxes_give_no_nan_values_or_gradients():
  point = np.array([[3, 3, 3, 3]], np.float32)
  line = np.array([[3, 3, 3, 9]], np.float32)
  boxes = np.concatenate([point, line, np.array([[0, 0, 4, 4]], np.float32)])
  fns = (B.box_iou, B.generalized_box_iou, B.distance_box_iou, B.complete_box_iou)
  # one compiled function: each IoU's values and its gradient
  outs = jax.jit(lambda x: [jax.value_and_grad(lambda y, f=f: f(y, y).sum())(x) for f in fns])(
      boxes)
  for values, grads in outs:
    assert np.isfinite(np.asarray(values)) and np.isfinite(np.asarray(grads)).all()
  iou = np.asarray(B.box_iou(boxes, boxes))
  assert iou[0, 0] == 0 and iou[1, 1] == 0 and iou[2, 2] == 1  # zero union -> 0
  # giou of a point with itself: IoU 0 and an empty enclosing box -> 0
  assert np.asarray(B.generalized_box_iou(point, point))[0, 0] == 0


def test_bad_input_raises():
  with pytest.raises(ValueError, match=r"shape \[\.\.\., 4\]; got shape \(3, 5\)"):
    B.box_iou(np.zeros((3, 5)), np.zeros((2, 4)))
  with pytest.raises(ValueError, match=r"boxes2 must have shape"):
    B.elementwise_box_iou(np.zeros((3, 4)), np.zeros((3, 3)))
  with pytest.raises(ValueError, match="pairwise box functions take"):
    B.complete_box_iou(np.zeros(4), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="mismatched shapes"):
    B.elementwise_generalized_box_iou(np.zeros((3, 4)), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="mismatched shapes"):
    B.box_iou(np.zeros((2, 3, 4)), np.zeros((3, 2, 4)))
  with pytest.raises(ValueError, match="unknown box format 'xyzz'; known formats: xyxy"):
    B.box_convert(np.zeros((2, 4)), "xyxy", "xyzz")
  with pytest.raises(ValueError, match="width must be >= 0"):
    B.clip_boxes(np.zeros((2, 4)), 10, -1)
  with pytest.raises(ValueError, match="got shape"):
    B.box_area(np.zeros((2, 2)))
  with pytest.raises(ValueError, match="got shape"):
    B.small_boxes_mask(np.zeros((2, 5)), 1.0)
