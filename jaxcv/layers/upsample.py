"""Image resizing with PyTorch's `F.interpolate` semantics, as separable interpolation matrices.

Why: torchvision's segmentation models (FCN, DeepLab) upsample their logits with
`F.interpolate(..., mode="bilinear", align_corners=False)`, and converted weights must give
torchvision's outputs. `jax.image.resize` differs from it (it antialiases when downsampling,
has no `align_corners`, and its cubic uses A = -0.5), so this module rebuilds torch's rules:

- every method except nearest is separable, so the `[out, in]` weight matrix of each axis is
  built in NumPy at trace time from the static sizes (float64, then cast) and applied with two
  einsums: exact, fast, differentiable (its gradient is the transposed matrix) and jit/vmap
  safe;
- nearest modes are a gather (`jnp.take`), so they also work on integer label maps.

All features are NHWC `[B, H, W, C]` (any leading batch axes `[..., H, W, C]` work too).
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

METHODS = ("bilinear", "bicubic", "nearest", "nearest-exact")
CUBIC_A = -0.75      # torch's bicubic coefficient (non-antialiased)
CUBIC_A_AA = -0.5    # torch's antialiased bicubic filter (PIL's), as in its C++ kernel


def _scale(size_in: int, size_out: int, align_corners: bool) -> float:
  """torch `area_pixel_compute_scale` for a given output size (no scale_factor)."""
  if align_corners:
    return (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
  return size_in / size_out


def _cubic1(t, a):  # |t| <= 1
  return ((a + 2) * t - (a + 3)) * t * t + 1


def _cubic2(t, a):  # 1 < |t| < 2
  return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a


def linear_matrix(size_in: int, size_out: int, align_corners: bool) -> np.ndarray:
  """`[size_out, size_in]` float64 weights of torch's linear interpolation along one axis.

  Source coordinate: `scale * dst` (align_corners) or `scale * (dst + 0.5) - 0.5` clamped at
  0; neighbours `floor(src)` and `floor(src) + 1` (clamped to the last pixel).
  """
  scale = _scale(size_in, size_out, align_corners)
  dst = np.arange(size_out, dtype=np.float64)
  src = scale * dst if align_corners else np.maximum(scale * (dst + 0.5) - 0.5, 0.0)
  i0 = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
  i1 = np.minimum(i0 + 1, size_in - 1)
  lam = src - i0
  m = np.zeros((size_out, size_in))
  np.add.at(m, (np.arange(size_out), i0), 1.0 - lam)
  np.add.at(m, (np.arange(size_out), i1), lam)
  return m


def cubic_matrix(size_in: int, size_out: int, align_corners: bool) -> np.ndarray:
  """`[size_out, size_in]` float64 weights of torch's bicubic interpolation (A = -0.75).

  Source coordinate as for linear but not clamped; taps `floor(src) - 1 .. floor(src) + 2`
  with indices clamped to the border (weights of clamped taps add up), as in torch.
  """
  scale = _scale(size_in, size_out, align_corners)
  dst = np.arange(size_out, dtype=np.float64)
  src = scale * dst if align_corners else scale * (dst + 0.5) - 0.5
  i0 = np.floor(src).astype(np.int64)
  t = src - i0
  weights = [_cubic2(t + 1, CUBIC_A), _cubic1(t, CUBIC_A), _cubic1(1 - t, CUBIC_A),
             _cubic2(2 - t, CUBIC_A)]
  m = np.zeros((size_out, size_in))
  for k, w in enumerate(weights):
    np.add.at(m, (np.arange(size_out), np.clip(i0 - 1 + k, 0, size_in - 1)), w)
  return m


def antialias_matrix(size_in: int, size_out: int, align_corners: bool,
                     method: str) -> np.ndarray:
  """`[size_out, size_in]` weights of torch's `antialias=True` bilinear / bicubic resize.

  torch's `_upsample_*2d_aa` rule: when downsampling by `scale > 1`, the filter (triangle, or
  cubic with A = -0.5) is stretched by `scale`; taps `[center - support, center + support)`
  with `center = scale * (dst + 0.5)`, clipped to the image, weights normalised to sum 1.
  """
  interp_size = 2 if method == "bilinear" else 4
  scale = _scale(size_in, size_out, align_corners)
  support = interp_size * 0.5 * scale if scale >= 1.0 else interp_size * 0.5
  invscale = 1.0 / scale if scale >= 1.0 else 1.0

  def filt(x):
    x = np.abs(x)
    if method == "bilinear":
      return np.maximum(0.0, 1.0 - x)
    return np.where(x < 1.0, _cubic1(x, CUBIC_A_AA),
                    np.where(x < 2.0, _cubic2(x, CUBIC_A_AA), 0.0))

  m = np.zeros((size_out, size_in))
  for i in range(size_out):
    center = scale * (i + 0.5)
    xmin = max(int(center - support + 0.5), 0)   # int() truncates, as torch's cast
    xmax = min(int(center + support + 0.5), size_in)
    w = filt((np.arange(xmin, xmax) - center + 0.5) * invscale)
    total = w.sum()
    m[i, xmin:xmax] = w / total if total != 0.0 else w
  return m


def nearest_indices(size_in: int, size_out: int, exact: bool = False) -> np.ndarray:
  """torch's source index per output pixel: `min(floor(dst * scale), in - 1)` ('nearest',
  legacy) or `min(floor((dst + 0.5) * scale), in - 1)` ('nearest-exact'), in float32 as torch
  computes it (`scale = float(in) / out`)."""
  scale = np.float32(size_in) / np.float32(size_out)
  dst = np.arange(size_out, dtype=np.float32)
  if exact:
    src = np.floor((dst + np.float32(0.5)) * scale)
  elif size_out == size_in:
    src = dst
  elif size_out == 2 * size_in:
    src = np.floor(dst / 2)
  else:
    src = np.floor(dst * scale)
  return np.minimum(src.astype(np.int64), size_in - 1)


def interpolation_matrix(size_in: int, size_out: int, method: str = "bilinear",
                         align_corners: bool = False, antialias: bool = False) -> np.ndarray:
  """The `[size_out, size_in]` float64 matrix that resizes one axis as torch does."""
  if method in ("nearest", "nearest-exact"):
    m = np.zeros((size_out, size_in))
    m[np.arange(size_out), nearest_indices(size_in, size_out, method == "nearest-exact")] = 1.0
    return m
  if antialias:  # torch takes its aa kernel for up- and downsampling alike
    return antialias_matrix(size_in, size_out, align_corners, method)
  if method == "bilinear":
    return linear_matrix(size_in, size_out, align_corners)
  return cubic_matrix(size_in, size_out, align_corners)


def _check(x, size, method, align_corners, antialias) -> tuple[int, int]:
  if x.ndim < 3:
    raise ValueError(f"resize expects features [..., H, W, C] (NHWC); got shape "
                     f"{tuple(x.shape)}")
  if method not in METHODS:
    raise ValueError(f"resize: unknown method {method!r}; known: {list(METHODS)}")
  if isinstance(size, int) or len(size) != 2:
    raise ValueError(f"resize: size must be (height, width); got {size!r}")
  oh, ow = (int(s) for s in size)
  if oh <= 0 or ow <= 0:
    raise ValueError(f"resize: output size must be positive; got {size!r}")
  if min(x.shape[-3:-1]) <= 0:
    raise ValueError(f"resize: input has an empty spatial axis: shape {tuple(x.shape)}")
  if method.startswith("nearest") and (align_corners or antialias):
    raise ValueError(f"resize: align_corners and antialias apply only to bilinear and bicubic "
                     f"(as in torch); got method {method!r}")
  if not method.startswith("nearest") and not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"resize: {method} needs floating-point features; got {x.dtype} "
                     f"(use method='nearest' for label maps)")
  return oh, ow


def resize(x: jax.Array, size: Sequence[int], method: str = "bilinear",
           align_corners: bool = False, antialias: bool = False) -> jax.Array:
  """torch `F.interpolate(x, size, mode=method, align_corners, antialias)` on NHWC features.

  Args:
    x: `[..., H, W, C]`, floating point (any dtype for the nearest modes).
    size: `(h, w)` output size (static ints).
    method: `"bilinear"`, `"bicubic"` (A = -0.75, taps clamped at the border), `"nearest"`
      (torch's legacy rule `src = floor(dst * in / out)`, not half-pixel) or
      `"nearest-exact"` (`floor((dst + 0.5) * in / out)`).
    align_corners: torch's flag for bilinear / bicubic: corners of input and output pixels'
      centres are aligned (`src = dst * (in - 1) / (out - 1)`) instead of half-pixel.
    antialias: torch's antialiased resize (bilinear / bicubic), which widens the filter when
      downsampling. Off by default, as in torch (unlike `jax.image.resize`).

  Returns:
    `[..., h, w, C]` in the dtype of `x`.
  """
  oh, ow = _check(x, size, method, align_corners, antialias)
  h, w = x.shape[-3:-1]
  if (oh, ow) == (h, w):  # every torch rule is the identity at scale 1
    return x
  if method.startswith("nearest"):
    exact = method == "nearest-exact"
    x = jnp.take(x, jnp.asarray(nearest_indices(h, oh, exact)), axis=-3)
    return jnp.take(x, jnp.asarray(nearest_indices(w, ow, exact)), axis=-2)
  mh = jnp.asarray(interpolation_matrix(h, oh, method, align_corners, antialias), x.dtype)
  mw = jnp.asarray(interpolation_matrix(w, ow, method, align_corners, antialias), x.dtype)
  hi = jax.lax.Precision.HIGHEST
  y = jnp.einsum("oh,...hwc->...owc", mh, x, precision=hi)
  return jnp.einsum("pw,...owc->...opc", mw, y, precision=hi)
