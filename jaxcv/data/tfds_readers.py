"""`mnist` and `cifar10` from TensorFlow Datasets, read fully into memory.

Both are small (MNIST 60,000 + 10,000 images of 28x28x1, CIFAR-10 50,000 + 10,000 of
32x32x3), so a split becomes one `ArrayDataset`. The data must already be prepared in
`data_dir` (tfds' default, `~/tensorflow_datasets`, when None) or be downloadable; pass
`download=False` to make a missing data set an error instead of a download.

Splits (tfds' own `train` and `test`, read in tfds' fixed file order, `shuffle_files=False`):

| split | rows | `image_id` |
|---|---|---|
| `train` | the first 90% of tfds `train` (MNIST 54,000, CIFAR-10 45,000) | index in tfds `train` |
| `validation` | the last `n // 10` of tfds `train` (MNIST 6,000, CIFAR-10 5,000) | index in tfds `train` |
| `train+validation` | all of tfds `train` | index in tfds `train` |
| `test` | tfds `test` | index in tfds `test` |

So `train` and `validation` never share an example, and their ids are disjoint.

`image`: float32 in [0, 1] (uint8 / 255), `[N, S, S, 3]`; grayscale (MNIST) is repeated in all
three channels; `image_size` S defaults to the native size (28 for MNIST, 32 for CIFAR-10),
other sizes are a bilinear resize (`base.resize_images`), e.g. `image_size=32` for LeNet on
MNIST. `label`: int32 0..9.

TensorFlow is imported only when a split is read (importing it takes seconds), and it is
told not to use any GPU, so it never takes accelerator memory from JAX.
"""
from __future__ import annotations

import functools

import numpy as np

from jaxcv.data.registry import register
from jaxcv.data.base import (ArrayDataset, check_bool, check_int, check_path, check_split,
                              gray_to_rgb, import_tfds, resize_images)

SPLITS = ("train", "validation", "test", "train+validation")
INFO = {"mnist": {"num_classes": 10, "image_size": 28},
        "cifar10": {"num_classes": 10, "image_size": 32}}


@functools.lru_cache(maxsize=2)
def _read(name: str, tfds_split: str, data_dir: str | None, download: bool
          ) -> tuple[np.ndarray, np.ndarray]:
  """All of tfds split `tfds_split` as (uint8 images [N, H, W, C], int32 labels [N])."""
  tfds = import_tfds()
  ds = tfds.load(name, split=tfds_split, data_dir=data_dir, shuffle_files=False,
                 download=download)
  # Batches of 4096 rather than `batch_size=-1` (one batch of everything): the same rows in
  # the same order, and it also works on `tfds.testing.mock_data`, whose unknown-length
  # datasets make the single giant batch abort the process.
  images, labels = [], []
  for batch in tfds.as_numpy(ds.batch(4096)):
    images.append(batch["image"])
    labels.append(batch["label"])
  images = np.concatenate(images) if images else np.zeros((0, 1, 1, 1), np.uint8)
  labels = np.concatenate(labels).astype(np.int32) if labels else np.zeros((0,), np.int32)
  images.flags.writeable = False
  labels.flags.writeable = False
  return images, labels


def clear_cache() -> None:
  """Forgets the splits read so far (tests use it between mock data sets)."""
  _read.cache_clear()


def split_rows(split: str, n_train: int) -> tuple[str, slice]:
  """(tfds split, rows of it) that make up `split`; see the module docstring."""
  n_val = n_train // 10
  return {"train": ("train", slice(0, n_train - n_val)),
          "validation": ("train", slice(n_train - n_val, n_train)),
          "train+validation": ("train", slice(0, n_train)),
          "test": ("test", slice(None))}[split]


def load_tfds(name: str, split: str, image_size: int | None = None,
              data_dir: str | None = None, download: bool = True) -> ArrayDataset:
  """Split `split` of tfds data set `name` (`mnist` or `cifar10`) as an `ArrayDataset`."""
  check_split(name, split, SPLITS)
  info = INFO[name]
  image_size = info["image_size"] if image_size is None else check_int(
      image_size, f"{name}: image_size (data.image_size)", 1)
  data_dir = check_path(data_dir, f"{name}: data_dir (data.data_dir)")
  download = check_bool(download, f"{name}: download")
  source = "test" if split == "test" else "train"
  images, labels = _read(name, source, data_dir, download)
  _, rows = split_rows(split, len(labels))
  ids = np.arange(len(labels), dtype=np.int32)[rows]
  image = images[rows].astype(np.float32) / np.float32(255.0)
  image = gray_to_rgb(resize_images(image, image_size))
  return ArrayDataset({"image": np.ascontiguousarray(image, dtype=np.float32),
                       "label": labels[rows].copy(), "image_id": ids},
                      info["num_classes"], name, split)


@register("mnist", splits=SPLITS)
def load_mnist(split: str, image_size: int | None = None, data_dir: str | None = None,
               download: bool = True) -> ArrayDataset:
  """MNIST (module docstring); native 28x28, `image_size=32` for LeNet-5."""
  return load_tfds("mnist", split, image_size, data_dir, download)


@register("cifar10", splits=SPLITS)
def load_cifar10(split: str, image_size: int | None = None, data_dir: str | None = None,
                 download: bool = True) -> ArrayDataset:
  """CIFAR-10 (module docstring); native 32x32."""
  return load_tfds("cifar10", split, image_size, data_dir, download)
