"""The CPU conv with a matmul 1x1 kernel gradient equals lax.conv_general_dilated exactly in
the forward pass and to float rounding in both gradients."""
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
