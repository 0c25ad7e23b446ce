"""In-memory data sets and the helpers the readers share.

A split is held on the host as a dict of NumPy arrays sharing a leading example axis, in the
batch format of `docs/conventions.md` (`image` float32 RGB in [0, 1] `[N, H, W, 3]`, `label`
int32, `image_id` int32). The training input pipeline gathers rows with `get`.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import numpy as np


class CorruptExampleError(ValueError):
  """One example (one stored record) cannot be read or decoded: bytes the storage layer
  cannot return, an image that does not decode, label arrays that contradict each other.

  The per-example pipeline (`jaxcv.data.pipeline.ExampleDataset.read`) replaces such an
  example by the next readable one and counts it; a plain ValueError (a bad option, a bug)
  is not caught there and stops the run with its own message. A ValueError subclass, so
  callers that decode one record themselves catch it as before.
  """


def read_record(records, index: int, where: str) -> Any:
  """`records[index]` from a storage layer (a tfds data source, ArrayRecord, TensorFlow's
  image decoding); whatever it raises for that one record becomes CorruptExampleError.

  Foreign code signals a damaged record with many types (OSError, a bare Exception from
  TensorStore, tf.errors.*), so every failure of this one call counts as the record being
  unreadable; IndexError (a bad index is the caller's bug) and MemoryError pass through.
  """
  try:
    return records[index]
  except (IndexError, MemoryError):
    raise
  except Exception as e:  # noqa: BLE001 - see the docstring
    raise CorruptExampleError(f"{where}: record {index} cannot be read "
                              f"({type(e).__name__}: {str(e)[:300]})") from e


def check_int(value: Any, what: str, minimum: int | None = None,
              maximum: int | None = None) -> int:
  """`value` as an int; ValueError naming `what` unless it is an int (not a bool, not a
  float such as 2.5 or 64.0) within [minimum, maximum]."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{what} must be an int, got {value!r}")  # noqa: TRY004
  if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
    span = (f">= {minimum}" if maximum is None else f"<= {maximum}" if minimum is None
            else f"in [{minimum}, {maximum}]")
    raise ValueError(f"{what} must be {span}, got {value}")
  return int(value)


def check_bool(value: Any, what: str) -> bool:
  """`value` as a bool; ValueError naming `what` unless it is True or False (a string such
  as "no" would otherwise count as True)."""
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{what} must be True or False, got {value!r}")
  return bool(value)


def check_path(value: Any, what: str) -> str | None:
  """`value` as a str path (None passes); ValueError naming `what` otherwise."""
  if value is None:
    return None
  if not isinstance(value, (str, os.PathLike)) or not str(value):
    raise ValueError(f"{what} must be a directory path (str) or None, got {value!r}")
  return str(value)


def check_keys(name: str, keys: Any, known: Iterable[str]) -> tuple[str, ...] | None:
  """`keys` (labels to keep; None for all) as a tuple; ValueError naming the unknown key and
  listing `known` for a misspelt one, or when `keys` is a bare string ("depth" would be the
  keys d, e, p, t, h)."""
  if keys is None:
    return None
  known = list(known)
  if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
    raise ValueError(f"data set {name!r}: keys must be a list or tuple of label names, "
                     f"e.g. ({keys!r},); got {keys!r}")
  keys = tuple(keys)
  unknown = [k for k in keys if k not in known]
  if unknown:
    raise ValueError(f"data set {name!r} has no label(s) {unknown} (data.keys); "
                     f"known: {known}")
  return keys


