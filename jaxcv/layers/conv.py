"""A drop-in `lax.conv_general_dilated` whose 1x1 kernel gradient is a matmul on CPU.

Why: XLA's CPU backend computes a convolution's kernel gradient as another convolution, which
for 1x1 kernels runs about 20x slower than the forward pass (1x1 conv 256->64 at 56x56,
batch 8: 3.8 ms forward, 69-76 ms kernel gradient; `benchmarks/cpu_backward_ops.py`). A
1x1 kernel's gradient is a plain matmul of the (strided) input and the output gradient:
19 ms. For larger kernels the same rewrite (patches or one matmul per kernel tap) measured
slower than XLA's own, so they keep it. The forward pass and the input gradient are XLA's
in every case, so outputs are unchanged; on GPU/TPU, whose convolution gradients are fast,
the plain `lax.conv_general_dilated` is used throughout.

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
  convolutions on the CPU backend get a matmul kernel gradient."""
  dims = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  fast = (jax.default_backend() == "cpu" and lhs.ndim == 4 and dims == _NHWC
          and rhs.shape[:2] == (1, 1) and feature_group_count == 1 and not kwargs
          and not isinstance(padding, str) and all(tuple(p) == (0, 0) for p in padding)
          and all(d == 1 for d in (lhs_dilation or ())) and all(
              d == 1 for d in (rhs_dilation or ())))
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
