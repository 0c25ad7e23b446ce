"""jaxcv.ops.boxes against torchvision.ops on random boxes with identical, disjoint, nested
and touching pairs: max abs error <= 1e-5 in float32. Skipped where torch is missing."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from torch_reference import import_torchvision

from jaxcv.ops import boxes as B

torch, torchvision = import_torchvision()
tvops = torchvision.ops

N, M = 24, 16  # fixed shapes: each jitted function below compiles once
ATOL = 1e-5


def random_boxes(rng, n, lo=0.0, hi=60.0, min_wh=0.5, max_wh=30.0):
  xy = rng.uniform(lo, hi, (n, 2))
  wh = rng.uniform(min_wh, max_wh, (n, 2))
  return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def box_pairs(seed):
  """boxes1 [N, 4], boxes2 [M, 4]: random, plus special pairs on the diagonal (i, i)."""
  rng = np.random.default_rng(seed)
  a, b = random_boxes(rng, N), random_boxes(rng, M)
  b[0] = a[0]                                                   # identical
  b[1] = a[1] + np.float32(100.0)                               # disjoint, far apart
  b[2] = a[2] + np.array([1, 1, -1, -1], np.float32) * 0.25 * np.tile(a[2, 2:] - a[2, :2], 2)
  b[3] = [a[3, 2], a[3, 1], a[3, 2] + 5, a[3, 3]]               # touching at x = x2
  b[4] = [a[4, 0], a[4, 3], a[4, 2], a[4, 3] + 7]               # touching at y = y2
  b[5] = [a[5, 0] - 3, a[5, 1] - 2, a[5, 2] + 4, a[5, 3] + 1]   # a[5] nested in b[5]
  a[6] = a[7]                                                   # duplicate rows
  b[7] = [a[7, 0] + 1, a[7, 1], a[7, 2] + 1, a[7, 3]]           # shifted copy
  b[8] = [a[8, 0], a[8, 1], a[8, 0] + 2 * (a[8, 2] - a[8, 0]), a[8, 3]]  # same corner, wider
  return a, b


PAIRWISE = {
    "box_iou": (jax.jit(B.box_iou), tvops.box_iou),
    "generalized_box_iou": (jax.jit(B.generalized_box_iou), tvops.generalized_box_iou),
    "distance_box_iou": (jax.jit(B.distance_box_iou), tvops.distance_box_iou),
    "complete_box_iou": (jax.jit(B.complete_box_iou), tvops.complete_box_iou),
}


@pytest.mark.parametrize("name", sorted(PAIRWISE))
def test_pairwise_matches_torchvision(name):
  ours_fn, ref_fn = PAIRWISE[name]
  worst = 0.0
  for seed in range(10):
    a, b = box_pairs(seed)
    want = ref_fn(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    got = np.asarray(ours_fn(a, b))
    assert got.shape == (N, M) and np.isfinite(want).all()
    worst = max(worst, float(np.abs(got - want).max()))
  assert worst <= ATOL, f"{name}: max abs err {worst}"


@pytest.mark.parametrize("name", sorted(PAIRWISE))
def test_pairwise_leading_dims_match_torchvision(name):
  ours_fn, ref_fn = PAIRWISE[name]
  pairs = [box_pairs(seed) for seed in (20, 21)]
  a = np.stack([p[0] for p in pairs])
  b = np.stack([p[1] for p in pairs])
  want = ref_fn(torch.from_numpy(a), torch.from_numpy(b)).numpy()
  got = np.asarray(ours_fn(a, b))
  assert got.shape == (2, N, M)
  np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_eps_argument_matches_torchvision():
  a, b = box_pairs(30)
  for eps in (1e-3, 0.5):
    np.testing.assert_allclose(
        B.distance_box_iou(a, b, eps=eps),
        tvops.distance_box_iou(torch.from_numpy(a), torch.from_numpy(b), eps=eps).numpy(),
        rtol=0, atol=ATOL)
    np.testing.assert_allclose(
        B.complete_box_iou(a, b, eps=eps),
        tvops.complete_box_iou(torch.from_numpy(a), torch.from_numpy(b), eps=eps).numpy(),
        rtol=0, atol=ATOL)


@pytest.mark.parametrize("in_fmt", B.BOX_FORMATS)
@pytest.mark.parametrize("out_fmt", B.BOX_FORMATS)
def test_box_convert_matches_torchvision(in_fmt, out_fmt):
  rng = np.random.default_rng(1)
  boxes = rng.uniform(0, 50, (3, N, 4)).astype(np.float32)
  want = tvops.box_convert(torch.from_numpy(boxes), in_fmt, out_fmt).numpy()
  np.testing.assert_allclose(B.box_convert(boxes, in_fmt, out_fmt), want, rtol=0, atol=ATOL)


def test_box_area_matches_torchvision():
  a, b = box_pairs(2)
  boxes = np.concatenate([a, b, np.zeros((2, 4), np.float32)])
  np.testing.assert_allclose(B.box_area(boxes), tvops.box_area(torch.from_numpy(boxes)).numpy(),
                             rtol=0, atol=ATOL)


def test_clip_boxes_matches_torchvision():
  rng = np.random.default_rng(3)
  boxes = random_boxes(rng, N, lo=-30, hi=60)
  for height, width in [(40, 50), (17, 90), (100, 3)]:
    want = tvops.clip_boxes_to_image(torch.from_numpy(boxes), (height, width)).numpy()
    np.testing.assert_array_equal(B.clip_boxes(boxes, height, width), want)


def test_small_boxes_mask_matches_remove_small_boxes():
  rng = np.random.default_rng(4)
  boxes = random_boxes(rng, N, min_wh=0.0, max_wh=4.0)
  boxes[0, 2:] = boxes[0, :2] + 2.0  # width and height exactly min_size: kept
  boxes[1, 2] = boxes[1, 0] + 2.0
  boxes[1, 3] = boxes[1, 1] + 1.0    # height below: removed
  for min_size in (0.0, 1.0, 2.0, 3.5):
    keep = tvops.remove_small_boxes(torch.from_numpy(boxes), min_size).numpy()
    mask = np.asarray(B.small_boxes_mask(boxes, min_size))
    np.testing.assert_array_equal(np.nonzero(mask)[0], keep)
  assert 0 in np.nonzero(np.asarray(B.small_boxes_mask(boxes, 2.0)))[0]
  assert not np.asarray(B.small_boxes_mask(boxes, 2.0))[1]
