"""RoI Align of single-channel maps as two small matrix products: `roi_align_maps`.

What: `jaxcv.ops.roi_align` (torchvision's kernel) for maps with one channel, e.g. Mask R-CNN
projecting each ground-truth mask into its proposal (torchvision's `project_masks_on_boxes`:
`roi_align(mask, box, 28, 1.0, sampling_ratio=-1)`), the same numbers up to float rounding.
Why: the kernel's bilinear weight of a sample is a product of a y weight and an x weight,
the "outside [-1, size]" zero is the product of two per-axis indicators, and a bin's mean
over its grid_h x grid_w samples is the product of per-axis means. So for RoI k,

    out_k = A_k @ map @ B_k^T,   A_k [oh, H] (rows), B_k [ow, W] (columns),

where A_k[p, r] sums, over the y samples of output row p, the bilinear weight they give map
row r, divided by grid_h (B_k likewise). The gather form reads 4 * grid^2 values per bin; an
adaptive grid (up to ceil(canvas / 28) = 5 samples per axis at 128 px, 29 at 800 px) makes
that tens of millions of scattered reads per training step, where these products are dense
matmuls of `oh * H * W` multiply-adds per RoI.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxcv.ops.common import pair, true_divide
from jaxcv.ops.roi import _axis_weights, _check_boxes, _sample_coords

__all__ = ["roi_align_maps", "roi_align_matrices"]


def _axis_matrix(start, size, grid, n_out, n_grid, length):
  """[K, n_out, length]: per output position, the mean bilinear weight on each map index."""
  k = start.shape[0]
  coords = _sample_coords(start, true_divide(size, n_out), grid, n_out, n_grid, start.dtype)
  lo, hi, w_lo, w_hi = _axis_weights(coords, length)
  used = jnp.arange(n_grid)[None, None, :] < grid[:, None, None]
  scale = jnp.where(used, 1.0 / jnp.maximum(grid, 1.0)[:, None, None], 0.0)
  rows = jnp.broadcast_to(jnp.arange(k)[:, None, None], coords.shape)
  cols = jnp.broadcast_to(jnp.arange(n_out)[None, :, None], coords.shape)
  out = jnp.zeros((k, n_out, length), start.dtype)
  out = out.at[rows, cols, lo].add(w_lo * scale)
  return out.at[rows, cols, hi].add(w_hi * scale)


def roi_align_matrices(boxes, map_hw: Sequence[int], output_size, spatial_scale: float = 1.0,
                       sampling_ratio: int = 2, aligned: bool = False,
                       max_sampling_ratio: int | None = None):
  """The per-RoI row and column matrices `(A [K, oh, H], B [K, ow, W])` of `roi_align` on an
  `H x W` map (arguments as `jaxcv.ops.roi_align`)."""
  boxes, _ = _check_boxes(boxes, jnp.zeros((jnp.shape(boxes)[0],), jnp.int32))
  oh, ow = pair(output_size, "output_size")
  h, w = (int(s) for s in map_hw)
  sampling_ratio = int(sampling_ratio)
  if sampling_ratio <= 0 and (max_sampling_ratio is None or int(max_sampling_ratio) < 1):
    raise ValueError("sampling_ratio <= 0 (adaptive) needs a static max_sampling_ratio >= 1, "
                     f"got {max_sampling_ratio!r}")
  offset = 0.5 if aligned else 0.0
  x1, y1, x2, y2 = (boxes[:, i] * spatial_scale - offset for i in range(4))
  roi_w, roi_h = x2 - x1, y2 - y1
  if not aligned:
    roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
  if sampling_ratio > 0:
    gh = gw = jnp.full_like(roi_h, sampling_ratio)
    ny = nx = sampling_ratio
  else:
    ny = nx = int(max_sampling_ratio)
    gh = jnp.clip(jnp.ceil(true_divide(roi_h, oh)), 0, ny)
    gw = jnp.clip(jnp.ceil(true_divide(roi_w, ow)), 0, nx)
  return (_axis_matrix(y1, roi_h, gh, oh, ny, h), _axis_matrix(x1, roi_w, gw, ow, nx, w))


def roi_align_maps(maps, boxes, box_indices, output_size, spatial_scale: float = 1.0,
                   sampling_ratio: int = 2, aligned: bool = False,
                   max_sampling_ratio: int | None = None, chunk: int = 32):
  """`roi_align` of single-channel `maps [N, H, W]` (float, or bool masks) at `boxes [K, 4]`
  of map `box_indices [K]` -> float32 `[K, oh, ow]`. RoIs go `chunk` at a time (memory:
  `chunk * H * W` floats of gathered maps)."""
  maps = jnp.asarray(maps)
  if maps.ndim != 3:
    raise ValueError(f"maps must be [N, H, W] (single-channel), got {maps.shape}")
  a, b = roi_align_matrices(boxes, maps.shape[1:], output_size, spatial_scale,
                            sampling_ratio, aligned, max_sampling_ratio)
  index = jnp.clip(jnp.asarray(box_indices, jnp.int32), 0, maps.shape[0] - 1)

  def one(args):
    ak, bk, i = args
    m = maps[i].astype(jnp.float32)
    return jnp.matmul(jnp.matmul(ak, m, precision=lax.Precision.HIGHEST), bk.T,
                      precision=lax.Precision.HIGHEST)

  if a.shape[0] == 0:
    return jnp.zeros((0,) + a.shape[1:2] + b.shape[1:2], jnp.float32)
  return jax.lax.map(one, (a, b, index), batch_size=min(int(chunk), a.shape[0]))
