"""The data-set registry: `register`, `names`, `load` (re-exported by `jaxcv.data`).

`REGISTRY` is a `jaxcv.registry.Registry` over the package `jaxcv.data`: the first lookup
imports every module of the package, so a new data set is one new module with a
`@register("name")` loader. `shapes_tfds` is skipped: it imports TensorFlow at its top, and
discovery must not (the `shapes` loader imports it for `source="tfds"`).
"""
from __future__ import annotations

import inspect
from typing import Callable, Iterable

from jaxcv.data.base import ArrayDataset, check_split
from jaxcv.registry import Registry

REGISTRY = Registry("data set", "jaxcv.data", skip=("shapes_tfds",))
_SPLITS: dict[str, tuple[str, ...]] = {}


def register(name: str, splits: Iterable[str] | None = None):
  """Decorator registering a loader `fn(split, **kwargs) -> ArrayDataset` under `name`.

  With `splits`, `load` rejects other split names (listing these) before calling the
  loader; without, the loader checks its split itself (see `base.check_split`).
  ValueError if `name` is already registered.
  """

  def decorate(fn: Callable[..., ArrayDataset]):
    REGISTRY.register(name, fn)
    if splits is not None:
      _SPLITS[name] = tuple(splits)
    return fn

  return decorate


def unregister(name: str) -> Callable[..., ArrayDataset]:
  """Removes data set `name` (tests that register a temporary one); returns its loader."""
  _SPLITS.pop(name, None)
  return REGISTRY.unregister(name)


def names() -> list[str]:
  """The registered data set names, sorted."""
  return REGISTRY.names()


def load(name: str, split: str, **kwargs) -> ArrayDataset:
  """Split `split` of data set `name`; kwargs go to its loader (e.g. `image_size`).

  Unknown names, splits and options are ValueErrors that list the known ones.
  """
  fn = REGISTRY.get(name)
  if name in _SPLITS:
    check_split(name, split, _SPLITS[name])
  params = inspect.signature(fn).parameters
  if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
    options = [k for k, p in params.items()
               if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and k != "split"]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
      raise ValueError(f"data set {name!r} does not take option(s) {unknown}; "
                       f"it takes {options}")
  return fn(split, **kwargs)
