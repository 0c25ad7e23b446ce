"""jaxcv.ops.roi against NumPy loops written from torchvision's C++ kernels (no torch needed).

`ref_roi_align` transcribes `torchvision/csrc/ops/cpu/roi_align_common.h` +
`roi_align_kernel.cpp` (float32 arithmetic in the kernel's order), `ref_roi_pool`
`roi_pool_kernel.cpp`. Shapes are fixed so that each jitted function compiles once.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxcv.ops import roi

F32 = np.float32
B, H, W, C = 2, 10, 13, 3
K = 16
OUT = (3, 4)


def ref_bilinear(fmap, y, x):
  """fmap [H, W, C]; the kernel's bilinear_interpolate for one sample (float32)."""
  h, w = fmap.shape[:2]
  if not (y >= -1.0 and y <= h and x >= -1.0 and x <= w):
    return np.zeros(fmap.shape[-1], F32)
  y, x = max(y, F32(0)), max(x, F32(0))
  y_low, x_low = int(y), int(x)
  if y_low >= h - 1:
    y_high = y_low = h - 1
    y = F32(y_low)
  else:
    y_high = y_low + 1
  if x_low >= w - 1:
    x_high = x_low = w - 1
    x = F32(x_low)
  else:
    x_high = x_low + 1
  ly, lx = F32(y - y_low), F32(x - x_low)
  hy, hx = F32(1) - ly, F32(1) - lx
  return (hy * hx * fmap[y_low, x_low] + hy * lx * fmap[y_low, x_high]
          + ly * hx * fmap[y_high, x_low] + ly * lx * fmap[y_high, x_high])


def ref_roi_align(feats, boxes, idx, out, scale, sampling_ratio, aligned, max_grid=None,
                  scales=None, levels=None):
  """feats: list of NHWC arrays (one per level); boxes [K, 4]; returns [K, oh, ow, C]."""
  oh, ow = out
  result = np.zeros((len(boxes), oh, ow, feats[0].shape[-1]), F32)
  offset = F32(0.5) if aligned else F32(0)
  for k, box in enumerate(boxes.astype(F32)):
    lvl = 0 if levels is None else int(levels[k])
    s = F32(scale if scales is None else scales[lvl])
    fmap = feats[lvl][idx[k]]
    x1, y1, x2, y2 = (c * s - offset for c in box)
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
      rw, rh = max(rw, F32(1)), max(rh, F32(1))
    bh, bw = F32(rh / oh), F32(rw / ow)
    gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / oh)
    gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / ow)
    if max_grid is not None:
      gh, gw = min(gh, max_grid), min(gw, max_grid)
    count = max(gh * gw, 1)
    for ph in range(oh):
      for pw in range(ow):
        acc = np.zeros(fmap.shape[-1], F32)
        for iy in range(gh):
          y = F32(y1 + F32(ph) * bh + F32(F32(iy + 0.5) * bh) / F32(gh))
          for ix in range(gw):
            x = F32(x1 + F32(pw) * bw + F32(F32(ix + 0.5) * bw) / F32(gw))
            acc += ref_bilinear(fmap, y, x)
        result[k, ph, pw] = acc / F32(count)
  return result


def ref_roi_pool(feats, boxes, idx, out, scale):
  oh, ow = out
  _, h, w, c = feats.shape
  result = np.zeros((len(boxes), oh, ow, c), F32)
  for k, box in enumerate(boxes.astype(F32)):
    # C's round: halves away from zero
    x1, y1, x2, y2 = (int(math.copysign(math.floor(abs(float(v * F32(scale))) + 0.5), v))
                      for v in box)
    rw, rh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    bh, bw = F32(rh) / F32(oh), F32(rw) / F32(ow)
    for ph in range(oh):
      for pw in range(ow):
        hs = min(max(math.floor(F32(ph) * bh) + y1, 0), h)
        he = min(max(math.ceil(F32(ph + 1) * bh) + y1, 0), h)
        ws = min(max(math.floor(F32(pw) * bw) + x1, 0), w)
        we = min(max(math.ceil(F32(pw + 1) * bw) + x1, 0), w)
        if he > hs and we > ws:
          result[k, ph, pw] = feats[idx[k], hs:he, ws:we].max(axis=(0, 1))
  return result


