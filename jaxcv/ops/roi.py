"""RoI feature extraction: `roi_align`, `roi_pool` and FPN `multiscale_roi_align`, plus
`roi_align_per_image`, the batched form.

What: the region-of-interest ops of Fast/Faster/Mask R-CNN with torchvision's exact semantics
(`torchvision.ops.roi_align`, `roi_pool`, `MultiScaleRoIAlign`), so that detection heads with
weights converted from torchvision give torchvision's outputs.
Why here and not a port of a kernel: they are pure `jnp` functions with static shapes
(features NHWC `[B, H, W, C]`, boxes `[K, 4]` float32 `(x1, y1, x2, y2)` in image pixels,
`box_indices` int32 `[K]` naming the image of each box, output `[K, oh, ow, C]`), usable
under `jax.jit`, `jax.vmap` and `jax.grad`. Interpolation and pooling are gathers from the
flattened feature map, vectorised over RoIs (no Python loop over RoIs); the gradient with
respect to the features is the gathers' scatter-add, computed by JAX's autodiff.

Boxes: the flat `[K, 4]` + `box_indices` form is torchvision's (RoIs of all images in one
list, as a detector's RoI head pools them); `roi_align_per_image` takes the padded batch
form `[B, R, 4]` (+ `valid [B, R]`) that the per-image ops (`nms`, `match`, ...) produce
under `vmap`, and builds the box indices itself. One kernel serves both.

Semantics follow torchvision's C++ CPU/CUDA kernels (`roi_align_common.h`,
`roi_pool_kernel.cpp`). Note: torchvision's pure-Python fallback
`torchvision.ops.roi_align._roi_align` (used where its C++ ops do not load) does NOT apply
the kernel's "sample outside [-1, H] x [-1, W] contributes 0" rule and clamps such samples
to the border instead; jaxcv follows the kernel.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcv.ops.boxes import check_boxes
from jaxcv.ops.common import pair, true_divide

__all__ = ["infer_scale", "map_levels", "multiscale_roi_align", "roi_align",
           "roi_align_per_image", "roi_pool"]


def _check_boxes(boxes, box_indices):
  """Flat boxes `[K, 4]` (the one box check, `jaxcv.ops.boxes.check_boxes`) and int32
  box_indices `[K]`. Box values are not checked: RoIs follow torchvision's kernel whatever
  they are (with aligned=False an inverted box is a 1-pixel RoI)."""
  boxes = check_boxes(boxes, ranks=(2,))
  box_indices = jnp.asarray(box_indices)
  if box_indices.shape != boxes.shape[:1]:
    raise ValueError(f"box_indices must have shape [K] = {boxes.shape[:1]} to match boxes, "
                     f"got {box_indices.shape}")
  if not jnp.issubdtype(box_indices.dtype, jnp.integer):
    raise ValueError(f"box_indices must be integers, got {box_indices.dtype}")
  return boxes, box_indices.astype(jnp.int32)


def _check_features(features, name="features"):
  features = jnp.asarray(features)
  if features.ndim != 4:
    raise ValueError(f"{name} must be NHWC [B, H, W, C], got shape {features.shape}")
  if min(features.shape[1:3]) < 1:
    raise ValueError(f"{name} must have a positive height and width, got {features.shape}")
  return features


def _check_scale(spatial_scale):
  if isinstance(spatial_scale, int | float | np.number) and not spatial_scale > 0:
    raise ValueError(f"spatial_scale must be positive, got {spatial_scale}")


def _axis_weights(coord, size):
  """1-D part of the kernel's bilinear rule for sample coordinates `coord` on an axis of
  `size` (scalar or broadcastable int array): returns (low, high, w_low, w_high) with weights
  zero where the sample lies outside [-1, size]."""
  valid = (coord >= -1.0) & (coord <= size)
  c = jnp.where(coord <= 0, jnp.zeros_like(coord), coord)
  low = jnp.floor(c).astype(jnp.int32)
  at_end = low >= size - 1
  low = jnp.where(at_end, size - 1, low)
  high = jnp.where(at_end, size - 1, low + 1)
  c = jnp.where(at_end, low.astype(coord.dtype), c)
  lw = c - low.astype(coord.dtype)
  hw = 1.0 - lw
  zero = jnp.zeros_like(lw)
  return low, high, jnp.where(valid, hw, zero), jnp.where(valid, lw, zero)


def _sample_coords(start, bin_size, grid, n_out, n_grid, dtype):
  """Sample coordinates [K, n_out, n_grid] along one axis, as the kernel computes them:
  start + p * bin + (i + .5) * bin / grid."""
  p = jnp.arange(n_out, dtype=dtype)[None, :, None]
  i = jnp.arange(n_grid, dtype=dtype)[None, None, :]
  start, bin_size, grid = (a[:, None, None] for a in (start, bin_size, grid))
  return start + p * bin_size + true_divide((i + 0.5) * bin_size, grid)


def _roi_align_flat(flat, offsets, heights, widths, boxes, scale, output_size, sampling_ratio,
                    aligned, max_sampling_ratio):
  """RoIAlign from `flat` [N, C] (feature pixels of all images/levels), where RoI k reads an
  `heights[k] x widths[k]` row-major map starting at row `offsets[k]`, with scale `scale[k]`."""
  oh, ow = output_size
  dtype = boxes.dtype
  offset = 0.5 if aligned else 0.0
  x1, y1, x2, y2 = (boxes[:, i] * scale - offset for i in range(4))
  roi_w, roi_h = x2 - x1, y2 - y1
  if not aligned:
    roi_w = jnp.maximum(roi_w, 1.0)
    roi_h = jnp.maximum(roi_h, 1.0)
  bin_h, bin_w = true_divide(roi_h, oh), true_divide(roi_w, ow)
  if sampling_ratio > 0:
    gy = gx = sampling_ratio
    grid_h = jnp.full_like(roi_h, sampling_ratio)
    grid_w = jnp.full_like(roi_w, sampling_ratio)
  else:
    gy = gx = max_sampling_ratio
    grid_h = jnp.clip(jnp.ceil(true_divide(roi_h, oh)), 0, max_sampling_ratio)
    grid_w = jnp.clip(jnp.ceil(true_divide(roi_w, ow)), 0, max_sampling_ratio)
  count = jnp.maximum(grid_h * grid_w, 1.0)
  ys = _sample_coords(y1, bin_h, grid_h, oh, gy, dtype)  # [K, oh, gy]
  xs = _sample_coords(x1, bin_w, grid_w, ow, gx, dtype)  # [K, ow, gx]
  hk = heights[:, None, None]
  wk = widths[:, None, None]
  y_lo, y_hi, wy_lo, wy_hi = _axis_weights(ys, hk)
  x_lo, x_hi, wx_lo, wx_hi = _axis_weights(xs, wk)
  if sampling_ratio <= 0:  # samples beyond this RoI's adaptive grid count for nothing
    in_y = jnp.arange(gy)[None, None, :] < grid_h[:, None, None]
    in_x = jnp.arange(gx)[None, None, :] < grid_w[:, None, None]
    wy_lo, wy_hi = jnp.where(in_y, wy_lo, 0.0), jnp.where(in_y, wy_hi, 0.0)
    wx_lo, wx_hi = jnp.where(in_x, wx_lo, 0.0), jnp.where(in_x, wx_hi, 0.0)
  # Corners as [K, oh, gy, 2] rows and [K, ow, gx, 2] columns; the kernel's order w1..w4 is
  # (y_low, x_low), (y_low, x_high), (y_high, x_low), (y_high, x_high).
  rows = jnp.stack([y_lo, y_hi], -1)
  cols = jnp.stack([x_lo, x_hi], -1)
  wrows = jnp.stack([wy_lo, wy_hi], -1)
  wcols = jnp.stack([wx_lo, wx_hi], -1)
  base = offsets[:, None, None, None, None, None, None]
  wk6 = widths[:, None, None, None, None, None, None]
  # index [K, oh, ow, gy, gx, 2 (y corner), 2 (x corner)]
  index = (base + rows[:, :, None, :, None, :, None] * wk6
           + cols[:, None, :, None, :, None, :])
  weight = wrows[:, :, None, :, None, :, None] * wcols[:, None, :, None, :, None, :]
  k, n = boxes.shape[0], gy * gx * 4
  index = index.reshape(k, oh, ow, n)
  weight = true_divide(weight, count[:, None, None, None, None, None, None])
  weight = weight.reshape(k, oh, ow, n)
  values = jnp.take(flat, index, axis=0, mode="clip")  # [K, oh, ow, n, C]
  out = jnp.einsum("kyxn,kyxnc->kyxc", weight.astype(values.dtype), values,
                   precision=lax.Precision.HIGHEST)
  return out.astype(flat.dtype)


def roi_align(features, boxes, box_indices, output_size, spatial_scale: float = 1.0,
              sampling_ratio: int = 2, aligned: bool = False,
              max_sampling_ratio: int | None = None):
  """RoIAlign (Mask R-CNN) exactly as `torchvision.ops.roi_align`'s C++ kernel.

  Args:
    features: float `[B, H, W, C]` (NHWC).
    boxes: float32 `[K, 4]`, `(x1, y1, x2, y2)` in image pixels (multiplied by
      `spatial_scale` to get feature-map coordinates).
    box_indices: int32 `[K]`, the image of each box in `0..B-1`. Out-of-range indices are
      clipped (no error under jit); padding rows may point at image 0.
    output_size: int or `(oh, ow)`.
    spatial_scale: feature pixels per image pixel, e.g. 1/16.
    sampling_ratio: samples per bin along each axis (static). `> 0`: exactly that many.
      `<= 0`: torchvision's adaptive `ceil(roi_size / output_size)` per RoI; then
      `max_sampling_ratio` (static) bounds it: every RoI is evaluated on a
      `max_sampling_ratio`^2 grid with the samples beyond its own grid masked, and an RoI that
      would need more samples per bin than the bound uses the bound (a coarser average than
      torchvision's, exact below it). Cost grows with `max_sampling_ratio`^2.
    aligned: False (torchvision default, legacy): RoI size forced >= 1 feature pixel.
      True (Detectron2): coordinates shifted by -0.5, no minimum size.

  Returns:
    `[K, oh, ow, C]` in the features' dtype: the mean over each bin's sampling grid of
    bilinear samples; a sample outside `[-1, H] x [-1, W]` counts as 0, one in `[-1, 0]` is
    clamped to the border row/column.

  Gradients flow to `features` (scatter-add of the bilinear weights, as torchvision's
  backward) and to `boxes` (the derivative of the interpolation weights with respect to the
  sample positions, as autograd of torchvision's pure-Python `_roi_align`; the C++ kernel
  gives no box gradient).
  """
  features = _check_features(features)
  boxes, box_indices = _check_boxes(boxes, box_indices)
  output_size = pair(output_size, "output_size")
  sampling_ratio = int(sampling_ratio)
  if sampling_ratio <= 0:
    if max_sampling_ratio is None or int(max_sampling_ratio) < 1:
      raise ValueError("sampling_ratio <= 0 (adaptive) needs a static max_sampling_ratio >= 1 "
                       f"bounding the samples per bin, got {max_sampling_ratio!r}")
    max_sampling_ratio = int(max_sampling_ratio)
  _check_scale(spatial_scale)
  b, h, w, c = features.shape
  k = boxes.shape[0]
  flat = features.reshape(b * h * w, c)
  offsets = jnp.clip(box_indices, 0, b - 1) * (h * w)
  heights = jnp.full((k,), h, jnp.int32)
  widths = jnp.full((k,), w, jnp.int32)
  scale = jnp.full((k,), spatial_scale, boxes.dtype)
  return _roi_align_flat(flat, offsets, heights, widths, boxes, scale, output_size,
                         sampling_ratio, aligned, max_sampling_ratio)


def roi_align_per_image(features, boxes, output_size, spatial_scale: float = 1.0,
                        sampling_ratio: int = 2, aligned: bool = False,
                        max_sampling_ratio: int | None = None, valid=None):
  """`roi_align` with boxes given per image: R boxes for each of the B images.

  Args:
    features: float `[B, H, W, C]` (NHWC).
    boxes: float32 `[B, R, 4]`, `(x1, y1, x2, y2)` in image pixels; `boxes[b]` belong to
      image b (the padded, vmapped-per-image form of `nms` and the samplers).
    valid: optional bool `[B, R]`; False rows (padding) give zeros and their boxes are never
      read (they may hold anything, NaN included, with zero gradients).
    output_size, spatial_scale, sampling_ratio, aligned, max_sampling_ratio: as `roi_align`.

  Returns:
    `[B, R, oh, ow, C]` in the features' dtype: exactly `roi_align` on the flattened
    `[B * R, 4]` boxes with `box_indices = [0] * R + [1] * R + ...`, reshaped.
  """
  features = _check_features(features)
  boxes = check_boxes(boxes, ranks=(3,))
  b, r = boxes.shape[:2]
  if b != features.shape[0]:
    raise ValueError(f"boxes [B, R, 4] = {boxes.shape} must have B = {features.shape[0]}, the "
                     "features' batch size")
  if valid is not None:
    valid = jnp.asarray(valid)
    if valid.shape != (b, r):
      raise ValueError(f"valid must have shape [B, R] = {(b, r)}; got {valid.shape}")
    # padding rows read a zero box: no NaN from their coordinates, in values or gradients
    boxes = jnp.where(valid[..., None], boxes, jnp.zeros_like(boxes))
  box_indices = jnp.repeat(jnp.arange(b, dtype=jnp.int32), r)
  out = roi_align(features, boxes.reshape(b * r, 4), box_indices, output_size, spatial_scale,
                  sampling_ratio, aligned, max_sampling_ratio)
  out = out.reshape((b, r) + out.shape[1:])
  if valid is not None:
    out = jnp.where(valid[:, :, None, None, None], out, jnp.zeros_like(out))
  return out


def _round_half_away(x):
  """C's `round`: halves away from zero (jnp.round rounds halves to even)."""
  return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _sparse_table(x, axis, levels):
  """[levels, ...] where entry j holds the max of x over [i, i + 2**j) along `axis`
  (positions whose window runs past the end hold garbage and are never read)."""
  tables = [x]
  for j in range(1, levels):
    prev = tables[-1]
    step = 1 << (j - 1)
    shifted = jnp.concatenate(
        [lax.slice_in_dim(prev, step, prev.shape[axis], axis=axis),
         lax.slice_in_dim(prev, prev.shape[axis] - step, prev.shape[axis], axis=axis)],
        axis=axis)
    tables.append(jnp.maximum(prev, shifted))
  return jnp.stack(tables)


def _floor_log2(n, levels):
  """floor(log2(n)) for int arrays n >= 1, as a count of powers of two <= n."""
  return sum((n >= (1 << j)).astype(jnp.int32) for j in range(1, levels))


def roi_pool(features, boxes, box_indices, output_size, spatial_scale: float = 1.0):
  """RoIPool (Fast R-CNN quantised max pooling) exactly as `torchvision.ops.roi_pool`.

  Per RoI: start = round(x1 * scale) (halves away from zero), end = round(x2 * scale), size
  max(end - start + 1, 1); bin (ph, pw) covers rows [floor(ph * size_h / oh),
  ceil((ph + 1) * size_h / oh)) + start_h (columns likewise), clipped to the feature map;
  output = max over the bin, 0 for an empty bin.

  Args:
    features: float `[B, H, W, C]` (NHWC).
    boxes: float32 `[K, 4]`, `(x1, y1, x2, y2)` in image pixels.
    box_indices: int32 `[K]`, image of each box (clipped to `0..B-1`).
    output_size: int or `(oh, ow)`.
    spatial_scale: feature pixels per image pixel.

  Returns:
    `[K, oh, ow, C]` in the features' dtype.

  Implementation: bins have data-dependent sizes, so the max over a bin is a 2-D range-max
  query on a sparse table (max over every power-of-two window, built once per call): four
  gathers per output value, exact for any RoI size. Cost: memory and work of
  ceil(log2 H) * ceil(log2 W) copies of the feature map (e.g. 36 for a 38 x 50 map).
  The gradient is JAX's max-pool gradient through the table; where a bin's maximum occurs
  at several pixels with exactly equal values JAX splits it between them, whereas
  torchvision gives it all to the first.
  """
  features = _check_features(features)
  boxes, box_indices = _check_boxes(boxes, box_indices)
  oh, ow = pair(output_size, "output_size")
  _check_scale(spatial_scale)
  b, h, w, c = features.shape
  k = boxes.shape[0]
  ly, lx = h.bit_length(), w.bit_length()  # windows of 1, 2, 4, ... <= H (W) pixels
  if ly * lx * b * h * w >= 2 ** 31:
    raise ValueError(f"features {features.shape} too large for roi_pool's int32 table index")
  table = _sparse_table(features, 2, lx)  # [lx, B, H, W, C] along W
  table = _sparse_table(table, 2, ly)  # [ly, lx, B, H, W, C] along H (axis 2 of [lx,B,H,..])
  flat = table.reshape(-1, c)

  start = _round_half_away(boxes * spatial_scale).astype(jnp.int32)
  x1, y1, x2, y2 = (start[:, i] for i in range(4))
  size_w = jnp.maximum(x2 - x1 + 1, 1).astype(boxes.dtype)
  size_h = jnp.maximum(y2 - y1 + 1, 1).astype(boxes.dtype)
  bin_h, bin_w = true_divide(size_h, oh), true_divide(size_w, ow)

  def bounds(bin_size, n_out, begin, limit):
    p = jnp.arange(n_out, dtype=boxes.dtype)[None, :]
    lo = jnp.floor(p * bin_size[:, None]).astype(jnp.int32) + begin[:, None]
    hi = jnp.ceil((p + 1) * bin_size[:, None]).astype(jnp.int32) + begin[:, None]
    return jnp.clip(lo, 0, limit), jnp.clip(hi, 0, limit)

  hs, he = bounds(bin_h, oh, y1, h)  # [K, oh]
  ws, we = bounds(bin_w, ow, x1, w)  # [K, ow]
  jy = _floor_log2(jnp.maximum(he - hs, 1), ly)
  jx = _floor_log2(jnp.maximum(we - ws, 1), lx)
  rows = jnp.stack([hs, jnp.maximum(he - (1 << jy), 0)], -1)  # [K, oh, 2]
  cols = jnp.stack([ws, jnp.maximum(we - (1 << jx), 0)], -1)  # [K, ow, 2]
  bi = jnp.clip(box_indices, 0, b - 1)
  # flat index into [ly, lx, B, H, W]
  index = ((((jy[:, :, None, None, None] * lx + jx[:, None, :, None, None]) * b
             + bi[:, None, None, None, None]) * h + rows[:, :, None, :, None]) * w
           + cols[:, None, :, None, :])  # [K, oh, ow, 2, 2]
  values = jnp.take(flat, index.reshape(k, oh, ow, 4), axis=0, mode="clip")
  out = jnp.max(values, axis=3)
  empty = (he <= hs)[:, :, None] | (we <= ws)[:, None, :]
  return jnp.where(empty[..., None], jnp.zeros_like(out), out)


def infer_scale(feature_size: Sequence[int], image_size: Sequence[int]) -> float:
  """torchvision's `_infer_scale`: 2 ** round(log2(feature_height / image_height)) (the
  height ratio, computed in float32, rounded half to even, as torch does)."""
  approx = np.float32(float(feature_size[0]) / float(image_size[0]))
  return float(2.0 ** float(np.round(np.log2(approx))))


def map_levels(boxes, k_min: int, k_max: int, canonical_scale: float = 224,
               canonical_level: float = 4, eps: float = 1e-6):
  """torchvision's FPN `LevelMapper`: for boxes `[K, 4]` returns int32 `[K]` level indices
  in `0..k_max-k_min`: floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps)
  clamped to [k_min, k_max], minus k_min."""
  boxes = check_boxes(boxes, ranks=(2,))
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  s = jnp.sqrt(area)
  lvl = jnp.floor(canonical_level + jnp.log2(true_divide(s, canonical_scale))
                  + jnp.asarray(eps, s.dtype))
  lvl = jnp.clip(lvl, k_min, k_max)
  return (lvl - k_min).astype(jnp.int32)


def multiscale_roi_align(features: Sequence, boxes, box_indices, output_size,
                         sampling_ratio: int, image_size: Sequence[int],
                         canonical_scale: float = 224, canonical_level: int = 4,
                         eps: float = 1e-6, max_sampling_ratio: int | None = None):
  """FPN RoIAlign exactly as `torchvision.ops.MultiScaleRoIAlign` (aligned=False).

  Args:
    features: list of NHWC `[B, H_l, W_l, C]`, finest level first (torchvision's
      `featmap_names` order).
    boxes, box_indices: `[K, 4]` float32 xyxy in image pixels, int32 `[K]`.
    output_size: int or `(oh, ow)`.
    sampling_ratio: as in `roi_align` (with `max_sampling_ratio` when adaptive).
    image_size: `(H, W)` of the (padded batch) image, torchvision's max over
      `image_shapes`; the scale of level l is 2 ** round(log2(H_l / H)).
    canonical_scale, canonical_level, eps: the `LevelMapper` constants.

  Returns:
    `[K, oh, ow, C]`: each RoI pooled from its own level only (see `map_levels`).

  Cost: one RoIAlign in total, not one per level: the levels are flattened into one
  `[B * sum(H_l W_l), C]` array and each RoI gathers from its level's rows with its level's
  scale, height and width (the flat copy of all levels is the extra memory).
  """
  if not isinstance(features, list | tuple) or not features:
    raise ValueError("features must be a non-empty list of [B, H, W, C] arrays")
  features = [_check_features(f, f"features[{i}]") for i, f in enumerate(features)]
  b, _, _, c = features[0].shape
  for i, f in enumerate(features):
    if f.shape[0] != b or f.shape[3] != c:
      raise ValueError(f"features[{i}] has shape {f.shape}; every level needs B={b}, C={c}")
  if len(image_size) != 2 or min(image_size) < 1:
    raise ValueError(f"image_size must be a positive (H, W), got {image_size!r}")
  boxes, box_indices = _check_boxes(boxes, box_indices)
  output_size = pair(output_size, "output_size")
  sampling_ratio = int(sampling_ratio)
  if sampling_ratio <= 0 and (max_sampling_ratio is None or int(max_sampling_ratio) < 1):
    raise ValueError("sampling_ratio <= 0 (adaptive) needs a static max_sampling_ratio >= 1")
  scales = [infer_scale(f.shape[1:3], image_size) for f in features]
  k_min = int(-np.log2(np.float32(scales[0])))
  k_max = int(-np.log2(np.float32(scales[-1])))
  k = boxes.shape[0]
  if len(features) == 1:
    level = jnp.zeros((k,), jnp.int32)
  else:
    level = map_levels(boxes, k_min, k_max, canonical_scale, canonical_level, eps)
    level = jnp.clip(level, 0, len(features) - 1)
  sizes = [f.shape[1] * f.shape[2] for f in features]
  starts = np.concatenate([[0], np.cumsum([b * s for s in sizes])[:-1]]).astype(np.int64)
  if int(starts[-1]) + b * sizes[-1] >= 2 ** 31:
    raise ValueError("features too large for int32 gather indices")
  flat = jnp.concatenate([f.reshape(-1, c) for f in features], axis=0)

  def table(per_level, dtype):  # a per-level constant, looked up for every RoI
    return jnp.asarray(np.asarray(per_level), dtype)[level]

  bi = jnp.clip(box_indices, 0, b - 1)
  offsets = table(starts, jnp.int32) + bi * table(sizes, jnp.int32)
  heights = table([f.shape[1] for f in features], jnp.int32)
  widths = table([f.shape[2] for f in features], jnp.int32)
  scale = table(scales, boxes.dtype)
  return _roi_align_flat(flat, offsets, heights, widths, boxes, scale, output_size,
                         sampling_ratio, False, max_sampling_ratio)
