"""The custom-VJP sigmoid: values, hand-written gradient, transformations, forward-mode limit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxcv.ops.custom_grad import sigmoid

X = np.concatenate([np.linspace(-30, 30, 241), [-100.0, -88.0, -50.0, 50.0, 88.0, 100.0]]
                   ).astype(np.float32)


def plain(x):
  return 1.0 / (1.0 + jnp.exp(-x))


def test_values_equal_the_formula():
  ref = 1.0 / (1.0 + np.exp(-X.astype(np.float64)))
  got = np.asarray(sigmoid(jnp.asarray(X)))
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
  assert got[X == 100.0][0] == 1.0 and 0.0 <= got[X == -100.0][0] < 1e-40


def test_gradient_equals_autodiff_of_the_plain_function():
  g = np.asarray(jax.grad(lambda x: jnp.sum(sigmoid(x)))(jnp.asarray(X)))
  ref = np.asarray(jax.grad(lambda x: jnp.sum(plain(x)))(jnp.asarray(X)))
  assert np.all(np.isfinite(g))
  # The plain formula's own gradient is NaN far below 0 (exp(-x) overflows: inf / inf).
  ok = np.isfinite(ref)
  assert not ok[X == -100.0][0]
  np.testing.assert_allclose(g[ok], ref[ok], rtol=1e-5, atol=1e-6)
  ref_nn = np.asarray(jax.grad(lambda x: jnp.sum(jax.nn.sigmoid(x)))(jnp.asarray(X)))
  np.testing.assert_allclose(g, ref_nn, rtol=1e-5, atol=1e-6)
  exact = np.exp(-np.abs(X.astype(np.float64))) / (1 + np.exp(-np.abs(X.astype(np.float64))))**2
  np.testing.assert_allclose(g, exact, rtol=1e-5, atol=1e-7)


def test_no_nan_at_large_magnitudes():
  x = jnp.asarray([-1e4, -100.0, 100.0, 1e4], jnp.float32)
  y, vjp = jax.vjp(sigmoid, x)
  (g,) = vjp(jnp.ones_like(x))
  assert np.all(np.isfinite(np.asarray(y))) and np.all(np.isfinite(np.asarray(g)))
  np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_backward_is_the_hand_written_rule():
  """The cotangent is scaled by y(1-y): a non-unit cotangent checks the rule, not just 1s."""
  x = jnp.asarray([-2.0, 0.0, 3.0])
  ct = jnp.asarray([2.0, -1.0, 0.5])
  y, vjp = jax.vjp(sigmoid, x)
  np.testing.assert_allclose(vjp(ct)[0], ct * y * (1 - y), rtol=1e-6)


def test_jit_and_vmap():
  x = jnp.asarray(X.reshape(19, 13))
  f = jax.jit(jax.vmap(jax.grad(lambda v: jnp.sum(sigmoid(v)))))
  ref = jax.vmap(jax.grad(lambda v: jnp.sum(jax.nn.sigmoid(v))))(x)
  np.testing.assert_allclose(f(x), ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.jit(sigmoid)(x), jax.vmap(sigmoid)(x), rtol=0, atol=0)


def test_check_grads_reverse_mode():
  x = jnp.asarray([-3.0, -0.5, 0.0, 0.7, 4.0], jnp.float32)
  check_grads(sigmoid, (x,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_second_order_reverse_mode():
  d2 = jax.grad(jax.grad(sigmoid))
  d2_ref = jax.grad(jax.grad(plain))
  for v in (-3.0, -0.5, 0.0, 0.7, 4.0):
    np.testing.assert_allclose(d2(v), d2_ref(v), rtol=1e-5, atol=1e-6)


def test_forward_mode_is_not_supported():
  """custom_vjp has no JVP rule; the docstring says to use custom_jvp for forward mode."""
  with pytest.raises(TypeError):
    jax.jvp(sigmoid, (1.0,), (1.0,))
