"""The defaults of every config key the training loop reads, in one place: `get_config()`.

`with_defaults(config)` is a user's config merged over `get_config()`, as flax's
`configs/tpu.py` starts from `default.get_config()`. `Trainer` and `train_and_evaluate`
merge first (and write the merged config to `WORKDIR/config.json`), so the loop, `optim`,
`mesh` and the input pipeline read `config.x` with no `.get` default of their own, and a
config that leaves out an optional key still runs.

Merging: a section (a ConfigDict of the defaults: `optimizer`, `schedule`, `transfer`,
`mesh`, `data`) merges key by key; any other value, including a dict inside a section
(`mesh.shape`, `data.split_sizes`), is replaced whole by the user's. Keys the defaults do not
have pass through unchanged; their defaults live with whoever reads them: the task's keys
(`loss.*`, `label_smoothing`, `augment.*`, `data.mean` / `data.std`, ...) in the task
class, `model.*` in the model's constructor, the loader options (`data.image_size`, ...) in
the data set's loader, and the data-building keys (`data.train_split`, `eval_splits`,
`augmentation`, `preprocess`) in `jaxcv.data.build.DEFAULTS`, shown here under `data`.

Keys with no default, which every config gives: `REQUIRED`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections

REQUIRED = ("task", "model.name", "data.name", "batch_size", "num_steps",
            "optimizer.learning_rate")


def get_config() -> ml_collections.ConfigDict:
  """The base config under every run (the meaning of each key: docs/conventions.md)."""
  from jaxcv.data.build import DEFAULTS as DATA_DEFAULTS  # noqa: PLC0415 - keeps mesh light

  c = ml_collections.ConfigDict()
  c.seed = 0  # initialisation, dropout and data order
  c.dtype = "float32"  # computation dtype: float32 or bfloat16
  c.eval_batch_size = 0  # 0: batch_size
  c.eval_every = 0  # 0: once, at num_steps
  c.checkpoint_every = 0  # 0: once, at num_steps
  c.keep_checkpoints = 3
  c.log_every = 50
  c.best_metric = ""  # "": no best checkpoint is kept
  c.best_mode = ""  # "": the metric's direction (`Task.metric_directions`)
  c.progress_bar = True
  c.prefetch = 2  # host batches built ahead
  c.data_workers = 1
  c.data_reader = "threads"  # or "grain": the same batches
  c.optimizer = {"name": "sgd", "momentum": 0.9, "nesterov": False, "b1": 0.9, "b2": 0.999,
                 "eps": 1e-8, "weight_decay": 0.0, "weight_decay_mask": "kernels",
                 "grad_clip_norm": 0.0}  # 0: no clipping
  # boundaries: fractions of num_steps (< 1) or step numbers (`step` schedule)
  c.schedule = {"name": "constant", "warmup_steps": 0, "boundaries": (0.5, 0.75),
                "decay_factor": 0.1}
  c.transfer = {"frozen": (), "head": ("head",), "backbone_lr_mult": 1.0, "init_from": "",
                "init_exclude": ("head",)}
  c.mesh = {"shape": {"data": -1}, "shard_params": False, "shard_params_min_size": 2**16}
  c.data = dict(DATA_DEFAULTS)
  return c


_CONFIG_DICTS = (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)


def _is_map(value: Any) -> bool:
  return isinstance(value, (Mapping, *_CONFIG_DICTS))  # ConfigDicts are not Mappings


def _plain(value: Any) -> Any:
  """ConfigDicts as dicts (the merged ConfigDict is built from plain values), the rest as is."""
  if isinstance(value, _CONFIG_DICTS):
    return {k: _plain(v) for k, v in value.items()}
  return value


def with_defaults(config: Any, check_required: bool = False
                  ) -> ml_collections.ConfigDict:
  """A new ConfigDict: `config` merged over `get_config()` (module docstring); `config`
  itself is not changed. With `check_required`, a ValueError names the `REQUIRED` keys it
  lacks. Merging a merged config again changes nothing."""
  merged = get_config().to_dict()
  for key, value in config.items():
    if isinstance(merged.get(key), dict) and _is_map(value):
      merged[key] = {**merged[key], **{k: _plain(v) for k, v in value.items()}}
    else:
      merged[key] = _plain(value)
  out = ml_collections.ConfigDict(merged)
  if check_required:
    missing = [k for k in REQUIRED if not _has(out, k.split("."))]
    if missing:
      raise ValueError(f"the config lacks {missing}, which have no default (every config "
                       f"gives {list(REQUIRED)}; defaults: jaxcv/train/defaults.py)")
  return out


def section(name: str, given: Any) -> dict[str, Any]:
  """Section `name` (e.g. "mesh") of `given` over its defaults, for functions that take one
  section rather than a whole config (`mesh.make_mesh(config.mesh)`)."""
  return {**get_config()[name].to_dict(), **_plain(given or {})}


def _has(node: Any, path: Iterable[str]) -> bool:
  for part in path:
    if not _is_map(node) or part not in node:
      return False
    node = node[part]
  return True
