"""jaxcv.ops.masks and jaxcv.ops.keypoints against NumPy loops and analytic values (no torch).

The loops restate torchvision's definitions: paste = resize the padded mask to the integer
box size with PyTorch's bilinear (align_corners=False) rule, then copy it into the image;
keypoint targets = floor of the scaled offsets with the x == x2 rule.
"""
from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from jaxcv.ops import keypoints as kp
from jaxcv.ops import masks as mk

F32 = np.float32
IMG_H, IMG_W = 30, 36


def ref_resize_bilinear(img, out_h, out_w):
  """PyTorch F.interpolate(bilinear, align_corners=False) of a 2-D array, as a loop."""
  in_h, in_w = img.shape
  out = np.zeros((out_h, out_w), F32)

  def taps(dst, n_in, n_out):
    src = max(F32(F32(n_in) / F32(n_out)) * F32(dst + 0.5) - F32(0.5), F32(0))
    i0 = int(src)
    i1 = i0 + (1 if i0 < n_in - 1 else 0)
    lam = F32(src - i0)
    return i0, i1, F32(1) - lam, lam

  for y in range(out_h):
    y0, y1, wy0, wy1 = taps(y, in_h, out_h)
    for x in range(out_w):
      x0, x1, wx0, wx1 = taps(x, in_w, out_w)
      out[y, x] = (wy0 * (wx0 * img[y0, x0] + wx1 * img[y0, x1])
                   + wy1 * (wx0 * img[y1, x0] + wx1 * img[y1, x1]))
  return out


def ref_paste(masks, boxes, padding=1):
  k, m, _ = masks.shape
  out = np.zeros((k, IMG_H, IMG_W), F32)
  scale = F32((m + 2 * padding) / m)
  for i in range(k):
    padded = np.pad(masks[i], padding)
    x1, y1, x2, y2 = boxes[i]
    wh, hh = F32(x2 - x1) * F32(0.5) * scale, F32(y2 - y1) * F32(0.5) * scale
    xc, yc = F32(x2 + x1) * F32(0.5), F32(y2 + y1) * F32(0.5)
    bx1, by1, bx2, by2 = (math.trunc(float(v)) for v in (xc - wh, yc - hh, xc + wh, yc + hh))
    w, h = max(bx2 - bx1 + 1, 1), max(by2 - by1 + 1, 1)
    resized = ref_resize_bilinear(padded, h, w)
    for py in range(max(by1, 0), min(by2 + 1, IMG_H)):
      for px in range(max(bx1, 0), min(bx2 + 1, IMG_W)):
        out[i, py, px] = resized[py - by1, px - bx1]
  return out


paste = jax.jit(lambda m, b: mk.paste_masks_in_image(m, b, (IMG_H, IMG_W)))


def test_paste_masks_matches_loop():
  rng = np.random.default_rng(0)
  k = 10
  masks = rng.uniform(size=(k, 7, 7)).astype(F32)
  x1 = rng.uniform(-10, IMG_W, k)
  y1 = rng.uniform(-10, IMG_H, k)
  boxes = np.stack([x1, y1, x1 + rng.uniform(0, 30, k), y1 + rng.uniform(0, 25, k)],
                   1).astype(F32)
  boxes[0] = [3.2, 4.1, 3.5, 4.3]  # tiny
  boxes[1] = [-40, -50, 80, 70]  # larger than the image
  boxes[2] = [50, 40, 60, 45]  # wholly outside: nothing pasted
  got = np.asarray(paste(masks, boxes))
  want = ref_paste(masks, boxes)
  assert (want > 0).sum() > 500
  assert not got[2].any()
  assert np.abs(got - want).max() <= 1e-5


def test_paste_constant_mask_fills_box():
  """A mask of ones: the padded ring fades out, the inside is exactly 1."""
  masks = np.ones((1, 28, 28), F32)
  got = np.asarray(paste(masks, np.array([[4.0, 6.0, 24.0, 26.0]], F32)))[0]
  assert got[10:22, 8:20].min() == 1.0  # well inside the box
  # expanded box: centre (14, 16), half sizes 10 * 30 / 28 -> x 3..24, y 5..26 (truncated)
  assert got[:5].max() == 0.0 and got[:, :3].max() == 0.0 and got[27:].max() == 0.0
  assert 0.0 < got[5, 3] < 1.0  # its corner pixel samples between padding and mask


def test_masks_to_boxes_loop_and_empty():
  rng = np.random.default_rng(1)
  masks = rng.uniform(size=(6, 9, 11)) > 0.9
  masks[2] = False
  got = np.asarray(jax.jit(mk.masks_to_boxes)(masks))
  for i, m in enumerate(masks):
    ys, xs = np.nonzero(m)
    want = [xs.min(), ys.min(), xs.max(), ys.max()] if len(xs) else [0, 0, 0, 0]
    np.testing.assert_array_equal(got[i], want)


