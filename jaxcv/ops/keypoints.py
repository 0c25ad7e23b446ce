"""Keypoint R-CNN target encoding and decoding, as torchvision's `roi_heads` does them.

What: `keypoints_to_heatmap` (training targets: the heatmap cell of each keypoint inside
its RoI) and `heatmaps_to_keypoints` (inference: keypoint coordinates and scores from the
predicted heatmaps), with the numbers of `torchvision.models.detection.roi_heads`.
Why a reformulation: torchvision resizes each RoI's heatmaps bicubically to the RoI's own
size (data-dependent shapes) and takes the argmax. Here PyTorch's bicubic formula
(cubic convolution with A = -0.75, align_corners=False, border-clamped taps) is evaluated on
a static `max_size x max_size` grid per RoI with the cells beyond the RoI's size masked, so
shapes are static and the op works under `jit`/`vmap`.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxcv.ops.boxes import check_boxes
from jaxcv.ops.common import true_divide

__all__ = ["heatmaps_to_keypoints", "keypoints_to_heatmap"]


def _check_rois(rois, k):
  rois = check_boxes(rois, "rois", ranks=(2,), dtype=jnp.float32)
  if rois.shape[0] != k:
    raise ValueError(f"rois must have K = {k} rows to match, got {rois.shape[0]}")
  return rois


def keypoints_to_heatmap(keypoints, rois, heatmap_size: int):
  """Heatmap cell of each keypoint, as torchvision's `keypoints_to_heatmap`.

  Args:
    keypoints: float32 `[K, P, 3]` `(x, y, v)` in image pixels; v > 0 = labelled.
    rois: float32 `[K, 4]` `(x1, y1, x2, y2)`, the RoI each keypoint set is encoded in.
    heatmap_size: static S of the S x S heatmap.

  Returns:
    `(index, valid)`: int32 `[K, P]` the flat cell `y * S + x` with
    x = floor((kx - x1) * S / (x2 - x1)) (y likewise; a keypoint exactly on x2 / y2 goes to
    cell S - 1), 0 where not valid; bool `[K, P]` valid = labelled and inside the RoI.
    (torchvision returns `valid` as int64.)
  """
  keypoints = jnp.asarray(keypoints)
  if keypoints.ndim != 3 or keypoints.shape[-1] != 3:
    raise ValueError(f"keypoints must have shape [K, P, 3] (x, y, v), got {keypoints.shape}")
  rois = _check_rois(rois, keypoints.shape[0])
  size = int(heatmap_size)
  if size < 1:
    raise ValueError(f"heatmap_size must be positive, got {heatmap_size}")
  keypoints = keypoints.astype(jnp.float32)
  scale_x = (size / (rois[:, 2] - rois[:, 0]))[:, None]
  scale_y = (size / (rois[:, 3] - rois[:, 1]))[:, None]
  x, y = keypoints[..., 0], keypoints[..., 1]
  fx = jnp.floor((x - rois[:, 0:1]) * scale_x)
  fy = jnp.floor((y - rois[:, 1:2]) * scale_y)
  fx = jnp.where(x == rois[:, 2:3], size - 1, fx)
  fy = jnp.where(y == rois[:, 3:4], size - 1, fy)
  valid = (fx >= 0) & (fy >= 0) & (fx < size) & (fy < size) & (keypoints[..., 2] > 0)
  index = jnp.where(valid, fy * size + fx, 0).astype(jnp.int32)
  return index, valid


def _cubic_weights(t):
  """PyTorch's `get_cubic_upsample_coefficients` (A = -0.75) for fractions t: [..., 4]."""
  a = -0.75

  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return jnp.stack([far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)], axis=-1)


def _cubic_taps(n_out, in_size, out_size):
  """Source taps [n_out, 4] and weights for a bicubic resize in_size -> out_size
  (align_corners=False), at output positions 0..n_out-1."""
  scale = true_divide(jnp.float32(in_size), out_size.astype(jnp.float32))
  dst = jnp.arange(n_out, dtype=jnp.float32)
  real = scale * (dst + 0.5) - 0.5
  index = jnp.minimum(jnp.floor(real).astype(jnp.int32), in_size - 1)
  t = jnp.clip(real - index.astype(jnp.float32), 0.0, 1.0)
  taps = jnp.clip(index[:, None] + jnp.arange(-1, 3)[None, :], 0, in_size - 1)
  return taps, _cubic_weights(t)


