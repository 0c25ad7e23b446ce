"""A drop-in `lax.conv_general_dilated` with faster CPU paths for two kinds of convolution.

Why: XLA's CPU backend computes a convolution's kernel gradient as another convolution, which
for 1x1 kernels runs about 20x slower than the forward pass (1x1 conv 256->64 at 56x56,
batch 8: 3.8 ms forward, 69-76 ms kernel gradient; `benchmarks/cpu_backward_ops.py`). A
1x1 kernel's gradient is a plain matmul of the (strided) input and the output gradient:
19 ms. For larger kernels the same rewrite (patches or one matmul per kernel tap) measured
slower than XLA's own, so they keep it. The forward pass and the input gradient are XLA's
in every case, so outputs are unchanged; on GPU/TPU, whose convolution gradients are fast,
the plain `lax.conv_general_dilated` is used throughout.

Depthwise convolutions (groups = channels, one output per channel, stride 1: DeepLabv3+'s
atrous separable convs, MobileNet) are slow on XLA's CPU backend in both directions. The same
convolution as a sum of shifted, per-channel scaled copies of the input, with a hand-written
gradient (the input gradient is that sum over the output gradient with the kernel flipped;
each tap's kernel gradient a sum of products), measured 7-41x faster forward and 3-8x faster
forward + backward (`benchmarks/depthwise_conv.py`, BENCHMARKS.md). So on the CPU those run
as shifted sums (`_depthwise`); values equal XLA's convolution up to float rounding (the
summation order differs).

Use: `nn.Conv(..., conv_general_dilated=conv_general_dilated)`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

# NHWC input, HWIO kernel, NHWC output, as flax builds them for 2-D convolutions.
_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1),
                                 out_spec=(0, 3, 1, 2))


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None, **kwargs):
  """`lax.conv_general_dilated` (same arguments); undilated, ungrouped, unpadded 1x1 NHWC
  convolutions on the CPU backend get a matmul kernel gradient, and stride-1 depthwise NHWC
  convolutions (explicit padding, any dilation) run as shifted sums."""
  dims = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  # both CPU paths: NHWC/HWIO, explicit padding, no input dilation, no extra lax arguments
  cpu_nhwc = (jax.default_backend() == "cpu" and lhs.ndim == 4 and dims == _NHWC
              and not kwargs and not isinstance(padding, str)
              and all(d == 1 for d in (lhs_dilation or ())))
  if (cpu_nhwc and feature_group_count > 1 and feature_group_count == lhs.shape[-1]
      and rhs.shape[2:] == (1, lhs.shape[-1]) and all(s == 1 for s in window_strides)):
    pad = tuple(tuple(int(v) for v in p) for p in padding)
    return _depthwise(lhs, rhs, pad, tuple(rhs_dilation or (1, 1)), precision)
  fast = (cpu_nhwc and rhs.shape[:2] == (1, 1) and feature_group_count == 1
          and all(tuple(p) == (0, 0) for p in padding)
          and all(d == 1 for d in (rhs_dilation or ())))
  if fast:
    return _conv1x1(lhs, rhs, tuple(window_strides), precision)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      precision=precision, **kwargs)


def _forward(lhs, rhs, strides, precision):
  return lax.conv_general_dilated(lhs, rhs, strides, ((0, 0), (0, 0)),
                                  dimension_numbers=_NHWC, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv1x1(lhs, rhs, strides, precision):
  return _forward(lhs, rhs, strides, precision)


def _conv1x1_fwd(lhs, rhs, strides, precision):
  return _forward(lhs, rhs, strides, precision), (lhs, rhs)


def _conv1x1_bwd(strides, precision, residuals, dy):
  lhs, rhs = residuals
  _, vjp_lhs = jax.vjp(lambda x: _forward(x, rhs, strides, precision), lhs)
  (dx,) = vjp_lhs(dy)
  ho, wo = dy.shape[1:3]
  # The input pixels the 1x1 kernel saw: every stride-th one.
  seen = lhs[:, :strides[0] * (ho - 1) + 1:strides[0], :strides[1] * (wo - 1) + 1:strides[1]]
  dk = jnp.einsum("bhwc,bhwo->co", seen, dy, precision=precision,
                  preferred_element_type=jnp.float32)
  return dx, dk[None, None].astype(rhs.dtype)


_conv1x1.defvjp(_conv1x1_fwd, _conv1x1_bwd)


def _taps(x, kernel_hw, padding, dilation):
  """`(i, j, slice)` per kernel tap: the slice of `x [B, H, W, C]`, zero-padded by `padding`,
  that tap (i, j) of a stride-1 convolution with `dilation` multiplies."""
  (pt, pb), (pl, pr) = padding
  dh, dw = dilation
  kh, kw = kernel_hw
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  oh = xp.shape[1] - dh * (kh - 1)
  ow = xp.shape[2] - dw * (kw - 1)
  for i in range(kh):
    for j in range(kw):
      yield i, j, xp[:, i * dh:i * dh + oh, j * dw:j * dw + ow]


def _shifted_sum(x, kernel, padding, dilation):
  """Depthwise stride-1 convolution of `x [B, H, W, C]` with `kernel [kh, kw, 1, C]` as the
  sum over taps of shifted slices of the padded input times the tap's per-channel weight."""
  out = None
  for i, j, xs in _taps(x, kernel.shape[:2], padding, dilation):
    tap = xs * kernel[i, j, 0].astype(x.dtype)
    out = tap if out is None else out + tap
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise(lhs, rhs, padding, dilation, precision):
  del precision  # elementwise products: no matmul precision to choose
  return _shifted_sum(lhs, rhs, padding, dilation)


def _depthwise_fwd(lhs, rhs, padding, dilation, precision):
  return _depthwise(lhs, rhs, padding, dilation, precision), (lhs, rhs)


def _depthwise_bwd(padding, dilation, precision, residuals, dy):
  del precision
  lhs, rhs = residuals
  (pt, _), (pl, _) = padding
  dh, dw = dilation
  kh, kw = rhs.shape[:2]
  h, w = lhs.shape[1:3]
  # Input gradient: the transposed convolution, i.e. the same depthwise sum over `dy` with
  # the kernel flipped, `dy` padded (or, for padding beyond the kernel's reach, cropped:
  # lax.pad takes negative widths) so that it lands on the input's h x w.
  eh, ew = dh * (kh - 1), dw * (kw - 1)
  oh, ow = dy.shape[1:3]
  dy_p = lax.pad(dy, jnp.zeros((), dy.dtype), ((0, 0, 0), (eh - pt, h + pt - oh, 0),
                                               (ew - pl, w + pl - ow, 0), (0, 0, 0)))
  dx = _shifted_sum(dy_p, rhs[::-1, ::-1], ((0, 0), (0, 0)), dilation)
  # Kernel gradient: per tap, the sum over batch and pixels of input slice times dy.
  c = lhs.shape[-1]
  taps = [jnp.sum((xs * dy).reshape(-1, c), axis=0, dtype=jnp.float32)
          for _, _, xs in _taps(lhs, (kh, kw), padding, dilation)]
  dk = jnp.stack(taps).reshape(kh, kw, 1, c)
  return dx.astype(lhs.dtype), dk.astype(rhs.dtype)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)
