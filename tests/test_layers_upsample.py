"""Upsampling, pooling and convolution layers against NumPy loops written here (no torch).

Each reference is a direct per-pixel loop of the torch rule the layer claims (torch's own
outputs are compared in test_layers_upsample_torch.py). Sizes are tiny so the loops are quick.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxcv.layers import conv_variants as cv
from jaxcv.layers import pooling, upsample

RNG = np.random.default_rng(0)


def normal(*shape):
  return RNG.normal(size=shape).astype(np.float32)


# ----------------------------------------------------------------------------- references

def np_pool_size(size, k, s, p, d, ceil_mode):
  span = size + 2 * p - d * (k - 1) - 1
  out = (math.ceil(span / s) if ceil_mode else span // s) + 1
  if ceil_mode and (out - 1) * s >= size + p:
    out -= 1
  return out


def np_max_pool(x, k, s, p, d=(1, 1), ceil_mode=False):
  """torch's CPU loop: first pixel inside the window, then replace on a strictly larger one."""
  b, h, w, c = x.shape
  oh, ow = (np_pool_size(n, k[i], s[i], p[i], d[i], ceil_mode) for i, n in enumerate((h, w)))
  vals, idx = np.zeros((b, oh, ow, c), x.dtype), np.zeros((b, oh, ow, c), np.int64)
  for n, i, j, ch in np.ndindex(b, oh, ow, c):
    best = None
    for a, e in np.ndindex(*k):
      r, q = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + e * d[1]
      if 0 <= r < h and 0 <= q < w and (best is None or x[n, r, q, ch] > best):
        best, idx[n, i, j, ch] = x[n, r, q, ch], r * w + q
    vals[n, i, j, ch] = best
  return vals, idx


def np_max_unpool(x, indices, size):
  out = np.zeros((x.shape[0], size[0] * size[1], x.shape[-1]), x.dtype)
  for n, i, j, ch in np.ndindex(*x.shape):
    out[n, indices[n, i, j, ch], ch] = x[n, i, j, ch]
  return out.reshape(x.shape[0], size[0], size[1], x.shape[-1])


def np_resize(x, size, method, align_corners):
  """Per output pixel: source coordinate and taps by torch's rules, summed directly."""
  b, h, w, c = x.shape
  out = np.zeros((b, *size, c), np.float64)
  a = -0.75

  def cubic(t):
    t = abs(t)
    if t <= 1:
      return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
    if t < 2:
      return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
    return 0.0

  def taps(dst, n_in, n_out):
    if method == "nearest":
      return [(min(int(np.floor(dst * np.float32(n_in) / np.float32(n_out))), n_in - 1), 1.0)]
    if align_corners:
      src = dst * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
      src = (dst + 0.5) * n_in / n_out - 0.5
    if method == "bilinear":
      src = max(src, 0.0)
      lo = min(int(np.floor(src)), n_in - 1)
      return [(lo, 1 - (src - lo)), (min(lo + 1, n_in - 1), src - lo)]
    lo = int(np.floor(src))
    return [(min(max(lo + m, 0), n_in - 1), cubic(src - (lo + m))) for m in (-1, 0, 1, 2)]

  for i, j in np.ndindex(*size):
    for (r, wr) in taps(i, h, size[0]):
      for (q, wq) in taps(j, w, size[1]):
        out[:, i, j] += wr * wq * x[:, r, q]
  return out


def np_adaptive_max(x, n):
  b, h, w, c = x.shape
  out = np.zeros((b, n, n, c), x.dtype)
  for i, j in np.ndindex(n, n):
    r0, r1 = (i * h) // n, -(-((i + 1) * h) // n)
    q0, q1 = (j * w) // n, -(-((j + 1) * w) // n)
    out[:, i, j] = x[:, r0:r1, q0:q1].max(axis=(1, 2))
  return out