def test_keypoints_to_heatmap_matches_loop():
  rng = np.random.default_rng(2)
  k, p, size = 8, 6, 56
  x1y1 = rng.uniform(0, 50, (k, 2))
  rois = np.concatenate([x1y1, x1y1 + rng.uniform(5, 60, (k, 2))], 1).astype(F32)
  xy = x1y1[:, None] + rng.uniform(-0.2, 1.2, (k, p, 2)) * (rois[:, None, 2:] - x1y1[:, None])
  kps = np.concatenate([xy, rng.integers(0, 3, (k, p, 1))], -1).astype(F32)
  kps[:, 0, 0], kps[:, 0, 2] = rois[:, 2], 1  # on the right edge: cell size - 1
  index, valid = jax.jit(kp.keypoints_to_heatmap, static_argnums=2)(kps, rois, size)
  for i in range(k):
    sx = F32(size) / F32(rois[i, 2] - rois[i, 0])
    sy = F32(size) / F32(rois[i, 3] - rois[i, 1])
    for j in range(p):
      x, y, v = kps[i, j]
      cx = size - 1 if x == rois[i, 2] else math.floor(F32(x - rois[i, 0]) * sx)
      cy = size - 1 if y == rois[i, 3] else math.floor(F32(y - rois[i, 1]) * sy)
      ok = 0 <= cx < size and 0 <= cy < size and v > 0
      assert bool(valid[i, j]) == ok
      assert int(index[i, j]) == (cy * size + cx if ok else 0)
  assert 0 < int(valid.sum()) < k * p
  assert all(int(index[i, 0]) % size == size - 1 for i in range(k) if valid[i, 0])


def test_heatmaps_to_keypoints_identity_resize():
  """RoI of exactly S x S pixels: the resize is the identity, so the argmax and score are the
  heatmap's own, and the keypoint is the cell centre."""
  rng = np.random.default_rng(3)
  k, p, s = 4, 3, 8
  maps = rng.normal(size=(k, s, s, p)).astype(F32)
  x1y1 = rng.uniform(0, 20, (k, 2)).round()
  rois = np.concatenate([x1y1, x1y1 + s], 1).astype(F32)
  xy, scores = jax.jit(lambda m, r: kp.heatmaps_to_keypoints(m, r, max_size=16))(maps, rois)
  flat = maps.transpose(0, 3, 1, 2).reshape(k, p, -1)
  pos = flat.argmax(-1)
  np.testing.assert_allclose(np.asarray(scores), flat.max(-1), atol=1e-6)
  np.testing.assert_allclose(np.asarray(xy[..., 0]), pos % s + 0.5 + rois[:, :1], atol=1e-5)
  np.testing.assert_allclose(np.asarray(xy[..., 1]), pos // s + 0.5 + rois[:, 1:2], atol=1e-5)
  np.testing.assert_array_equal(np.asarray(xy[..., 2]), 1.0)


def test_heatmaps_to_keypoints_peak_location():
  """A single sharp peak lands in the RoI cell over it, for RoIs smaller and larger than S."""
  s = 16
  maps = np.zeros((2, s, s, 1), F32)
  maps[:, 4, 11, 0] = 10.0  # row 4, column 11 of 16
  rois = np.array([[0, 0, 32, 32], [100, 50, 108, 58]], F32)
  xy, _ = kp.heatmaps_to_keypoints(maps, rois, max_size=40)
  xy = np.asarray(xy)[:, 0]
  for (x1, y1, x2, y2), (x, y, _) in zip(rois, xy, strict=True):
    assert abs((x - x1) / (x2 - x1) - 11.5 / s) <= 1.0 / s
    assert abs((y - y1) / (y2 - y1) - 4.5 / s) <= 1.0 / s


def test_bad_input():
  with pytest.raises(ValueError, match=r"\[K, M, M\]"):
    mk.paste_masks_in_image(np.zeros((2, 4, 5)), np.zeros((2, 4)), (8, 8))
  with pytest.raises(ValueError, match="same K"):
    mk.paste_masks_in_image(np.zeros((2, 4, 4)), np.zeros((3, 4)), (8, 8))
  with pytest.raises(ValueError, match=r"must have shape \[\.\.\., 4\]"):
    mk.paste_masks_in_image(np.zeros((2, 4, 4)), np.zeros((2, 5)), (8, 8))
  with pytest.raises(ValueError, match="image_shape"):
    mk.paste_masks_in_image(np.zeros((2, 4, 4)), np.zeros((2, 4)), (0, 8))
  with pytest.raises(ValueError, match=r"\[K, H, W\]"):
    mk.masks_to_boxes(np.zeros((4, 4)))
  with pytest.raises(ValueError, match=r"\[K, P, 3\]"):
    kp.keypoints_to_heatmap(np.zeros((2, 3, 2)), np.zeros((2, 4)), 56)
  with pytest.raises(ValueError, match="K = 2"):
    kp.keypoints_to_heatmap(np.zeros((2, 3, 3)), np.zeros((3, 4)), 56)
  with pytest.raises(ValueError, match=r"\[K, S, S, P\]"):
    kp.heatmaps_to_keypoints(np.zeros((2, 3, 4, 5)), np.zeros((2, 4)))
  with pytest.raises(ValueError, match=r"must have shape \[\.\.\., 4\]"):
    kp.heatmaps_to_keypoints(np.zeros((2, 4, 4, 5)), np.zeros((2, 3)))
