"""`digits`: scikit-learn's handwritten digits, the built-in classification set.

1,797 real 8x8 grayscale scans (values 0..16, ten classes), shipped inside scikit-learn, so
nothing is downloaded. Splits (fixed, stratified by class, seeded by `split_seed` only):

| split | examples |
|---|---|
| `train` | 1,257 |
| `validation` | 180 |
| `test` | 360 |
| `train+validation` | 1,437 |

Built with `sklearn.model_selection.train_test_split(..., stratify=labels,
random_state=split_seed)` twice: 360 test examples from all 1,797, then 180 validation
examples from the remaining 1,437. Every class's count in every split is within one example
of its proportional share. Rows are in ascending `image_id` order.

`image_id` is the example's index in `sklearn.datasets.load_digits()`'s arrays, so ids are
unique across all splits and stable between runs and machines.

`image` is float32 `[N, S, S, 3]` with `S = image_size` (default 32): pixel values divided by
16 into [0, 1], resized from 8x8 with bilinear interpolation (`base.resize_images`, NumPy, so
deterministic), the gray value repeated in all three channels (the batch format is RGB).
`label` is the digit, int32 0..9.
"""
from __future__ import annotations

import functools

import numpy as np

from jaxcv.data.registry import register
from jaxcv.data.base import (ArrayDataset, check_int, check_split, gray_to_rgb, readonly,
                              resize_images)

SPLITS = ("train", "validation", "test", "train+validation")
SPLIT_SIZES = {"train": 1257, "validation": 180, "test": 360, "train+validation": 1437}
NUM_EXAMPLES = 1797
NUM_CLASSES = 10


@functools.lru_cache(maxsize=None)
def _raw() -> tuple[np.ndarray, np.ndarray]:
  from sklearn.datasets import load_digits
  d = load_digits()
  arrays = readonly({"x": (d.images / 16.0).astype(np.float32),
                     "y": d.target.astype(np.int32)})
  return arrays["x"], arrays["y"]


@functools.lru_cache(maxsize=None)
def split_indices(split_seed: int = 0) -> dict[str, np.ndarray]:
  """Sorted indices into `load_digits()` of each split (see the module docstring)."""
  from sklearn.model_selection import train_test_split
  _, y = _raw()
  idx = np.arange(len(y))
  rest, test = train_test_split(idx, test_size=SPLIT_SIZES["test"], stratify=y,
                                random_state=split_seed)
  train, val = train_test_split(rest, test_size=SPLIT_SIZES["validation"], stratify=y[rest],
                                random_state=split_seed)
  out = {"train": train, "validation": val, "test": test,
         "train+validation": np.concatenate([train, val])}
  return readonly({k: np.sort(v).astype(np.int64) for k, v in out.items()})


@functools.lru_cache(maxsize=None)
def _split_arrays(split: str, image_size: int, split_seed: int) -> dict[str, np.ndarray]:
  x, y = _raw()
  idx = split_indices(split_seed)[split]
  image = gray_to_rgb(resize_images(x[idx][..., None], image_size))
  return readonly({"image": np.ascontiguousarray(image, dtype=np.float32),
                   "label": y[idx].astype(np.int32),
                   "image_id": idx.astype(np.int32)})


@register("digits", splits=SPLITS)
def load_digits(split: str, image_size: int = 32, split_seed: int = 0) -> ArrayDataset:
  """Split `split` of `digits` (module docstring); arrays are cached per process, read-only."""
  check_split("digits", split, SPLITS)
  # int(2.5) would quietly give 2, int(True) 1: only ints pass
  image_size = check_int(image_size, "digits: image_size (data.image_size)", 1)
  split_seed = check_int(split_seed, "digits: split_seed", 0, 2**32 - 1)  # sklearn's range
  arrays = _split_arrays(split, image_size, split_seed)
  return ArrayDataset(arrays, NUM_CLASSES, "digits", split)
