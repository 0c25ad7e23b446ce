"""Pooling and unpooling for segmentation models, with PyTorch's semantics, on NHWC features.

- `nearest_unpool`, `bed_of_nails_unpool`: fixed upsampling by an integer factor.
- `max_pool_with_indices` / `max_unpool`: torch's `max_pool2d(return_indices=True)` and
  `max_unpool2d` (SegNet's decoder puts each value back where its max came from). Indices are
  flat `h * W + w` into the input plane of each (example, channel), as torch's.
- `adaptive_max_pool` (torch `AdaptiveMaxPool2d` bins), `adaptive_avg_pool` (torch
  `AdaptiveAvgPool2d`; the classifiers use it through `jaxcv.models.common`),
  `spatial_pyramid_pool` (SPP-net) and `PyramidPooling` (PSPNet).
- Argument pairs (`window`, `stride`, ...) are checked by `jaxcv.ops.common.pair`.

Everything is a pure function of static-shaped arrays (shapes from static arguments only),
usable under `jax.jit`, `jax.vmap` and `jax.grad`; bad arguments raise ValueError at trace time.
Gradients follow torch: a max pool sends the gradient to the single index it chose (the first
maximum in window scan order), and `max_unpool`'s gradient is a gather at the indices.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.layers.conv import conv_general_dilated
from jaxcv.layers.upsample import resize
from jaxcv.ops.common import pair

__all__ = [
  "PyramidPooling",
  "adaptive_avg_pool",
  "adaptive_max_pool",
  "bed_of_nails_unpool",
  "max_pool_with_indices",
  "max_unpool",
  "nearest_unpool",
  "spatial_pyramid_pool",
]


def _adaptive_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] averaging weights over torch's bins [floor(i*n/m), ceil((i+1)*n/m))."""
  m = np.zeros((size_out, size_in), np.float32)
  for i in range(size_out):
    start = (i * size_in) // size_out
    end = -(-((i + 1) * size_in) // size_out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
  """torch `AdaptiveAvgPool2d(output_size)`: `[B, H, W, C]` -> `[B, oh, ow, C]`.

  Bins overlap or repeat when H, W are not multiples of the output (e.g. a 1x1 map becomes
  7x7 copies), exactly as in torch, so small inputs work with torchvision classifiers.
  """
  (h, w), (oh, ow) = x.shape[1:3], output_size
  if (h, w) == (oh, ow):
    return x
  mh = jnp.asarray(_adaptive_matrix(h, oh), x.dtype)
  mw = jnp.asarray(_adaptive_matrix(w, ow), x.dtype)
  return jnp.einsum("ih,jw,bhwc->bijc", mh, mw, x, precision=jax.lax.Precision.HIGHEST)


def _check_nhwc(x: jax.Array, fn: str):
  if x.ndim != 4:
    raise ValueError(f"{fn} expects features of shape [B, H, W, C] (NHWC); got shape "
                     f"{tuple(x.shape)}")


def _lowest(dtype):
  return -jnp.inf if jnp.issubdtype(dtype, jnp.floating) else jnp.iinfo(dtype).min


# ---------------------------------------------------------------------------------------------
# Unpooling by a fixed factor.

def nearest_unpool(x: jax.Array, factor: int | Sequence[int]) -> jax.Array:
  """Repeats each value in a `factor x factor` block: `[B, H, W, C]` -> `[B, fH, fW, C]`.

  Equal to torch `F.interpolate(mode="nearest", scale_factor=factor)` for integer factors.
  """
  _check_nhwc(x, "nearest_unpool")
  fh, fw = pair(factor, "nearest_unpool factor", 1)
  return jnp.repeat(jnp.repeat(x, fh, axis=1), fw, axis=2)


def bed_of_nails_unpool(x: jax.Array, factor: int | Sequence[int]) -> jax.Array:
  """Puts each value at the top-left of its `factor x factor` block, zeros elsewhere:
  `[B, H, W, C]` -> `[B, fH, fW, C]` (`out[:, ::f, ::f] == x`)."""
  _check_nhwc(x, "bed_of_nails_unpool")
  fh, fw = pair(factor, "bed_of_nails_unpool factor", 1)
  zero = jnp.zeros((), x.dtype)
  # Interior padding f - 1 between pixels and f - 1 after the last: size H + (H-1)(f-1) + f-1.
  return jax.lax.pad(x, zero, ((0, 0, 0), (0, fh - 1, fh - 1), (0, fw - 1, fw - 1), (0, 0, 0)))


# ---------------------------------------------------------------------------------------------
# Max pooling with indices and max unpooling.

def _pool_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
  """torch `pooling_output_shape`."""
  numerator = size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
  out = numerator // s + 1
  if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside
    out -= 1
  return out


def _window_positions(size: int, out: int, k: int, s: int, p: int, d: int):
  """Input position of each (output, tap), clipped into the plane, and whether it is inside."""
  pos = np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d
  return np.clip(pos, 0, size - 1), (pos >= 0) & (pos < size)


def max_pool_with_indices(x: jax.Array, window: int | Sequence[int],
                          stride: int | Sequence[int] | None = None,
                          padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                          ceil_mode: bool = False) -> tuple[jax.Array, jax.Array]:
  """torch `F.max_pool2d(x, window, stride, padding, dilation, ceil_mode, return_indices=True)`.

  Args:
    x: `[B, H, W, C]` features (float or int).
    window, stride (default: `window`), padding, dilation: ints or `(h, w)` pairs; padding is
      implicit -inf and at most half the window, as torch requires.
  Returns:
    `(pooled [B, oh, ow, C], indices [B, oh, ow, C] int32)` with
    `oh = floor((H + 2p - d(k-1) - 1) / s) + 1` (ceil with `ceil_mode`, as torch), and each
    index the flat position `h * W + w` of the chosen input pixel in its channel's plane. The
    chosen pixel is the first maximum in window scan order (rows, then columns), as torch; a
    window whose values are all -inf picks its first pixel inside the image, and a window with
    NaN gives NaN and the position of its last NaN (torch's CPU rule).
  """
  _check_nhwc(x, "max_pool_with_indices")
  kh, kw = pair(window, "max_pool_with_indices window", 1)
  sh, sw = pair(window if stride is None else stride, "max_pool_with_indices stride", 1)
  ph, pw = pair(padding, "max_pool_with_indices padding", 0)
  dh, dw = pair(dilation, "max_pool_with_indices dilation", 1)
  if 2 * ph > kh or 2 * pw > kw:
    raise ValueError(f"max_pool_with_indices: padding {padding!r} must be at most half the "
                     f"window {window!r} (as torch)")
  b, h, w, c = x.shape
  oh = _pool_size(h, kh, sh, ph, dh, ceil_mode)
  ow = _pool_size(w, kw, sw, pw, dw, ceil_mode)
  if oh <= 0 or ow <= 0:
    raise ValueError(f"max_pool_with_indices: a {kh}x{kw} window (dilation {dh}x{dw}, padding "
                     f"{ph}x{pw}) does not fit a {h}x{w} input")
  rows, rows_in = _window_positions(h, oh, kh, sh, ph, dh)  # [oh, kh]
  cols, cols_in = _window_positions(w, ow, kw, sw, pw, dw)  # [ow, kw]
  # patches[b, i, j, t, c]: tap t = a * kw + e of window (i, j) -> pixel (rows[i, a], cols[j, e]).
  patches = x[:, rows[:, None, :, None], cols[None, :, None, :], :]  # [B, oh, ow, kh, kw, C]
  patches = patches.reshape(b, oh, ow, kh * kw, c)
  inside = jnp.asarray((rows_in[:, None, :, None] & cols_in[None, :, None, :])
                       .reshape(oh, ow, kh * kw, 1))
  taps = jnp.where(inside, patches, _lowest(x.dtype))
  top = jnp.max(taps, axis=3, keepdims=True)
  first = jnp.argmax(inside & (taps == top), axis=3)
  if jnp.issubdtype(x.dtype, jnp.floating):
    nan = inside & jnp.isnan(taps)
    last_nan = kh * kw - 1 - jnp.argmax(nan[:, :, :, ::-1], axis=3)
    first = jnp.where(jnp.any(nan, axis=3), last_nan, first)
  # Values by gathering the chosen tap, so the gradient goes to that pixel only (as torch).
  pooled = jnp.take_along_axis(patches, first[:, :, :, None], axis=3)[:, :, :, 0]
  row = jnp.asarray(np.arange(oh) * sh - ph)[None, :, None, None] + (first // kw) * dh
  col = jnp.asarray(np.arange(ow) * sw - pw)[None, None, :, None] + (first % kw) * dw
  return pooled, (row * w + col).astype(jnp.int32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _unpool(x, indices, plane: int):
  b, _, _, c = x.shape
  out = jnp.zeros((b, plane, c), x.dtype)
  return out.at[jnp.arange(b)[:, None, None], indices.reshape(b, -1, c),
                jnp.arange(c)[None, None, :]].set(x.reshape(b, -1, c), mode="drop")


def _unpool_fwd(x, indices, plane):
  return _unpool(x, indices, plane), indices


def _unpool_bwd(plane, indices, g):
  b, c = g.shape[0], g.shape[-1]
  dx = g.at[jnp.arange(b)[:, None, None], indices.reshape(b, -1, c),
            jnp.arange(c)[None, None, :]].get(mode="fill", fill_value=0)
  return dx.reshape(indices.shape), None


_unpool.defvjp(_unpool_fwd, _unpool_bwd)


def max_unpool(x: jax.Array, indices: jax.Array, output_size: Sequence[int]) -> jax.Array:
  """torch `F.max_unpool2d(x, indices, ..., output_size)`: scatters values to their indices.

  Args:
    x: `[B, h, w, C]` pooled values.
    indices: `[B, h, w, C]` integer flat positions `h * W + w` in the output plane (as given
      by `max_pool_with_indices`).
    output_size: `(H, W)` of the output (static).
  Returns:
    `[B, H, W, C]`: zeros except `out[b, i // W, i % W, c] = x[b, ..., c]` at each index `i`.
    Indices outside `[0, H*W)` are dropped (torch raises; a traced check cannot). Repeated
    indices (overlapping pool windows) carry equal values, so which write lands is moot.
    The gradient with respect to `x` is a gather of the output gradient at the indices (torch's
    rule, also for repeated indices); indices get none.
  """
  _check_nhwc(x, "max_unpool")
  if tuple(indices.shape) != tuple(x.shape):
    raise ValueError(f"max_unpool: indices shape {tuple(indices.shape)} must equal the shape "
                     f"of x {tuple(x.shape)}")
  if not jnp.issubdtype(indices.dtype, jnp.integer):
    raise ValueError(f"max_unpool: indices must be integers; got {indices.dtype}")
  if isinstance(output_size, int) or len(output_size) != 2:
    raise ValueError(f"max_unpool: output_size must be (H, W); got {output_size!r}")
  hh, ww = pair(tuple(output_size), "max_unpool output_size", 1)
  out = _unpool(x, indices, hh * ww)
  return out.reshape(x.shape[0], hh, ww, x.shape[-1])


# ---------------------------------------------------------------------------------------------
# Adaptive and pyramid pooling.

def _adaptive_bins(size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
  """torch's adaptive bins `[floor(i*size/n), ceil((i+1)*size/n))` as `[n, max_len]` clipped
  positions and a mask of the real ones (bins may overlap, or repeat when n > size)."""
  start = (np.arange(n) * size) // n
  end = -(-((np.arange(n) + 1) * size) // n)
  length = int((end - start).max())
  pos = start[:, None] + np.arange(length)[None, :]
  return np.minimum(pos, size - 1), pos < end[:, None]


def _max_along(x: jax.Array, axis: int, n: int) -> jax.Array:
  """Adaptive max over `axis` into `n` bins; the gradient goes to the first maximum."""
  pos, real = _adaptive_bins(x.shape[axis], n)
  taps = jnp.take(x, jnp.asarray(pos), axis=axis)  # the axis becomes [n, length]
  shape = [1] * taps.ndim
  shape[axis:axis + 2] = real.shape
  real = jnp.asarray(real).reshape(shape)
  masked = jnp.where(real, taps, _lowest(x.dtype))
  top = jnp.max(masked, axis=axis + 1, keepdims=True)
  hit = real & ((masked == top) | jnp.isnan(masked) if jnp.issubdtype(x.dtype, jnp.floating)
                else masked == top)
  first = jnp.argmax(hit, axis=axis + 1, keepdims=True)
  return jnp.squeeze(jnp.take_along_axis(taps, first, axis=axis + 1), axis + 1)


def adaptive_max_pool(x: jax.Array, output_size: int | Sequence[int]) -> jax.Array:
  """torch `AdaptiveMaxPool2d(output_size)`: `[B, H, W, C]` -> `[B, oh, ow, C]`.

  Bin i of an axis covers `[floor(i*H/oh), ceil((i+1)*H/oh))`. The max of a bin is taken as
  a max over columns then over rows, which picks the same pixel as torch's row-major scan (the
  first maximum), and the gradient goes to that pixel only, as in torch.
  """
  _check_nhwc(x, "adaptive_max_pool")
  oh, ow = pair(output_size, "adaptive_max_pool output_size", 1)
  return _max_along(_max_along(x, 2, ow), 1, oh)


def spatial_pyramid_pool(x: jax.Array, levels: Sequence[int] = (1, 2, 4)) -> jax.Array:
  """SPP-net (He et al. 2014): adaptive max pooling to `n x n` bins for each level `n`,
  flattened and concatenated into a fixed length whatever the input size.

  `[B, H, W, C]` -> `[B, C * sum(n * n)]`. Each level is flattened in torch's NCHW order
  (channel, then bin row, then bin column), so the result equals
  `torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in levels], 1)` and a converted
  torch fully-connected layer needs no permutation.
  """
  _check_nhwc(x, "spatial_pyramid_pool")
  if isinstance(levels, int) or len(levels) == 0:
    raise ValueError(f"spatial_pyramid_pool: levels must be a non-empty sequence of ints; "
                     f"got {levels!r}")
  parts = []
  for n in levels:
    p = adaptive_max_pool(x, pair(n, "spatial_pyramid_pool level", 1))
    parts.append(jnp.transpose(p, (0, 3, 1, 2)).reshape(x.shape[0], -1))
  return jnp.concatenate(parts, axis=1)


class PyramidPooling(nn.Module):
  """PSPNet's pyramid pooling module (Zhao et al. 2017) on `[B, H, W, C]`.

  For each bin size n: `adaptive_avg_pool` to n x n, 1x1 conv to `features` channels (no
  bias; default `C // len(bins)`), BatchNorm (torch hyperparameters: eps 1e-5, momentum 0.1)
  and ReLU, then `resize` bilinear back to H x W (`align_corners`: False as mmsegmentation;
  the original PSPNet code used True). Output: `concat([x, branch_1, ...], -1)`, i.e.
  `[B, H, W, C + len(bins) * features]`. Submodules: `conv{i}`, `bn{i}` for bin i (0-based).
  """
  bins: Sequence[int] = (1, 2, 3, 6)
  features: int | None = None
  align_corners: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _check_nhwc(x, "PyramidPooling")
    features = self.features or x.shape[-1] // len(self.bins)
    if features <= 0:
      raise ValueError(f"PyramidPooling: {x.shape[-1]} channels give no features per bin for "
                       f"{len(self.bins)} bins; set features")
    outs = [x]
    for i, n in enumerate(self.bins):
      y = adaptive_avg_pool(x, pair(n, "PyramidPooling bin", 1))
      y = nn.Conv(features, (1, 1), use_bias=False, dtype=self.dtype, name=f"conv{i}",
                  conv_general_dilated=conv_general_dilated)(y)
      y = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                       dtype=self.dtype, name=f"bn{i}")(y)
      outs.append(resize(nn.relu(y), x.shape[1:3], "bilinear", self.align_corners))
    return jnp.concatenate([o.astype(self.dtype) for o in outs], axis=-1)
