"""Small helpers every op and layer shares, one per idea: argument pairs, true division, and
telling (and naming) a bad concrete input.

Why here: `ops/` is the bottom of the package (it imports nothing of jaxcv), so `layers/`,
`models/` and the rest can all use these without a cycle.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


class InvalidInputError(ValueError):
  """A concrete input whose VALUES an op would otherwise mishandle without a word (NaN scores,
  float class ids, a NaN threshold; boxes: `jaxcv.ops.boxes.InvalidBoxesError`). Shape and
  dtype errors stay plain ValueErrors. Under `jit` values cannot raise: each op's docstring
  says what it does with them instead (usually: masked out, never kept)."""


def is_concrete(*xs) -> bool:
  """True when none of `xs` is a tracer, i.e. their values can be read (and checked) now."""
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def pair(v, name: str, minimum: int = 1) -> tuple[int, int]:
  """An int or a pair of ints, each >= `minimum`, as `(h, w)`; ValueError naming `name`
  otherwise (floats, bools, strings and lengths other than 2 are refused)."""
  def is_int(p):
    return isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_))

  try:
    out = (v, v) if is_int(v) else tuple(v)
  except TypeError:
    out = ()
  if len(out) != 2 or not all(is_int(p) for p in out):
    raise ValueError(f"{name} must be an int or a pair of ints; got {v!r}")
  if min(out) < minimum:
    raise ValueError(f"{name} must be >= {minimum}; got {v!r}")
  return int(out[0]), int(out[1])


def true_divide(a: jax.Array, b) -> jax.Array:
  """`a / b` rounded as a true division even when `b` is a constant.

  XLA rewrites a division by a constant into a multiplication by its rounded reciprocal,
  which moves values that sit exactly on an edge (a sample at y == H, a scale of 28 / 7) by
  one ulp to the other side; torchvision divides. `a * 0 + b` has a's shape and batching
  (also under vmap) and is not a constant, and the barrier keeps XLA from seeing
  `a / broadcast(b)`.
  """
  return a / lax.optimization_barrier(a * 0 + jnp.asarray(b, jnp.result_type(a)))
