"""A run's splits from its `config.data` section: `from_config(config.data)`.

Why here and not in the training loop: which keys of `config.data` are loader options and
which transforms go to which split are facts about the data sets, and the loop must read no
data-specific key. Keys of `config.data`:
- `name`: the data set (`jaxcv.data.names()`).
- `train_split`, `eval_splits`, `augmentation`, `preprocess`: read here (defaults in
  `DEFAULTS`). `augmentation` goes to the training split only, `preprocess` to every split
  after the augmentation, both as `jaxcv.data.augment.build` specs (`set_transforms`).
- the keys the task reads itself, named by the caller in `task_keys` (the loop passes
  `Task.data_config_keys`, e.g. `mean` and `std`, which the task normalises the input with).
- everything else is an option of the data set's loader (`image_size`, `keys`,
  `split_sizes`, `max_boxes`, `data_dir`, ...), passed to `jaxcv.data.load`, which rejects
  options the loader does not take, listing the ones it does.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jaxcv.data.registry import load

# the one place these keys' defaults live (`jaxcv.train.defaults` shows them under `data`)
DEFAULTS: dict[str, Any] = {
    "train_split": "train",
    "eval_splits": ("validation", "test"),
    "augmentation": (),  # train split only
    "preprocess": (),    # every split, after the augmentation
}
BUILD_KEYS = ("name", *DEFAULTS)


def loader_options(data_config: Mapping[str, Any], task_keys: Iterable[str] = ()
                   ) -> dict[str, Any]:
  """The keys of `data_config` that go to the loader: all but `BUILD_KEYS` and
  `task_keys`."""
  skip = set(BUILD_KEYS) | set(task_keys)
  return {k: v for k, v in data_config.items() if k not in skip}


def from_config(data_config: Mapping[str, Any], task_keys: Iterable[str] = ()
                ) -> tuple[Any, dict[str, Any]]:
  """`(train split, {eval split name: data set})` of `data_config` (module docstring),
  with the transforms of `augmentation` / `preprocess` set.

  Missing keys take `DEFAULTS`. ValueError for an unknown data set, split or option (listing
  the known ones), or for transforms on a data set held in memory.
  """
  c = {**DEFAULTS, **dict(data_config)}
  if "name" not in c:
    raise ValueError(f"config.data has no 'name'; it names the data set (keys: {sorted(c)})")
  options = loader_options(c, task_keys)
  train = load(c["name"], c["train_split"], **options)
  evals = {s: load(c["name"], s, **options) for s in c["eval_splits"]}
  set_transforms(c, train, evals)
  return train, evals


def set_transforms(data_config: Mapping[str, Any], train_data, eval_data: Mapping[str, Any]
                   ) -> None:
  """Per-example transforms from `data.augmentation` (train split only) and
  `data.preprocess` (every split, after the augmentation), named as in
  `jaxcv.data.augment.build`. Only per-example data sets (`ExampleDataset`) take them."""
  augmentation = list(data_config.get("augmentation", None) or DEFAULTS["augmentation"])
  preprocess = list(data_config.get("preprocess", None) or DEFAULTS["preprocess"])
  if not (augmentation or preprocess):
    return
  if not all(hasattr(ds, "transform") for ds in (train_data, *eval_data.values())):
    raise ValueError(f"data set {data_config['name']!r} is held in memory and augmented "
                     "inside the step; data.augmentation / data.preprocess apply to "
                     "per-example data sets (shapes, the catalog readers)")
  from jaxcv.data import augment  # noqa: PLC0415 - keeps `import jaxcv.data` light

  train_data.transform = augment.build(augmentation + preprocess)
  # evaluation batches draw from a generator seeded by the example's index (see
  # `ExampleDataset.get`), so a random preprocess step is the same at every evaluation
  eval_transform = augment.build(preprocess) if preprocess else None
  for ds in eval_data.values():
    ds.transform = eval_transform