class ArrayDataset:
  """A split held in memory: dict of NumPy arrays sharing a leading example axis.

  Checked when built (a ValueError names the problem): `image` is float32 `[N, H, W, 3]` with
  values in [0, 1]; `label`, when present, is an integer `[N]` within `[0, num_classes)`
  (stored as int32); `image_id`, when present, is an integer `[N]` with unique values
  (stored as int32); every array has the same N.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], num_classes: int, name: str,
               split: str):
    self.name, self.split = str(name), str(split)
    self.num_classes = int(num_classes)
    where = f"data set {self.name!r} split {self.split!r}"
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if "image" not in arrays:
      raise ValueError(f"{where}: no 'image' array; keys: {sorted(arrays)}")
    image = arrays["image"]
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(f"{where}: 'image' has shape {image.shape}; expected [N, H, W, 3] "
                       "(NHWC, 3 RGB channels; grayscale is repeated in all three)")
    if image.dtype != np.float32:
      raise ValueError(f"{where}: 'image' has dtype {image.dtype}; expected float32 in [0, 1]")
    if image.size:
      lo, hi = float(image.min()), float(image.max())
      if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
        raise ValueError(f"{where}: 'image' values span [{lo}, {hi}]; expected [0, 1]")
    n = image.shape[0]
    for key, a in arrays.items():
      if a.ndim == 0 or a.shape[0] != n:
        raise ValueError(f"{where}: arrays do not share the example axis: 'image' has "
                         f"{n} rows, {key!r} has shape {a.shape}")
    for key in ("label", "image_id"):
      if key not in arrays:
        continue
      a = arrays[key]
      if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{where}: {key!r} has dtype {a.dtype} and shape {a.shape}; "
                         "expected an integer array [N]")
      if a.dtype != np.int32:
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
          raise ValueError(f"{where}: {key!r} does not fit in int32")
        arrays[key] = a.astype(np.int32)
    if "label" in arrays:
      labels = arrays["label"]
      bad = (labels < 0) | (labels >= self.num_classes)
      if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{where}: label {int(labels[i])} at index {i} is outside "
                         f"[0, {self.num_classes}) ({int(bad.sum())} bad labels in all)")
    if "image_id" in arrays:
      ids = arrays["image_id"]
      uniq, counts = np.unique(ids, return_counts=True)
      if (counts > 1).any():
        raise ValueError(f"{where}: image_id {int(uniq[np.argmax(counts > 1)])} occurs "
                         f"{int(counts.max())} times; ids must be unique within a split")
    self.arrays: dict[str, np.ndarray] = arrays

  def __len__(self) -> int:
    return int(self.arrays["image"].shape[0])

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, 3)."""
    return tuple(int(d) for d in self.arrays["image"].shape[1:])

  def get(self, indices: np.ndarray, seed=None) -> dict[str, np.ndarray]:
    """Rows `indices` of every array, as a new dict of new arrays.

    `seed` is accepted for the interface `ExampleDataset.get` shares and not used: arrays
    held in memory are augmented inside the compiled step (see the classification task).
    """
    indices = np.asarray(indices)
    return {k: v[indices] for k, v in self.arrays.items()}

  def __repr__(self) -> str:
    return (f"ArrayDataset({self.name!r}, {self.split!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, num_classes={self.num_classes}, "
            f"keys={sorted(self.arrays)})")


def check_split(name: str, split: str, splits: Iterable[str]) -> None:
  """ValueError listing `splits` unless `split` is one of them."""
  splits = list(splits)
  if split not in splits:
    raise ValueError(f"data set {name!r} has no split {split!r}; known splits: {splits}")


def _linear_weights(in_size: int, out_size: int) -> np.ndarray:
  """[in_size, out_size] weights of a half-pixel-centred linear (triangle) resize.

  The same weights as `jax.image.resize(..., method="linear", antialias=True)`: plain
  bilinear interpolation when enlarging (edge pixels repeated), a widened triangle filter
  (area-like averaging) when shrinking.
  """
  scale = out_size / in_size
  kernel_scale = max(1.0 / scale, 1.0)
  sample = (np.arange(out_size, dtype=np.float64) + 0.5) / scale - 0.5
  x = np.abs(sample[None, :] - np.arange(in_size, dtype=np.float64)[:, None]) / kernel_scale
  w = np.maximum(0.0, 1.0 - x)
  return w / w.sum(axis=0, keepdims=True)


def resize_images(images: np.ndarray, size: int | tuple[int, int],
                  chunk: int = 4096) -> np.ndarray:
  """Bilinear resize of `[N, H, W, C]` float images to `size` (int or (H, W)), in NumPy.

  Deterministic and host-only (no device work); float32 out. Values stay within the input
  range, since every output is a convex combination of input pixels.
  """
  oh, ow = (size, size) if np.isscalar(size) else tuple(size)
  n, h, w, c = images.shape
  if (h, w) == (oh, ow):
    return images.astype(np.float32, copy=False)
  wh, ww = _linear_weights(h, oh), _linear_weights(w, ow)
  out = np.empty((n, oh, ow, c), np.float32)
  for s in range(0, n, chunk):
    x = images[s:s + chunk].astype(np.float64)
    x = np.einsum("nhwc,hy->nywc", x, wh)
    out[s:s + chunk] = np.einsum("nywc,wx->nyxc", x, ww)
  return out


def gray_to_rgb(images: np.ndarray) -> np.ndarray:
  """`[N, H, W]` or `[N, H, W, 1]` -> `[N, H, W, 3]`, the gray value in every channel."""
  if images.ndim == 4:
    if images.shape[-1] == 3:
      return images
    if images.shape[-1] != 1:
      raise ValueError(f"cannot make RGB from images of shape {images.shape}")
    images = images[..., 0]
  return np.repeat(images[..., None], 3, axis=-1)


def import_tfds():
  """`tensorflow_datasets`, imported on first use, with TensorFlow told to use no GPU.

  The readers call it when they read, never on import: importing TensorFlow takes seconds
  (registry discovery imports every data module), and a TensorFlow that sees the GPUs would
  take accelerator memory from JAX.
  """
  import tensorflow as tf  # noqa: PLC0415
  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):  # already initialised, or no such device type
    pass
  import tensorflow_datasets as tfds  # noqa: PLC0415
  return tfds


def readonly(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Marks cached arrays read-only so no caller can change what later loads return."""
  for a in arrays.values():
    a.flags.writeable = False
  return dict(arrays)
