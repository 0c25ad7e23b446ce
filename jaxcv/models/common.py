"""Small pieces the models share: input checks, torch-exact pooling, the classifier MLP.

All arrays are NHWC. Shapes are static, so every check here runs at trace time.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# Models use these from here; they live in layers/ because layers use them too.
from jaxcv.layers.conv_norm_act import kaiming_fan_out  # noqa: F401
from jaxcv.layers.norm import batch_norm  # noqa: F401
from jaxcv.layers.pooling import adaptive_avg_pool  # noqa: F401

Dtype = Any


def check_input(x: jax.Array, model: str, min_size: int = 1, exact_size: int | None = None):
  """Raises ValueError unless `x` is `[B, H, W, 3]` with H, W >= `min_size` (or == `exact_size`)."""
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"{model} expects images of shape [B, H, W, 3] (NHWC, RGB); "
                     f"got shape {tuple(x.shape)}")
  h, w = x.shape[1:3]
  if exact_size is not None and (h, w) != (exact_size, exact_size):
    raise ValueError(f"{model} needs {exact_size}x{exact_size} input (its dense layers are "
                     f"sized for it); got {h}x{w}")
  if min(h, w) < min_size:
    raise ValueError(f"{model} needs input of at least {min_size}x{min_size} pixels; "
                     f"got {h}x{w}")


def check_image(x: jax.Array, model: str, multiple: int = 1):
  """`x` must be `[B, H, W, 3]` with H and W positive multiples of `multiple` (the output
  stride of a model whose maps must line up)."""
  check_input(x, model, min_size=multiple)
  h, w = x.shape[1:3]
  if h % multiple or w % multiple:
    raise ValueError(f"{model} needs H and W divisible by {multiple} (its output stride); got "
                     f"{h}x{w}")


def check_frozen(frozen_stages: Sequence[str], stages: Sequence[str], model: str):
  """Raises ValueError for a name in `frozen_stages` that is not a top-level module."""
  unknown = sorted(set(frozen_stages) - set(stages))
  if unknown:
    raise ValueError(f"{model}: frozen_stages {unknown} are not top-level modules; "
                     f"known: {list(stages)}")


def max_pool(x: jax.Array, window: int, stride: int, padding: int = 0,
             ceil_mode: bool = False) -> jax.Array:
  """torch `MaxPool2d(window, stride, padding, ceil_mode)` on NHWC; padding counts as -inf as
  in torch. `ceil_mode`: output size `ceil((n + 2 p - k) / s) + 1` (the last window may
  overhang the bottom/right edge, never start beyond the input and its left padding, as
  torch's rule)."""
  pads = []
  for n in x.shape[1:3]:
    extra = 0
    if ceil_mode:
      out = -(-(n + 2 * padding - window) // stride) + 1
      if (out - 1) * stride >= n + padding:   # torch: the last window must start inside
        out -= 1
      extra = max(0, (out - 1) * stride + window - (n + 2 * padding))
    pads.append((padding, padding + extra))
  return nn.max_pool(x, (window, window), (stride, stride), padding=tuple(pads))


def flatten_chw(x: jax.Array) -> jax.Array:
  """`[B, H, W, C]` -> `[B, C*H*W]` in torch's NCHW flatten order.

  Transposing here (not permuting fc weights in the converter) keeps the converted
  torchvision Linear weights a plain transpose; the map is small (e.g. 7x7x512).
  """
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def global_avg_pool(x: jax.Array) -> jax.Array:
  """`[B, H, W, C]` -> `[B, C]`."""
  return jnp.mean(x, axis=(1, 2))


class Classifier(nn.Module):
  """Dense-ReLU-Dropout twice (torchvision's fc6, fc7): `[B, D]` -> `[B, features]`.

  `dropout_first` puts the dropout before each Dense, as in torchvision's AlexNet.
  """
  features: int
  dropout_first: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    dropout = nn.Dropout(0.5, deterministic=not train)
    for i in (1, 2):
      x = dropout(x) if self.dropout_first else x
      x = nn.relu(nn.Dense(self.features, dtype=self.dtype, name=f"fc{i}")(x))
      x = x if self.dropout_first else dropout(x)
    return x
