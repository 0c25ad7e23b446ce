"""Box coding, anchors and matching against torchvision's own classes.

BoxCoder (encode/decode, weights (10, 10, 5, 5) and (1, 1, 1, 1), codes beyond the clamp,
class-specific layout), AnchorGenerator and DefaultBoxGenerator (exact equality), Matcher
(exact matches, with and without low-quality matches, ties, padded ground truth). Skipped where
torch/torchvision are not installed.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from torch_reference import import_torchvision

from jaxcv.ops import anchors, box_coder, matching

torch, torchvision = import_torchvision()
from torchvision.models.detection._utils import BoxCoder, BoxLinearCoder, Matcher
from torchvision.models.detection.anchor_utils import (
  AnchorGenerator,
  DefaultBoxGenerator,
)
from torchvision.models.detection.image_list import ImageList

N = 64  # boxes per case: one compiled shape for every random case
WEIGHTS = [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)]


def random_boxes(rng, n, scale=300.0):
  xy = rng.uniform(0, scale, (n, 2))
  wh = rng.uniform(scale / 300, scale / 2, (n, 2))
  return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@functools.cache
def jitted_encode(weights):
  return jax.jit(functools.partial(box_coder.encode_boxes, weights=weights))


@functools.cache
def jitted_decode(weights):
  return jax.jit(functools.partial(box_coder.decode_boxes, weights=weights))


@pytest.mark.parametrize("weights", WEIGHTS)
def test_encode_matches_torchvision(weights):
  rng = np.random.default_rng(0)
  coder = BoxCoder(weights)
  worst = 0.0
  for _ in range(5):
    gt, anchors_ = random_boxes(rng, N), random_boxes(rng, N)
    want = coder.encode_single(torch.from_numpy(gt), torch.from_numpy(anchors_)).numpy()
    got = np.asarray(jitted_encode(weights)(gt, anchors_))
    worst = max(worst, np.abs(got - want).max())
  assert worst <= 1e-5, worst


@pytest.mark.parametrize("normalize", [True, False])
def test_linear_coder_matches_torchvision(normalize):
  # FCOS's BoxLinearCoder: encode(reference_boxes, proposals) and decode(codes, boxes).
  rng = np.random.default_rng(3)
  coder = BoxLinearCoder(normalize_by_size=normalize)
  ref, boxes = random_boxes(rng, N), random_boxes(rng, N)
  want = coder.encode(torch.from_numpy(ref), torch.from_numpy(boxes)).numpy()
  got = np.asarray(box_coder.linear_encode(ref, boxes, normalize_by_size=normalize))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
  codes = rng.normal(size=(N, 4)).astype(np.float32)
  want = coder.decode(torch.from_numpy(codes), torch.from_numpy(ref)).numpy()
  got = np.asarray(box_coder.linear_decode(codes, ref, normalize_by_size=normalize))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(box_coder.linear_decode(box_coder.linear_encode(
      ref, boxes, normalize_by_size=normalize), ref, normalize_by_size=normalize), boxes,
      rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_decode_matches_torchvision_including_clamp(weights):
  rng = np.random.default_rng(1)
  coder = BoxCoder(weights)
  clip = coder.bbox_xform_clip
  worst_rel = 0.0
  for _ in range(5):
    # normalised coordinates keep float32 absolute errors meaningful at 1e-5
    boxes = random_boxes(rng, N, scale=1.0)
    codes = rng.normal(0, 1, (N, 4)).astype(np.float32) * np.float32(weights[0] / 5)
    # a quarter of the rows push dw, dh beyond the clamp (up to 3 x clip)
    codes[: N // 4, 2:] = rng.uniform(clip, 3 * clip, (N // 4, 2)) * np.asarray(weights[2:])
    want = coder.decode_single(torch.from_numpy(codes), torch.from_numpy(boxes)).numpy()
    got = np.asarray(jitted_decode(weights)(codes, boxes))
    assert np.abs(got - want).max() <= 1e-5
    worst_rel = max(worst_rel, np.abs(got - want).max() / np.abs(want).max())
  assert worst_rel <= 1e-6
  # the clamp really bounded the size: a code far beyond it gives exp(clip) * size
  assert np.allclose(got[0, 2] - got[0, 0], np.exp(clip) * (boxes[0, 2] - boxes[0, 0]),
                     rtol=1e-5)


def test_decode_pixel_boxes_relative_error():
  rng = np.random.default_rng(2)
  coder = BoxCoder(WEIGHTS[0])
  boxes = random_boxes(rng, N)
  codes = rng.normal(0, 3, (N, 4)).astype(np.float32)
  want = coder.decode_single(torch.from_numpy(codes), torch.from_numpy(boxes)).numpy()
  got = np.asarray(jitted_decode(WEIGHTS[0])(codes, boxes))
  # pixel coordinates in the hundreds: float32 spacing there is ~3e-5
  np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-5)


def test_decode_class_specific_layout():
  rng = np.random.default_rng(3)
  c = 5
  coder = BoxCoder(WEIGHTS[0])
  boxes = random_boxes(rng, N, scale=1.0)
  codes = rng.normal(0, 2, (N, c * 4)).astype(np.float32)
  want = coder.decode_single(torch.from_numpy(codes), torch.from_numpy(boxes)).numpy()
  got = box_coder.decode_boxes(codes.reshape(N, c, 4), boxes[:, None, :], WEIGHTS[0])
  assert got.shape == (N, c, 4)
  assert np.abs(np.asarray(got).reshape(N, c * 4) - want).max() <= 1e-5


ANCHOR_CASES = [
    # image (H, W), feature sizes, sizes, aspect ratios
    ((800, 1216), [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)],
     ((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5),
    ((100, 130), [(13, 17), (7, 9)], ((32, 40), (64, 80, 101)), ((0.5, 1.0, 2.0), (1.0, 3.0))),
    ((97, 61), [(12, 8)], ((128, 256, 512),), ((0.5, 1.0, 2.0),)),      # non-divisible
    ((64, 64), [(8, 8), (4, 4)], (16, 48), (0.25, 0.7, 1.0, 1.6)),      # torchvision's flat forms
    ((320, 480), [(40, 60), (20, 30), (10, 15)],                        # RetinaNet-style octaves
     tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128)),
     ((0.5, 1.0, 2.0),) * 3),
]


@pytest.mark.parametrize("case", range(len(ANCHOR_CASES)))
def test_grid_anchors_equal_torchvision(case):
  image_size, feature_sizes, sizes, ratios = ANCHOR_CASES[case]
  gen = AnchorGenerator(sizes, ratios)
  images = ImageList(torch.zeros(2, 3, *image_size), [image_size, image_size])
  feats = [torch.zeros(2, 1, h, w) for h, w in feature_sizes]
  want = gen(images, feats)
  got = anchors.grid_anchors(image_size, feature_sizes, sizes, ratios)
  assert got.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(got), want[0].numpy())
  per_level = anchors.grid_anchors_per_level(image_size, feature_sizes, sizes, ratios)
  assert [p.shape[0] for p in per_level] == [
      h * w * a for (h, w), a in zip(feature_sizes, gen.num_anchors_per_location())]
  assert anchors.num_anchors_per_location(sizes, ratios) == gen.num_anchors_per_location()
  for level, (s, r) in enumerate(zip(gen.sizes, gen.aspect_ratios)):
    np.testing.assert_array_equal(anchors.cell_anchors(s, r), gen.cell_anchors[level].numpy())


SSD300 = {"aspect_ratios": [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
              "scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
              "steps": [8, 16, 32, 64, 100, 300]}
SSD_CASES = [
    ((300, 300), [(f, f) for f in (38, 19, 10, 5, 3, 1)], SSD300),
    # no scales/steps: scales from min/max ratio, steps from the feature sizes; non-square
    ((240, 320), [(30, 40), (15, 20), (8, 10), (4, 5)],
     {"aspect_ratios": [[2], [2, 3], [2, 3], [2]], "min_ratio": 0.2, "max_ratio": 0.95}),
    ((300, 300), [(19, 19), (10, 10)], {"aspect_ratios": [[2, 3], [2]], "clip": False,
                                            "scales": [0.5, 0.9, 1.3], "steps": [16, 30]}),
    ((128, 96), [(4, 3)], {"aspect_ratios": [[3]]}),                  # one level
]


@pytest.mark.parametrize("case", range(len(SSD_CASES)))
def test_ssd_default_boxes_equal_torchvision(case):
  image_size, feature_sizes, kwargs = SSD_CASES[case]
  gen = DefaultBoxGenerator(**kwargs)
  images = ImageList(torch.zeros(1, 3, *image_size), [image_size])
  want = gen(images, [torch.zeros(1, 1, h, w) for h, w in feature_sizes])[0].numpy()
  got = anchors.ssd_default_boxes(image_size, feature_sizes, **kwargs)
  assert got.dtype == jnp.float32 and got.shape == want.shape
  np.testing.assert_array_equal(np.asarray(got), want)
  assert anchors.ssd_num_anchors_per_location(kwargs["aspect_ratios"]) == (
      gen.num_anchors_per_location())


M_GT, N_PRED = 7, 50
match_jit = jax.jit(matching.match, static_argnums=(1, 2, 3))


def torch_match(q, high, low, allow):
  return Matcher(high, low, allow)(torch.from_numpy(q)).numpy()


@pytest.mark.parametrize("allow", [False, True])
@pytest.mark.parametrize("thresholds", [(0.7, 0.3), (0.5, 0.4), (0.5, 0.5)])
def test_match_equals_torchvision(allow, thresholds):
  high, low = thresholds
  rng = np.random.default_rng(4)
  for trial in range(8):
    if trial % 2:
      q = rng.uniform(0, 0.8, (M_GT, N_PRED)).astype(np.float32)
    else:  # IoU-like: mostly zeros, many ties at 0 and at quantised values; a gt's best
      # quality is often tied between predictions and below the high threshold
      q = (rng.integers(0, 10, (M_GT, N_PRED)) * 0.08).astype(np.float32)
      q[rng.uniform(size=q.shape) < 0.6] = 0
    want = torch_match(q, high, low, allow)
    got = np.asarray(match_jit(q, high, low, allow))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


def test_match_ties_take_first_gt_like_torch():
  q = np.zeros((4, 6), np.float32)
  q[1:, 0] = 0.9          # gt 1, 2, 3 tie for prediction 0
  q[[0, 2], 1] = 0.5      # gt 0 and 2 tie below high
  q[[2, 3], 2] = 0.2      # gt 2, 3 tie below low
  q[[0, 3], 3] = 0.8
  _vals, idx = torch.from_numpy(q).max(dim=0)
  assert idx.tolist()[:4] == [1, 0, 2, 0]   # torch's CPU max: first maximal index
  for allow in (False, True):
    want = torch_match(q, 0.7, 0.3, allow)
    np.testing.assert_array_equal(np.asarray(match_jit(q, 0.7, 0.3, allow)), want)


@pytest.mark.parametrize("allow", [False, True])
def test_match_padded_gt_equals_unpadded_torchvision(allow):
  rng = np.random.default_rng(5)
  for num_valid in (1, 3, 6):
    q = rng.uniform(0, 0.9, (M_GT, N_PRED)).astype(np.float32)
    valid = np.zeros(M_GT, bool)
    rows = rng.choice(M_GT, num_valid, replace=False)
    valid[rows] = True
    q[~valid] = rng.uniform(0.9, 1.0, ((~valid).sum(), N_PRED))  # padding that would win
    order = np.flatnonzero(valid)
    want = torch_match(q[order], 0.7, 0.3, allow)
    want = np.where(want >= 0, order[np.maximum(want, 0)], want)  # back to padded row ids
    got = np.asarray(match_jit(q, 0.7, 0.3, allow, valid))
    np.testing.assert_array_equal(got, want)
