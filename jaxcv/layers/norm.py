"""Normalisation layers for conv-norm-act blocks, backbones and heads, chosen by name.

`norm_layer(kind, train, dtype)` returns a constructor (called as `norm(name="bn")(x)` on
NHWC features) or None:
- "batch": `nn.BatchNorm` with torchvision's hyperparameters (torch momentum 0.1 is flax
  momentum 0.9: flax weighs the old statistics; eps 1e-5); batch statistics when `train`,
  running ones otherwise. State in the `batch_stats` collection (`mean`, `var`).
- "frozen_batch": `FrozenBatchNorm`, torchvision's `FrozenBatchNorm2d`: running statistics
  and fixed affine parameters whatever `train` says (detectors on pretrained backbones).
- "group": `nn.GroupNorm(num_groups)`, eps 1e-5 (torch's), no state.
- None: no normalisation (the conv before it then usually takes a bias).

`batch_norm(train, stage, frozen_stages, dtype)` is the "batch" kind for one top-level
module of a model: a stage named in `frozen_stages` keeps inference-mode BN in training
(docs/conventions.md, `frozen_stages`).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

ModuleDef = Any
NORM_KINDS = ("batch", "frozen_batch", "group", None)


class FrozenBatchNorm(nn.Module):
  """BatchNorm whose statistics and affine parameters are fixed (torchvision's
  `FrozenBatchNorm2d`): `y = (x - mean) / sqrt(var + eps) * scale + bias` on the last axis.

  Variables are those of `nn.BatchNorm` (`params`: `scale`, `bias`; `batch_stats`: `mean`,
  `var`), so BatchNorm weights and converted torchvision weights load unchanged. In training
  it neither computes batch statistics nor updates `batch_stats`, and no gradient reaches
  `scale` or `bias` (torch keeps all four as buffers). Arithmetic as `nn.BatchNorm` in
  inference mode (float32 statistics, output in `dtype` or the promoted input dtype), so the
  two agree exactly.
  """
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
    del use_running_average  # accepted so that it stands in for nn.BatchNorm; always True
    c = x.shape[-1]
    mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
    var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
    scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
    scale, bias = lax.stop_gradient(scale), lax.stop_gradient(bias)
    y = (x - mean.value) * (lax.rsqrt(var.value + self.epsilon) * scale) + bias
    return jnp.asarray(y, jnp.result_type(x, scale) if self.dtype is None else self.dtype)


def norm_layer(kind: str | None, train: bool, dtype: Any = jnp.float32, *,
               num_groups: int = 32, epsilon: float = 1e-5) -> Callable[..., nn.Module] | None:
  """Constructor of the norm layer `kind` (see the module docstring), or None for None.

  `train` only matters for "batch". `num_groups` (for "group") must divide the channels of
  every layer it normalises (flax raises otherwise).
  """
  if kind == "batch":
    return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=epsilon, dtype=dtype)
  if kind == "frozen_batch":
    return functools.partial(FrozenBatchNorm, epsilon=epsilon, dtype=dtype)
  if kind == "group":
    return functools.partial(nn.GroupNorm, num_groups=num_groups, epsilon=epsilon, dtype=dtype)
  if kind is None:
    return None
  raise ValueError(f"unknown norm {kind!r}; known: {list(NORM_KINDS)}")


def batch_norm(train: bool, stage: str, frozen_stages: Sequence[str], dtype: Any):
  """BatchNorm constructor for the modules of `stage`, with torchvision's hyperparameters.

  A frozen stage keeps inference-mode BN even in training (transfer learning); its affine
  parameters still get gradients (whether they train is the optimizer's business).
  """
  return norm_layer("batch", train and stage not in frozen_stages, dtype)