def _decode_one(maps, roi, max_size):
  """maps [P, S, S], roi [4] -> (xy [P, 2], scores [P])."""
  p, s, _ = maps.shape
  width = jnp.maximum(roi[2] - roi[0], 1.0)
  height = jnp.maximum(roi[3] - roi[1], 1.0)
  map_w = jnp.minimum(jnp.ceil(width), max_size).astype(jnp.int32)
  map_h = jnp.minimum(jnp.ceil(height), max_size).astype(jnp.int32)
  tx, wx = _cubic_taps(max_size, s, map_w)  # [Wm, 4]
  ty, wy = _cubic_taps(max_size, s, map_h)  # [Hm, 4]
  # along the width first, then the height (PyTorch's separable CPU kernel's order)
  cols = maps[:, :, tx]  # [P, S, Wm, 4]
  rows = cols[..., 0] * wx[:, 0]
  for j in range(1, 4):
    rows = rows + cols[..., j] * wx[:, j]
  grid = rows[:, ty]  # [P, Hm, 4, Wm]
  out = grid[:, :, 0] * wy[:, 0, None]
  for j in range(1, 4):
    out = out + grid[:, :, j] * wy[:, j, None]
  inside = ((jnp.arange(max_size) < map_h)[:, None]
            & (jnp.arange(max_size) < map_w)[None, :])
  flat = jnp.where(inside, out, -jnp.inf).reshape(p, -1)
  pos = jnp.argmax(flat, axis=1)
  score = jnp.take_along_axis(flat, pos[:, None], axis=1)[:, 0]
  x_int = (pos % max_size).astype(jnp.float32)
  y_int = (pos // max_size).astype(jnp.float32)
  x = (x_int + 0.5) * (width / map_w.astype(jnp.float32)) + roi[0]
  y = (y_int + 0.5) * (height / map_h.astype(jnp.float32)) + roi[1]
  return jnp.stack([x, y], axis=-1), score


def heatmaps_to_keypoints(maps, rois, max_size: int = 1344, roi_batch: int = 4):
  """Keypoints from Keypoint R-CNN heatmaps, as torchvision's `heatmaps_to_keypoints`.

  Per RoI: heatmaps resized bicubically (align_corners=False) to
  `(ceil(max(y2 - y1, 1)), ceil(max(x2 - x1, 1)))`, argmax per keypoint (first maximum in
  row-major order), x = (x_int + 0.5) * width / ceil(width) + x1 (y likewise), score = the
  resized heatmap's value there.

  Args:
    maps: float `[K, S, S, P]` heatmaps, NHWC as the jaxcv keypoint head outputs them
      (torchvision's `[K, P, S, S]` transposed).
    rois: float32 `[K, 4]` `(x1, y1, x2, y2)` image pixels.
    max_size: static bound of the resized map's side. An RoI side above it is resized to
      `max_size` instead (a coarser argmax grid; coordinates still span the RoI), so results
      equal torchvision's for RoIs up to `max_size` pixels. The default covers torchvision's
      Keypoint R-CNN images (longest side 1333). Cost per RoI:
      O(P * max_size * (S + max_size)) work and `P * max_size^2` floats of memory.
    roi_batch: static number of RoIs evaluated at once (memory vs. speed).

  Returns:
    `(keypoints, scores)`: float32 `[K, P, 3]` `(x, y, 1)` and float32 `[K, P]`.
  """
  maps = jnp.asarray(maps)
  if maps.ndim != 4 or maps.shape[1] != maps.shape[2]:
    raise ValueError(f"maps must have shape [K, S, S, P] (NHWC), got {maps.shape}")
  rois = _check_rois(rois, maps.shape[0])
  max_size, roi_batch = int(max_size), int(roi_batch)
  if max_size < 1 or roi_batch < 1:
    raise ValueError(f"max_size and roi_batch must be positive, got {max_size}, {roi_batch}")
  k, _, _, p = maps.shape
  maps = jnp.transpose(maps.astype(jnp.float32), (0, 3, 1, 2))  # [K, P, S, S]
  if k == 0:
    return jnp.zeros((0, p, 3), jnp.float32), jnp.zeros((0, p), jnp.float32)
  xy, scores = lax.map(lambda a: _decode_one(a[0], a[1], max_size), (maps, rois),
                       batch_size=min(roi_batch, k))
  keypoints = jnp.concatenate([xy, jnp.ones((k, p, 1), jnp.float32)], axis=-1)
  return keypoints, scores