def np_conv2d(x, k, s, p, d, groups):
  """Direct sum: out[i, j, o] = sum x[i*s - p + a*d, j*s - p + e*d, group(o) inputs] * k."""
  b, h, w, _ = x.shape
  kh, kw, cin_g, cout = k.shape
  oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
  ow = (w + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
  out = np.zeros((b, oh, ow, cout), np.float64)
  cout_g = cout // groups
  for i, j, a, e in np.ndindex(oh, ow, kh, kw):
    r, q = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + e * d[1]
    if 0 <= r < h and 0 <= q < w:
      for g in range(groups):
        xs = x[:, r, q, g * cin_g:(g + 1) * cin_g]
        out[:, i, j, g * cout_g:(g + 1) * cout_g] += xs @ k[a, e, :, g * cout_g:(g + 1) * cout_g]
  return out


def np_conv_transpose(x, k, s, p, op, d, groups):
  """Scatter-add: input pixel (i, j) adds x @ k[a, e] at (i*s + a*d, j*s + e*d), then crop p."""
  b, h, w, _ = x.shape
  kh, kw, cin_g, cout = k.shape
  full = np.zeros((b, (h - 1) * s[0] + d[0] * (kh - 1) + 1 + op[0],
                   (w - 1) * s[1] + d[1] * (kw - 1) + 1 + op[1], cout), np.float64)
  cout_g = cout // groups
  for i, j, a, e in np.ndindex(h, w, kh, kw):
    for g in range(groups):
      full[:, i * s[0] + a * d[0], j * s[1] + e * d[1], g * cout_g:(g + 1) * cout_g] += (
          x[:, i, j, g * cin_g:(g + 1) * cin_g] @ k[a, e, :, g * cout_g:(g + 1) * cout_g])
  return full[:, p[0]:full.shape[1] - p[0], p[1]:full.shape[2] - p[1]]


# ----------------------------------------------------------------------------- unpooling

@pytest.mark.parametrize("factor", [2, 3, (2, 3)])
def test_nearest_and_bed_of_nails_unpool(factor):
  x = normal(2, 3, 4, 5)
  fh, fw = (factor, factor) if isinstance(factor, int) else factor
  want = np.repeat(np.repeat(x, fh, axis=1), fw, axis=2)
  np.testing.assert_array_equal(pooling.nearest_unpool(jnp.asarray(x), factor), want)
  nails = np.zeros((2, 3 * fh, 4 * fw, 5), np.float32)
  nails[:, ::fh, ::fw] = x
  np.testing.assert_array_equal(pooling.bed_of_nails_unpool(jnp.asarray(x), factor), nails)


# ----------------------------------------------------------------------------- max pool / unpool

POOL = jax.jit(pooling.max_pool_with_indices, static_argnums=(1, 2, 3, 4, 5))
POOL_CASES = [  # window, stride, padding, dilation, ceil_mode
    ((2, 2), (2, 2), (0, 0), (1, 1), False),    # SegNet
    ((3, 3), (2, 2), (1, 1), (1, 1), False),    # ResNet stem
    ((3, 3), (1, 1), (1, 1), (1, 1), False),    # overlapping windows: repeated indices
    ((3, 2), (2, 1), (1, 0), (2, 1), True),     # dilation, ceil_mode, uneven
]


@pytest.mark.parametrize("window,stride,padding,dilation,ceil_mode", POOL_CASES)
def test_max_pool_with_indices_and_unpool_match_numpy_loops(window, stride, padding, dilation,
                                                            ceil_mode):
  x = np.round(normal(2, 7, 9, 3) * 2) / 2  # many ties: the first maximum must win
  x[0, :, :, 0] = -np.inf                   # all -inf windows take their first inside pixel
  pooled, idx = POOL(jnp.asarray(x), window, stride, padding, dilation, ceil_mode)
  want, want_idx = np_max_pool(x, window, stride, padding, dilation, ceil_mode)
  assert idx.dtype == jnp.int32
  np.testing.assert_array_equal(pooled, want)
  np.testing.assert_array_equal(idx, want_idx)
  x = np.where(np.isinf(x), 0.0, x).astype(np.float32)
  pooled, idx = POOL(jnp.asarray(x), window, stride, padding, dilation, ceil_mode)
  np.testing.assert_array_equal(pooling.max_unpool(pooled, idx, (7, 9)),
                                np_max_unpool(np.asarray(pooled), np.asarray(idx), (7, 9)))


def test_max_unpool_arbitrary_indices_and_gradient_is_a_gather():
  x = normal(2, 3, 4, 2)
  # Each (example, channel) plane gets 12 distinct random positions among 6 * 5 = 30.
  idx = np.stack([np.stack([RNG.permutation(30)[:12].reshape(3, 4) for _ in range(2)], -1)
                  for _ in range(2)]).astype(np.int32)
  unpool = jax.jit(pooling.max_unpool, static_argnums=2)
  np.testing.assert_array_equal(unpool(jnp.asarray(x), jnp.asarray(idx), (6, 5)),
                                np_max_unpool(x, idx, (6, 5)))
  check_grads(lambda v: unpool(v, jnp.asarray(idx), (6, 5)), (jnp.asarray(x),), order=1,
              modes=["rev"])
  # Repeated indices (overlapping windows): each copy gets the whole output gradient (torch).
  dup = np.zeros_like(idx)
  g = normal(2, 6, 5, 2)
  dx = jax.grad(lambda v: jnp.sum(unpool(v, jnp.asarray(dup), (6, 5)) * g))(jnp.asarray(x))
  np.testing.assert_array_equal(dx, np.broadcast_to(g[:, :1, :1], x.shape))


def test_max_pool_gradient_goes_to_the_chosen_pixel():
  x = np.round(normal(2, 6, 6, 2))
  g = normal(2, 3, 3, 2)
  dx = jax.grad(lambda v: jnp.sum(POOL(v, (2, 2), (2, 2), (0, 0), (1, 1), False)[0] * g))(
      jnp.asarray(x))
  _, idx = np_max_pool(x, (2, 2), (2, 2), (0, 0))
  want = np.zeros((2, 36, 2), np.float32)
  for n, i, j, c in np.ndindex(*idx.shape):
    want[n, idx[n, i, j, c], c] += g[n, i, j, c]
  np.testing.assert_array_equal(dx, want.reshape(x.shape))


def test_max_pool_and_unpool_under_vmap():
  x = normal(3, 2, 6, 8, 2)
  pooled, idx = jax.vmap(lambda v: POOL(v, (2, 2), (2, 2), (0, 0), (1, 1), False))(x)
  for k in range(3):
    want, want_idx = np_max_pool(x[k], (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(pooled[k], want)
    np.testing.assert_array_equal(idx[k], want_idx)
  up = jax.vmap(lambda v, i: pooling.max_unpool(v, i, (6, 8)))(pooled, idx)
  np.testing.assert_array_equal(up[1], np_max_unpool(np.asarray(pooled[1]), np.asarray(idx[1]),
                                                     (6, 8)))


# ----------------------------------------------------------------------------- resize

RESIZE = jax.jit(upsample.resize, static_argnums=(1, 2, 3))


@pytest.mark.parametrize("size", [(11, 8), (3, 2), (1, 1)])
@pytest.mark.parametrize("method,align_corners", [("bilinear", False), ("bilinear", True),
                                                  ("bicubic", False), ("bicubic", True),
                                                  ("nearest", False)])
def test_resize_matches_numpy_loop(size, method, align_corners):
  x = normal(2, 5, 4, 3)
  got = RESIZE(jnp.asarray(x), size, method, align_corners)
  want = np_resize(x, size, method, align_corners)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_resize_nearest_keeps_integer_labels_and_grads_flow():
  labels = RNG.integers(0, 21, size=(2, 5, 7, 1)).astype(np.int32)
  got = upsample.resize(jnp.asarray(labels), (9, 3), "nearest")
  assert got.dtype == jnp.int32
  np.testing.assert_array_equal(got, np_resize(labels, (9, 3), "nearest", False))
  x = jnp.asarray(normal(1, 4, 5, 2))
  for method, ac in [("bilinear", False), ("bicubic", True)]:
    check_grads(lambda v, m=method, a=ac: RESIZE(v, (7, 3), m, a), (x,), order=1, modes=["rev"])


def test_resize_vmap_equals_per_example():
  x = normal(3, 1, 5, 4, 2)
  got = jax.vmap(lambda v: upsample.resize(v, (8, 6)))(jnp.asarray(x))
  for k in range(3):
    np.testing.assert_allclose(got[k], np_resize(x[k], (8, 6), "bilinear", False), atol=1e-5)


# ----------------------------------------------------------------------------- adaptive / SPP

def test_adaptive_max_pool_and_spp_match_numpy_loop():
  x = np.round(normal(2, 7, 10, 3) * 2)
  pool = jax.jit(pooling.adaptive_max_pool, static_argnums=1)
  for n in (3, 8):  # 3 bins of 7 rows overlap; 8 bins of 7 rows repeat
    np.testing.assert_array_equal(pool(jnp.asarray(x), n),
                                  np_adaptive_max(x, n))
  spp = jax.jit(pooling.spatial_pyramid_pool, static_argnums=1)(jnp.asarray(x), (1, 2, 4))
  want = np.concatenate([np_adaptive_max(x, n).transpose(0, 3, 1, 2).reshape(2, -1)
                         for n in (1, 2, 4)], axis=1)
  assert spp.shape == (2, 3 * (1 + 4 + 16))
  np.testing.assert_array_equal(spp, want)
  # The vector length is fixed whatever the input size (the point of SPP).
  other = jax.eval_shape(pooling.spatial_pyramid_pool, jax.ShapeDtypeStruct((1, 13, 5, 3),
                                                                           jnp.float32))
  assert other.shape == (1, spp.shape[1])


# ----------------------------------------------------------------------------- convolutions

CONV = jax.jit(cv.conv2d, static_argnums=(2, 3, 4, 5))
CONV_T = jax.jit(cv.conv_transpose, static_argnums=(2, 3, 4, 5, 6))


@pytest.mark.parametrize("k,s,p,d,groups", [
    ((3, 3), (1, 1), (2, 2), (2, 2), 1),   # DeepLab atrous, "same" size
    ((3, 3), (2, 2), (1, 1), (1, 1), 2),
    ((3, 3), (1, 1), (3, 3), (3, 3), 4),   # depthwise atrous
    ((1, 3), (1, 2), (0, 1), (1, 1), 1),
])
def test_conv2d_matches_numpy_loop(k, s, p, d, groups):
  x = normal(2, 7, 8, 4)
  kernel = normal(*k, 4 // groups, 4)
  bias = normal(4)
  got = CONV(jnp.asarray(x), jnp.asarray(kernel), s, p, d, groups, bias=jnp.asarray(bias))
  np.testing.assert_allclose(got, np_conv2d(x, kernel, s, p, d, groups) + bias, atol=1e-5)


@pytest.mark.parametrize("k,s,p,op,d,groups", [
    ((4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1),   # FCN 2x
    ((4, 3), (2, 3), (0, 1), (1, 2), (1, 1), 1),   # output_padding past the last tap
    ((3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 2),   # output_padding, groups
    ((3, 2), (3, 1), (0, 1), (2, 0), (2, 1), 1),   # dilation, output_padding < stride
    ((3, 3), (1, 1), (0, 0), (1, 1), (2, 2), 1),   # output_padding < dilation (stride 1)
])
def test_conv_transpose_matches_numpy_scatter_loop(k, s, p, op, d, groups):
  x = normal(2, 4, 5, 4)
  kernel = normal(*k, 4 // groups, 6)
  got = CONV_T(jnp.asarray(x), jnp.asarray(kernel), s, p, op, d, groups)
  want = np_conv_transpose(x, kernel, s, p, op, d, groups)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_bilinear_kernel_formula_and_upsampling():
  for k in (3, 4, 5, 16):
    kernel = cv.bilinear_upsample_kernel(k, 3)
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 else factor - 0.5
    for a, e, i, o in np.ndindex(k, k, 3, 3):
      want = (1 - abs(a - center) / factor) * (1 - abs(e - center) / factor) if i == o else 0.0
      assert abs(kernel[a, e, i, o] - want) < 1e-7
  # k = 2s, stride s, padding s/2 is bilinear upsampling (half-pixel) away from the border.
  x = normal(1, 6, 5, 3)
  for s in (2, 4):
    up = CONV_T(jnp.asarray(x), jnp.asarray(cv.bilinear_upsample_kernel(2 * s, 3)), s, s // 2,
                0, 1, 1)
    want = np_resize(x, (6 * s, 5 * s), "bilinear", False)
    assert up.shape == want.shape
    np.testing.assert_allclose(up[:, s:-s, s:-s], want[:, s:-s, s:-s], atol=1e-5)


def test_separable_conv_matches_numpy_composition():
  x = normal(2, 9, 8, 3)
  dw, pw = normal(3, 3, 1, 6), normal(1, 1, 6, 5)  # depth multiplier 2
  got = jax.jit(cv.separable_conv, static_argnums=(3, 4, 5))(
      jnp.asarray(x), jnp.asarray(dw), jnp.asarray(pw), 1, 2, 2)
  mid = np_conv2d(x, dw, (1, 1), (2, 2), (2, 2), groups=3)
  np.testing.assert_allclose(got, np_conv2d(mid, pw, (1, 1), (0, 0), (1, 1), 1), atol=1e-5)


def test_modules_apply_their_functional_forms():
  x = jnp.asarray(normal(2, 9, 9, 4))
  key = jax.random.key(0)
  conv = cv.Conv2d(6, 3, padding=2, dilation=2)
  v = jax.jit(conv.init)(key, x)
  assert v["params"]["kernel"].shape == (3, 3, 4, 6)
  np.testing.assert_allclose(jax.jit(conv.apply)(v, x), np_conv2d(
      np.asarray(x), np.asarray(v["params"]["kernel"]), (1, 1), (2, 2), (2, 2), 1)
      + np.asarray(v["params"]["bias"]), atol=1e-5)
  up = cv.ConvTranspose(4, 4, 2, 1, use_bias=False, kernel_init=cv.bilinear_upsample_init)
  v = jax.jit(up.init)(key, x)
  np.testing.assert_array_equal(v["params"]["kernel"], cv.bilinear_upsample_kernel(4, 4))
  np.testing.assert_allclose(jax.jit(up.apply)(v, x), np_conv_transpose(
      np.asarray(x), cv.bilinear_upsample_kernel(4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1),
      atol=1e-5)
  sep = cv.SeparableConv(5, 3, dilation=2, mid_norm=True, mid_relu=True)
  v = jax.jit(sep.init)(key, x)
  p = v["params"]
  mid = np_conv2d(np.asarray(x), np.asarray(p["depthwise"]["kernel"]), (1, 1), (2, 2), (2, 2), 4)
  stats = v["batch_stats"]["bn"]
  mid = ((mid - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * p["bn"]["scale"]
         + p["bn"]["bias"])
  want = np_conv2d(np.maximum(mid, 0), np.asarray(p["pointwise"]["kernel"]), (1, 1), (0, 0),
                   (1, 1), 1)
  np.testing.assert_allclose(jax.jit(sep.apply)(v, x), want, atol=1e-5)


def test_pyramid_pooling_shapes_and_global_branch():
  x = jnp.asarray(normal(2, 12, 12, 8))
  ppm = pooling.PyramidPooling(bins=(1, 2, 3, 6))
  v = jax.jit(ppm.init)(jax.random.key(0), x)
  y = jax.jit(ppm.apply)(v, x)
  assert y.shape == (2, 12, 12, 8 + 4 * 2)
  np.testing.assert_array_equal(y[..., :8], x)
  # Bin 1: global mean, 1x1 conv, BN (fresh: identity up to eps), ReLU, spread everywhere.
  g = np.asarray(x).mean(axis=(1, 2)) @ np.asarray(v["params"]["conv0"]["kernel"][0, 0])
  want = np.maximum(g / np.sqrt(1 + 1e-5), 0)[:, None, None, :]
  np.testing.assert_allclose(y[..., 8:10], np.broadcast_to(want, (2, 12, 12, 2)), atol=1e-5)


# ----------------------------------------------------------------------------- bad input

def test_bad_input_raises():
  x4 = jnp.zeros((1, 4, 4, 2))
  cases = [
      lambda: pooling.nearest_unpool(jnp.zeros((4, 4, 2)), 2),
      lambda: pooling.bed_of_nails_unpool(x4, 0),
      lambda: pooling.max_pool_with_indices(jnp.zeros((4, 4, 2)), 2),
      lambda: pooling.max_pool_with_indices(x4, 2, 2, 2),        # padding > window / 2
      lambda: pooling.max_pool_with_indices(x4, 5),              # window does not fit
      lambda: pooling.max_unpool(x4, jnp.zeros((1, 4, 4, 3), jnp.int32), (8, 8)),
      lambda: pooling.max_unpool(x4, jnp.zeros((1, 4, 4, 2)), (8, 8)),   # float indices
      lambda: pooling.max_unpool(x4, jnp.zeros((1, 4, 4, 2), jnp.int32), (8, -1)),
      lambda: pooling.adaptive_max_pool(x4, 0),
      lambda: pooling.spatial_pyramid_pool(x4, ()),
      lambda: upsample.resize(x4, (0, 3)),
      lambda: upsample.resize(x4, (3, 3), "area"),
      lambda: upsample.resize(x4, (3, 3), "nearest", align_corners=True),
      lambda: upsample.resize(jnp.zeros((1, 4, 4, 1), jnp.int32), (3, 3), "bilinear"),
      lambda: upsample.resize(jnp.zeros((4, 4)), (3, 3)),
      lambda: cv.conv2d(jnp.zeros((4, 4, 2)), jnp.zeros((3, 3, 2, 2))),
      lambda: cv.conv2d(x4, jnp.zeros((3, 3, 3, 2))),            # channel mismatch
      lambda: cv.conv2d(x4, jnp.zeros((3, 3, 1, 3)), groups=2),  # out not divisible
      lambda: cv.conv2d(x4, jnp.zeros((3, 3, 2, 2)), padding=-1),
      lambda: cv.conv2d(x4, jnp.zeros((3, 3, 2, 2)), dilation=3),  # does not fit
      lambda: cv.conv2d(x4, jnp.zeros((3, 3, 2, 2)), bias=jnp.zeros(3)),
      lambda: cv.conv_transpose(x4, jnp.zeros((3, 3, 2, 2)), 2, 1, output_padding=2),
      lambda: cv.conv_transpose(x4, jnp.zeros((3, 3, 2, 2)), 1, 0, output_padding=1),
      lambda: cv.conv_transpose(x4, jnp.zeros((3, 3, 2, 2)), 1, 4),  # crops everything
      lambda: cv.conv_transpose(x4, jnp.zeros((3, 2, 2))),
      lambda: cv.separable_conv(x4, jnp.zeros((3, 3, 2, 2)), jnp.zeros((1, 1, 2, 2))),
      lambda: cv.separable_conv(x4, jnp.zeros((3, 3, 1, 2)), jnp.zeros((3, 3, 2, 2))),
      lambda: cv.convert_torch_conv_transpose_weight(np.zeros((3, 2, 4, 4)), groups=2),
      lambda: cv.bilinear_upsample_kernel(0, 3),
  ]
  for i, case in enumerate(cases):
    with pytest.raises(ValueError):
      case()
      pytest.fail(f"case {i} did not raise")


def test_module_bad_input_raises():
  with pytest.raises(ValueError, match="NHWC"):
    cv.ConvTranspose(2).init(jax.random.key(0), jnp.zeros((4, 4, 2)))
  with pytest.raises(ValueError, match="groups"):
    cv.Conv2d(2, groups=3).init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)))