def random_boxes(rng, k, img_h, img_w, margin=0.3, small=False):
  """Boxes over an image of img_h x img_w pixels, up to `margin` of its size outside it; a
  few tiny (< 1 px), inverted-free, huge (larger than the image) boxes among them."""
  x1 = rng.uniform(-margin * img_w, (1 + margin) * img_w, k)
  y1 = rng.uniform(-margin * img_h, (1 + margin) * img_h, k)
  w = rng.uniform(0.0, 1.0, k) ** 2 * img_w * 1.2
  h = rng.uniform(0.0, 1.0, k) ** 2 * img_h * 1.2
  w[:2] = rng.uniform(0, 0.8, 2)  # tiny
  h[:2] = rng.uniform(0, 0.8, 2)
  w[2], h[2], x1[2], y1[2] = 2 * img_w, 2 * img_h, -0.5 * img_w, -0.5 * img_h  # huge
  x1[3], y1[3], w[3], h[3] = 0, 0, img_w, img_h  # whole image
  return np.stack([x1, y1, x1 + w, y1 + h], 1).astype(F32)


@functools.partial(jax.jit, static_argnames=("sampling_ratio", "aligned", "max_sampling_ratio"))
def align(f, b, i, scale, sampling_ratio, aligned, max_sampling_ratio=None):
  return roi.roi_align(f, b, i, OUT, scale, sampling_ratio, aligned, max_sampling_ratio)


pool = jax.jit(lambda f, b, i, scale: roi.roi_pool(f, b, i, OUT, scale))


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
def test_roi_align_matches_kernel_loop(aligned, sampling_ratio):
  rng = np.random.default_rng(sampling_ratio + 10 * aligned)
  worst = 0.0
  for scale in (1.0, 0.25, 1 / 16):
    feats = rng.normal(size=(B, H, W, C)).astype(F32)
    boxes = random_boxes(rng, K, H / scale, W / scale)
    idx = rng.integers(0, B, K).astype(np.int32)
    got = np.asarray(align(feats, boxes, idx, scale, sampling_ratio, aligned))
    want = ref_roi_align([feats], boxes, idx, OUT, scale, sampling_ratio, aligned)
    worst = max(worst, np.abs(got - want).max())
  assert worst <= 1e-5, worst


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_adaptive_sampling(aligned):
  rng = np.random.default_rng(3)
  feats = rng.normal(size=(B, H, W, C)).astype(F32)
  boxes = random_boxes(rng, K, 4 * H, 4 * W)
  idx = rng.integers(0, B, K).astype(np.int32)
  # A bound no RoI exceeds (roi <= 2 * 13 / 3 feature px per bin): torchvision's numbers.
  got = np.asarray(align(feats, boxes, idx, 0.25, -1, aligned, max_sampling_ratio=10))
  want = ref_roi_align([feats], boxes, idx, OUT, 0.25, -1, aligned)
  assert np.abs(got - want).max() <= 1e-5
  # A bound some RoIs exceed: those use the bound, as documented.
  got = np.asarray(align(feats, boxes, idx, 0.25, -1, aligned, max_sampling_ratio=2))
  want = ref_roi_align([feats], boxes, idx, OUT, 0.25, -1, aligned, max_grid=2)
  assert np.abs(got - want).max() <= 1e-5
  needs_more = np.ceil((boxes[:, 2:] - boxes[:, :2]) * 0.25 / np.array(OUT[::-1])).max()
  assert needs_more > 2  # the case above did clamp


def test_roi_align_known_values():
  """A linear map f(y, x) = 3y + x: the mean of bilinear samples is the value at the mean."""
  yy, xx = np.mgrid[:8, :9].astype(F32)
  feats = (3 * yy + xx)[None, :, :, None]
  boxes = np.array([[1.0, 2.0, 5.0, 6.0]], F32)  # bins of 2 x 2 pixels; samples inside
  got = jax.jit(lambda f, b: roi.roi_align(f, b, jnp.zeros(1, jnp.int32), 2, 1.0, 2))(feats, boxes)
  got = np.asarray(got)[0, ..., 0]
  centers_y, centers_x = np.array([3.0, 5.0]), np.array([2.0, 4.0])
  np.testing.assert_allclose(got, 3 * centers_y[:, None] + centers_x[None, :], atol=1e-5)


def test_roi_pool_matches_kernel_loop():
  rng = np.random.default_rng(5)
  worst = 0.0
  for scale in (1.0, 0.25, 1 / 16, 0.5):
    feats = rng.normal(size=(B, H, W, C)).astype(F32)
    boxes = random_boxes(rng, K, H / scale, W / scale)
    if scale == 0.5:  # exact halves: C's round goes away from zero, not to even
      boxes = np.round(rng.uniform(-6, 30, (K, 4))).astype(F32) + 0.5
      boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    idx = rng.integers(0, B, K).astype(np.int32)
    got = np.asarray(pool(feats, boxes, idx, scale))
    want = ref_roi_pool(feats, boxes, idx, OUT, scale)
    worst = max(worst, np.abs(got - want).max())
  assert worst == 0.0


