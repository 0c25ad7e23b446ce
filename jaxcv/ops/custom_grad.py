"""A custom gradient: the logistic sigmoid with a hand-written backward pass.

The course's example of `jax.custom_vjp`. Autodiff of `1 / (1 + exp(-x))` would keep `exp(-x)`
and differentiate through the division; the sigmoid's derivative, though, is a function of
its output alone, `d sigmoid / dx = y (1 - y)` with `y = sigmoid(x)`. So the forward pass
saves only `y` (the residual) and the backward pass computes `g * y * (1 - y)` from it: one
multiply-add, nothing else kept, and no overflow anywhere.

Forward, numerically stable: with `e = exp(-|x|)` (which is in (0, 1], so it never
overflows), `sigmoid(x) = 1 / (1 + e)` for x >= 0 and `e / (1 + e)` for x < 0. At x = +-100
this gives exactly 1 and about 3.7e-44 (a float32 subnormal), and the gradient is 0, not NaN.

What `custom_vjp` allows: reverse mode (`jax.grad`, `jax.vjp`), `jit`, `vmap`, and
higher-order reverse mode (`jax.grad(jax.grad(sigmoid))` differentiates the backward rule
itself, which is written in differentiable jnp operations). Forward mode (`jax.jvp`,
`jax.jacfwd`) is NOT supported: JAX raises a TypeError for custom_vjp functions; use
`jax.custom_jvp` where forward mode is needed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _stable_sigmoid(x):
  e = jnp.exp(-jnp.abs(x))
  return jnp.where(x >= 0, 1.0, e) / (1.0 + e)


@jax.custom_vjp
def sigmoid(x):
  """Elementwise `1 / (1 + exp(-x))`, stable for any x, with a hand-written backward pass."""
  return _stable_sigmoid(x)


def _sigmoid_fwd(x):
  y = _stable_sigmoid(x)
  return y, y  # (output, residual): the backward pass needs only y


def _sigmoid_bwd(y, g):
  return (g * y * (1.0 - y),)  # one cotangent per primal input


sigmoid.defvjp(_sigmoid_fwd, _sigmoid_bwd)
