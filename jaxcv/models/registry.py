"""Model registry: a name -> constructor table.

Each model file registers its presets (`register("resnet50")(partial(ResNet, ...))`), and
`jaxcv/models/__init__.py` imports the model files so that the table is full.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, constructor: Callable[..., nn.Module] | None = None):
  """Registers `constructor` under `name`; used as a decorator or called directly."""
  def add(fn):
    if name in _MODELS:
      raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn
  return add if constructor is None else add(constructor)


def names() -> list[str]:
  """Sorted names of the registered models."""
  return sorted(_MODELS)


def get(name: str) -> Callable[..., nn.Module]:
  """The constructor registered as `name`; ValueError listing the known names otherwise."""
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r}; known models: {names()}")
  return _MODELS[name]


def create(name: str, **kwargs) -> nn.Module:
  """`create("resnet50", num_classes=10)`: the module registered as `name`, built with kwargs."""
  return get(name)(**kwargs)