def test_multiscale_roi_align_matches_per_level_loop():
  rng = np.random.default_rng(7)
  image = (64, 96)
  feats = [rng.normal(size=(B, 64 // s, 96 // s, C)).astype(F32) for s in (4, 8, 16, 32)]
  boxes = random_boxes(rng, K, *image, margin=0.1)
  boxes[4:8] = [[0, 0, 2, 2], [0, 0, 60, 90], [10, 10, 10 + 56, 10 + 56], [1, 1, 29, 29]]
  idx = rng.integers(0, B, K).astype(np.int32)
  got = np.asarray(jax.jit(functools.partial(
      roi.multiscale_roi_align, output_size=OUT, sampling_ratio=2, image_size=image,
      canonical_scale=32))(
          feats, boxes, idx))
  area = (boxes[:, 2] - boxes[:, 0]).astype(np.float64) * (boxes[:, 3] - boxes[:, 1])
  levels = np.clip(np.floor(4 + np.log2(np.sqrt(area) / 32) + 1e-6), 2, 5) - 2
  assert set(levels.tolist()) == {0, 1, 2, 3}  # the test exercises several levels
  want = ref_roi_align(feats, boxes, idx, OUT, None, 2, False, scales=[1 / 4, 1 / 8, 1 / 16,
                                                                        1 / 32], levels=levels)
  assert np.abs(got - want).max() <= 1e-5


def test_infer_scale_and_level_mapper():
  assert roi.infer_scale((50, 68), (800, 1088)) == 1 / 16
  assert roi.infer_scale((25, 34), (797, 1088)) == 1 / 32  # 25/797 rounds to 2**-5
  boxes = np.array([[0, 0, 224, 224], [0, 0, 111, 111], [0, 0, 112, 112], [0, 0, 2000, 2000],
                    [0, 0, 1, 1], [0, 0, 447, 448]], F32)
  np.testing.assert_array_equal(np.asarray(roi.map_levels(boxes, 2, 5)), [2, 0, 1, 3, 0, 2])


def test_roi_align_vmap_over_batches():
  rng = np.random.default_rng(9)
  feats = rng.normal(size=(3, B, H, W, C)).astype(F32)
  boxes = np.stack([random_boxes(rng, K, 4 * H, 4 * W) for _ in range(3)])
  idx = rng.integers(0, B, (3, K)).astype(np.int32)
  got = jax.jit(jax.vmap(lambda f, b, i: roi.roi_align(f, b, i, OUT, 0.25, 2)))(feats, boxes, idx)
  for n in range(3):
    want = ref_roi_align([feats[n]], boxes[n], idx[n], OUT, 0.25, 2, False)
    assert np.abs(np.asarray(got[n]) - want).max() <= 1e-5


def test_roi_align_per_image_equals_flat_roi_align():
  rng = np.random.default_rng(10)
  feats = rng.normal(size=(B, H, W, C)).astype(F32)
  r = 5
  boxes = np.stack([random_boxes(rng, r, 4 * H, 4 * W) for _ in range(B)])  # [B, R, 4]
  valid = rng.uniform(size=(B, r)) < 0.7
  valid[0, 0] = valid[1, -1] = False
  padded = np.where(valid[..., None], boxes, np.nan).astype(F32)  # padding may hold NaN
  per_image = jax.jit(lambda f, b, v: roi.roi_align_per_image(f, b, OUT, 0.25, 2, valid=v))
  got = np.asarray(per_image(feats, padded, valid))
  assert got.shape == (B, r, *OUT, C)
  flat = np.asarray(align(feats, boxes.reshape(-1, 4), np.repeat(np.arange(B), r).astype(np.int32),
                          0.25, 2, False)).reshape(got.shape)
  np.testing.assert_array_equal(got[valid], flat[valid])  # the same kernel: bit for bit
  assert not got[~valid].any()
  # without a mask every row is pooled; the gradient never sees the NaN padding
  np.testing.assert_array_equal(roi.roi_align_per_image(feats, boxes, OUT, 0.25, 2), flat)
  grad = jax.grad(lambda b: per_image(feats, b, valid).sum())(padded)
  assert np.isfinite(np.asarray(grad)).all() and not np.asarray(grad)[~valid].any()
  with pytest.raises(ValueError, match="must have B = 2"):
    roi.roi_align_per_image(feats, boxes[:1].repeat(3, 0), OUT)
  with pytest.raises(ValueError, match="rank 3"):
    roi.roi_align_per_image(feats, boxes[0], OUT)
  with pytest.raises(ValueError, match=r"valid must have shape \[B, R\]"):
    roi.roi_align_per_image(feats, boxes, OUT, valid=valid[0])


def test_gradients():
  rng = np.random.default_rng(11)
  feats = jnp.asarray(rng.normal(size=(2, 5, 6, 2)), jnp.float32)
  # aligned samples stay >= 0.03 px from integer coordinates and inside the map
  boxes = jnp.asarray([[1.13, 0.71, 4.37, 3.29], [0.62, 1.17, 3.41, 4.23],
                       [2.19, 0.58, 5.07, 2.36]])
  idx = jnp.asarray([0, 1, 1], jnp.int32)
  with jax.default_matmul_precision("highest"):
    check_grads(jax.jit(lambda f: roi.roi_align(f, boxes, idx, 2, 1.0, 2)), (feats,), order=1,
                modes=("rev", "fwd"), atol=1e-2, rtol=1e-2)
    check_grads(jax.jit(lambda b: roi.roi_align(feats, b, idx, 2, 1.0, 2, aligned=True)), (boxes,),
                order=1, modes=("rev",), eps=1e-3, atol=2e-2, rtol=2e-2)
    check_grads(jax.jit(lambda f: roi.roi_pool(f, boxes, idx, 2, 1.0)), (feats,), order=1,
                modes=("rev",), atol=1e-2, rtol=1e-2)
  # roi_pool's gradient is the max-pool one: 1 at each bin's argmax pixel
  g = jax.jit(jax.grad(lambda f: roi.roi_pool(f, boxes[:1], idx[:1], 1, 1.0).sum()))(feats)
  box = np.round(np.asarray(boxes[0])).astype(int)
  window = np.asarray(feats)[0, box[1]:box[3] + 1, box[0]:box[2] + 1]
  for ch in range(2):
    y, x = np.unravel_index(window[..., ch].argmax(), window.shape[:2])
    expect = np.zeros((2, 5, 6))
    expect[0, box[1] + y, box[0] + x] = 1
    np.testing.assert_array_equal(np.asarray(g)[..., ch], expect)


def test_bad_input():
  f = np.zeros((1, 4, 4, 2), F32)
  b = np.zeros((3, 4), F32)
  i = np.zeros(3, np.int32)
  for fn in (roi.roi_align, roi.roi_pool):
    with pytest.raises(ValueError, match="NHWC"):
      fn(f[0], b, i, 2)
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
      fn(f, b[:, :3], i, 2)
    with pytest.raises(ValueError, match="box_indices"):
      fn(f, b, i[:2], 2)
    with pytest.raises(ValueError, match="output_size"):
      fn(f, b, i, (0, 2))
    with pytest.raises(ValueError, match="spatial_scale"):
      fn(f, b, i, 2, -1.0)
  with pytest.raises(ValueError, match="max_sampling_ratio"):
    roi.roi_align(f, b, i, 2, sampling_ratio=-1)
  with pytest.raises(ValueError, match="every level"):
    roi.multiscale_roi_align([f, np.zeros((1, 2, 2, 3), F32)], b, i, 2, 2, (16, 16))


def test_roi_align_maps_equals_roi_align_on_single_channel_maps():
  """The separable form (two matrix products per RoI) gives the gather form's numbers, with
  fixed and adaptive grids, legacy and aligned coordinates, boxes partly or wholly outside."""
  from jaxcv.ops.roi_separable import roi_align_maps
  rng = np.random.default_rng(0)
  maps = rng.uniform(size=(3, 40, 50)) > 0.5
  xy = rng.uniform(-10, 60, (20, 2))
  wh = rng.uniform(0.2, 45, (20, 2))
  boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
  idx = rng.integers(0, 3, 20).astype(np.int32)
  feats = jnp.asarray(maps[..., None], jnp.float32)
  for sr, aligned, bound in [(2, False, None), (-1, False, 8), (-1, True, 8), (3, True, None)]:
    want = roi.roi_align(feats, boxes, idx, 7, 0.5, sr, aligned, bound)[..., 0]
    got = roi_align_maps(maps, boxes, idx, 7, 0.5, sr, aligned, bound, chunk=8)
    np.testing.assert_allclose(got, want, atol=1e-6, err_msg=str((sr, aligned)))
