"""The CPU conv with a matmul 1x1 kernel gradient equals lax.conv_general_dilated exactly in
the forward pass and to float rounding in both gradients; its depthwise path (shifted sums)
equals lax.conv_general_dilated to float rounding in the forward pass and both gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxcv.layers.conv import _NHWC, conv_general_dilated

CASES = [  # input, kernel, strides, padding
    ((2, 8, 8, 6), (1, 1, 6, 4), (1, 1), ((0, 0), (0, 0))),
    ((2, 8, 8, 6), (1, 1, 6, 4), (2, 2), ((0, 0), (0, 0))),
    ((2, 9, 7, 6), (1, 1, 6, 4), (2, 2), ((0, 0), (0, 0))),   # odd sizes with stride 2
    ((2, 9, 11, 5), (3, 3, 5, 7), (1, 1), ((1, 1), (1, 1))),  # not 1x1: XLA's own path
    ((2, 8, 8, 6), (1, 1, 6, 4), (1, 1), ((1, 1), (1, 1))),   # padded 1x1: XLA's own path
]


@pytest.mark.parametrize("xs,ks,strides,padding", CASES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_values_and_gradients_match_lax(xs, ks, strides, padding, dtype):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=xs), dtype)
  k = jnp.asarray(rng.normal(size=ks), dtype)

  def run(conv):
    y = conv(x, k, strides, padding, dimension_numbers=_NHWC)
    w = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), dtype)
    f = lambda x, k: jnp.sum(conv(x, k, strides, padding, dimension_numbers=_NHWC) * w)
    return y, jax.jit(jax.grad(f, (0, 1)))(x, k)

  y_new, (dx_new, dk_new) = run(conv_general_dilated)
  y_ref, (dx_ref, dk_ref) = run(lax.conv_general_dilated)
  np.testing.assert_array_equal(np.asarray(y_new, np.float32), np.asarray(y_ref, np.float32))
  np.testing.assert_array_equal(np.asarray(dx_new, np.float32), np.asarray(dx_ref, np.float32))
  assert dk_new.dtype == k.dtype
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  err = np.abs(np.asarray(dk_new, np.float32) - np.asarray(dk_ref, np.float32)).max()
  assert err <= tol * np.abs(np.asarray(dk_ref, np.float32)).max(), err


DEPTHWISE_CASES = [  # input [B, H, W, C], kernel size, padding, dilation
    ((2, 9, 11, 5), (3, 3), ((1, 1), (1, 1)), (1, 1)),
    ((2, 8, 8, 6), (3, 3), ((2, 2), (2, 2)), (2, 2)),     # DeepLab's atrous "same" padding
    ((2, 8, 8, 6), (3, 3), ((6, 6), (6, 6)), (6, 6)),     # dilation beyond the map: centre tap
    ((2, 8, 8, 6), (3, 3), ((3, 3), (3, 3)), (1, 1)),     # padding beyond the kernel's reach
    ((2, 10, 7, 4), (5, 3), ((1, 3), (0, 2)), (1, 2)),    # asymmetric, rectangular, valid-ish
    ((1, 6, 6, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),     # a 1x1 depthwise scale
]


@pytest.mark.parametrize("xs,ksize,padding,dilation", DEPTHWISE_CASES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_depthwise_values_and_gradients_match_lax(xs, ksize, padding, dilation, dtype):
  rng = np.random.default_rng(0)
  c = xs[-1]
  x = jnp.asarray(rng.normal(size=xs), dtype)
  k = jnp.asarray(rng.normal(size=(*ksize, 1, c)), dtype)

  def run(conv):
    def f(x, k):
      return conv(x, k, (1, 1), padding, rhs_dilation=dilation, dimension_numbers=_NHWC,
                  feature_group_count=c)
    y = jax.jit(f)(x, k)
    w = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), dtype)
    return y, jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k) * w), (0, 1)))(x, k)

  y_new, (dx_new, dk_new) = run(conv_general_dilated)
  y_ref, (dx_ref, dk_ref) = run(lax.conv_general_dilated)
  assert y_new.shape == y_ref.shape and y_new.dtype == y_ref.dtype
  assert dx_new.dtype == x.dtype and dk_new.dtype == k.dtype
  tol = 1e-5 if dtype == jnp.float32 else 3e-2
  for new, ref in ((y_new, y_ref), (dx_new, dx_ref), (dk_new, dk_ref)):
    new, ref = np.asarray(new, np.float32), np.asarray(ref, np.float32)
    assert new.shape == ref.shape
    assert np.abs(new - ref).max() <= tol * max(np.abs(ref).max(), 1.0)


def test_depthwise_path_is_taken_and_strided_depthwise_is_not():
  """The shifted-sum path compiles to no convolution; a strided depthwise conv keeps XLA's."""
  x, k = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 1, 4))

  def hlo(strides):
    f = lambda x, k: conv_general_dilated(x, k, strides, ((1, 1), (1, 1)),
                                          dimension_numbers=_NHWC, feature_group_count=4)
    return jax.jit(f).lower(x, k).as_text()

  assert ("convolution" in hlo((1, 1))) == (jax.default_backend() != "cpu")
  assert "convolution" in hlo((2, 2))
