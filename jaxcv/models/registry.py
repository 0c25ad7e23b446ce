"""Model registry: a name -> constructor table, and the checks of the constructor arguments.

Each model file registers its presets (`register("resnet50")(partial(ResNet, ...))`) in
`REGISTRY`, a `jaxcv.registry.Registry` over the package `jaxcv.models`: the first lookup
imports every module of the package, so a new model is one new file there and no edit
elsewhere (`jaxcv/registry.py` says why this mechanism).

`create` checks the arguments every model shares in one place, by name (`ARGUMENT_RULES`),
before the module is built: without it `num_classes=0` surfaced as a ZeroDivisionError in an
initializer and `num_classes=-3` as a broadcasting TypeError, deep inside `init`. A bad
value is a ValueError naming the model, the argument and what is allowed; an argument the
model does not take is a ValueError listing the ones it does. Constraints that depend on the
architecture (U-Net `depth`, DeepLabv3+ `output_stride` 8 or 16, `stage_sizes`, the latent
models' 1 or 3 channels) stay with the model and are checked when it is traced.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxcv.registry import Registry

REGISTRY = Registry("model", "jaxcv.models")


def register(name: str, constructor: Callable[..., nn.Module] | None = None):
  """Registers `constructor` under `name`; used as a decorator or called directly."""
  return REGISTRY.register(name, constructor)


def names() -> list[str]:
  """Sorted names of the registered models (every model file of the package)."""
  return REGISTRY.names()


def get(name: str) -> Callable[..., nn.Module]:
  """The constructor registered as `name`; ValueError listing the known names otherwise."""
  return REGISTRY.get(name)


def create(name: str, **kwargs) -> nn.Module:
  """`create("resnet50", num_classes=10)`: the module registered as `name`, built with kwargs.

  ValueError for an unknown name (listing the known ones), an argument the model does not
  take (listing the ones it takes) or a value `ARGUMENT_RULES` rejects.
  """
  constructor = get(name)
  check_arguments(name, constructor, kwargs)
  return constructor(**kwargs)


# --- argument checks ----------------------------------------------------------------------

def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _positive_int(v) -> bool:
  return _is_int(v) and v >= 1


def _probability(v) -> bool:
  return _is_real(v) and 0.0 <= float(v) < 1.0


def _non_negative(v) -> bool:
  return _is_real(v) and float(v) >= 0.0  # also False for NaN


def _bool(v) -> bool:
  return isinstance(v, (bool, np.bool_))


def _names(v) -> bool:
  # a bare string is a sequence too, of its letters: "head" would freeze h, e, a, d
  return (not isinstance(v, (str, bytes)) and isinstance(v, (list, tuple))
          and all(isinstance(s, str) for s in v))


def _float_dtype(v) -> bool:
  try:  # jnp's test: NumPy does not count bfloat16 as floating
    return bool(jnp.issubdtype(jnp.dtype(v), jnp.floating))
  except TypeError:
    return False


_POSITIVE = (_positive_int, "a positive int (>= 1; not a bool or a float)")
# argument name -> (check, what is allowed). Applies to every model that takes the argument,
# when it is passed (defaults are the model's own); None passes where the model's default
# is None (e.g. `hidden`, `aspp_features`: derived from `width`).
ARGUMENT_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num_classes": _POSITIVE, "width": _POSITIVE, "hidden": _POSITIVE,
    "stem_width": _POSITIVE, "latent_dim": _POSITIVE, "levels": _POSITIVE,
    "image_size": _POSITIVE, "in_channels": _POSITIVE, "aspp_features": _POSITIVE,
    "low_level_features": _POSITIVE, "decoder_features": _POSITIVE,
    "dropout": (_probability, "a dropout rate in [0, 1)"),
    "aspp_dropout": (_probability, "a dropout rate in [0, 1)"),
    "gaussian_std": (_non_negative, "a number >= 0 (0: learned)"),
    "batch_norm": (_bool, "True or False"), "aux_loss": (_bool, "True or False"),
    "variational": (_bool, "True or False"), "align_corners": (_bool, "True or False"),
    "frozen_stages": (_names, "a list or tuple of top-level module names (not a string)"),
    "dtype": (_float_dtype, "a floating dtype (jnp.float32, jnp.bfloat16, ...)"),
}


def _parameters(constructor) -> dict[str, Any] | None:
  """Argument name -> default of a Linen module class (or a partial of one) or function;
  None when it takes **kwargs (then any name is accepted)."""
  fn, preset = constructor, {}
  while isinstance(fn, functools.partial):
    fn, preset = fn.func, {**fn.keywords, **preset}
  if dataclasses.is_dataclass(fn):
    out = {f.name: f.default for f in dataclasses.fields(fn) if f.init}
  else:
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
      return None
    out = {k: p.default for k, p in params.items()
           if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
  out.update(preset)
  return out


def check_arguments(name: str, constructor, kwargs: dict[str, Any]) -> None:
  """ValueError naming model `name`, the argument and what is allowed, for the first bad
  argument in `kwargs` (see `ARGUMENT_RULES`); unknown argument names list the known."""
  params = _parameters(constructor)
  if params is not None:
    # `parent` and `name` are Flax's own fields of every module, not model options
    known = sorted(k for k in params if k not in ("parent", "name"))
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown:
      raise ValueError(f"model {name!r} does not take argument(s) {unknown}; it takes "
                       f"{known}")
  for arg, value in kwargs.items():
    if arg not in ARGUMENT_RULES:
      continue
    if value is None and params is not None and params.get(arg) is None:
      continue
    ok, allowed = ARGUMENT_RULES[arg]
    if not ok(value):
      raise ValueError(f"model {name!r}: {arg} must be {allowed}; got {value!r}")
