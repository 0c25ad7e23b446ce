"""Data sets by name: `load(name, split, **kwargs) -> ArrayDataset`.

Known names: `digits` (scikit-learn's 8x8 digits, built in, no download), `mnist` and
`cifar10` (TensorFlow Datasets, read from `data_dir`) as in-memory `ArrayDataset`s;
`shapes` (the built-in synthetic set with every label, generated offline) and the catalog sets
`voc/2007`, `voc/2012`, `coco/2017`, `coco/2017_panoptic`, `oxford_iiit_pet` as
`ExampleDataset`s, which the pipeline (`jaxcv.data.pipeline`) sanitises, augments
(`jaxcv.data.augment`), pads and batches. A new data set is a loader function
`fn(split, **kwargs) -> ArrayDataset` decorated with `@register("name")`; `load` needs no
change. Every split comes in the batch format of `docs/conventions.md`.
"""
from __future__ import annotations

import inspect
from typing import Callable, Iterable

from jaxcv.data.base import (ArrayDataset, CorruptExampleError, check_split, gray_to_rgb,
                              resize_images)

_LOADERS: dict[str, Callable[..., ArrayDataset]] = {}
_SPLITS: dict[str, tuple[str, ...]] = {}


def register(name: str, splits: Iterable[str] | None = None):
  """Decorator registering a loader `fn(split, **kwargs) -> ArrayDataset` under `name`.

  With `splits`, `load` rejects other split names (listing these) before calling the
  loader; without, the loader checks its split itself (see `base.check_split`).
  """

  def decorate(fn):
    if name in _LOADERS:
      raise ValueError(f"data set {name!r} is already registered")
    _LOADERS[name] = fn
    if splits is not None:
      _SPLITS[name] = tuple(splits)
    return fn

  return decorate


def names() -> list[str]:
  """The registered data set names, sorted."""
  return sorted(_LOADERS)


def load(name: str, split: str, **kwargs) -> ArrayDataset:
  """Split `split` of data set `name`; kwargs go to its loader (e.g. `image_size`).

  Unknown names, splits and options are ValueErrors that list the known ones.
  """
  if name not in _LOADERS:
    raise ValueError(f"unknown data set {name!r}; known data sets: {names()}")
  if name in _SPLITS:
    check_split(name, split, _SPLITS[name])
  fn = _LOADERS[name]
  params = inspect.signature(fn).parameters
  if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
    options = [k for k, p in params.items()
               if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and k != "split"]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
      raise ValueError(f"data set {name!r} does not take option(s) {unknown}; "
                       f"it takes {options}")
  return fn(split, **kwargs)


# Registration of the built-in data sets (neither module imports TensorFlow on import).
from jaxcv.data import digits as _digits  # noqa: E402,F401
from jaxcv.data import tfds_readers as _tfds_readers  # noqa: E402,F401
from jaxcv.data import example_sets as _example_sets  # noqa: E402
from jaxcv.data.shapes import SPLITS as _SHAPES_SPLITS  # noqa: E402

register("shapes", splits=_SHAPES_SPLITS)(_example_sets.load_shapes)
for _name in _example_sets.CATALOG_EXAMPLE_SETS:
  register(_name)(_example_sets.catalog_loader(_name))

__all__ = ["ArrayDataset", "CorruptExampleError", "load", "names", "register", "check_split",
           "gray_to_rgb", "resize_images"]
