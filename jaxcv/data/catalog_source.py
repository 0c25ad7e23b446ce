"""Catalog sets as random-access sources: `source(name, split)` -> `CatalogSource`.

Records come from `tfds.data_source` (ArrayRecord files), or, for a set prepared as TFRecord
only, from a split read once with `tfds.load` (`_LoadedRecords`); each is mapped by the set's
decoder (`jaxcv.data.catalog_decode`). TensorFlow is imported when a source is opened
(`base.import_tfds`), never on import of this module.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any

import numpy as np

from jaxcv.data import tfds_readers
from jaxcv.data.base import check_split, import_tfds, read_record
from jaxcv.data.catalog_decode import DECODE_OPTIONS, reader

_log = logging.getLogger(__name__)

# Image features kept encoded by the tfds.load fallback and decoded on access.
_IMAGE_FEATURES = {"voc/2007": ("image",), "voc/2012": ("image",), "coco/2017": ("image",),
                   "coco/2017_panoptic": ("image", "panoptic_image"),
                   "oxford_iiit_pet": ("image", "segmentation_mask"),
                   "mnist": ("image",), "cifar10": ("image",)}
# sets read with jaxcv's split names (validation carved from tfds train, `tfds_readers`)
_JAXCV_SPLITS = ("mnist", "cifar10")


class _LoadedRecords:
  """Fallback random access: a split read once with `tfds.load`, images left encoded."""

  def __init__(self, tfds, name: str, split: str, data_dir: str | None, download: bool):
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
      builder.download_and_prepare()
    keys = _IMAGE_FEATURES[name]
    self._features = {k: builder.info.features[k] for k in keys}
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={k: tfds.decode.SkipDecoding() for k in keys})
    self._records = list(tfds.as_numpy(ds))

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, i: int) -> dict[str, Any]:
    rec = dict(self._records[i])
    for k, feature in self._features.items():
      rec[k] = feature.decode_example_np(rec[k])
    return rec


class CatalogSource:
  """Random-access source of examples: `len(src)`, `src[i] -> example dict`.

  Records come from `tfds.data_source` (ArrayRecord; the fallback is described in the module
  docstring: `backend` says which is used) and are mapped by `READERS[name]`. Picklable as
  far as the tfds data source is (ArrayRecord sources are), so grain workers can hold it.
  """

  def __init__(self, name: str, split: str, data_dir: str | None = None,
               download: bool = False, **decode_kwargs):
    self.decode = reader(name)
    self.name, self.split = name, str(split)
    self.decode_kwargs = dict(decode_kwargs)
    if self.decode_kwargs:
      try:  # unknown options fail here rather than on the first example
        inspect.signature(self.decode).bind({}, None, **self.decode_kwargs)
      except TypeError as e:
        raise ValueError(f"{name}: bad decode option(s) {sorted(self.decode_kwargs)}: {e}"
                         ) from None
      for option, value in self.decode_kwargs.items():
        allowed = DECODE_OPTIONS.get(name, {}).get(option)
        if allowed is not None and value not in allowed:
          raise ValueError(f"{name}: {option} must be one of {allowed}, got {value!r}")
    tfds_split, rows = self.split, slice(None)
    if name in _JAXCV_SPLITS:
      check_split(name, self.split, tfds_readers.SPLITS)
      tfds_split = "test" if self.split == "test" else "train"
    data_dir = None if data_dir is None else str(data_dir)
    tfds = import_tfds()
    try:
      self._records = tfds.data_source(name, split=tfds_split, data_dir=data_dir,
                                       download=download)
      self.backend = "data_source"
    except (NotImplementedError, ImportError, AttributeError) as e:
      _log.warning("%s: tfds.data_source unavailable (%s: %s); reading split %r with "
                   "tfds.load into memory instead", name, type(e).__name__, e, tfds_split)
      self._records = _LoadedRecords(tfds, name, tfds_split, data_dir, download)
      self.backend = "load"
    n = len(self._records)
    if name in _JAXCV_SPLITS:
      _, rows = tfds_readers.split_rows(self.split, n)
    self._start, stop, _ = rows.indices(n)
    self._len = max(0, stop - self._start)

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    i = int(i)
    if not 0 <= i < self._len:
      raise IndexError(f"{self.name} {self.split}: index {i} outside [0, {self._len})")
    j = self._start + i
    record = read_record(self._records, j, f"{self.name} {self.split}")
    return self.decode(record, index=j, **self.decode_kwargs)

  def __repr__(self) -> str:
    return (f"CatalogSource({self.name!r}, {self.split!r}, len={self._len}, "
            f"backend={self.backend!r})")


def source(name: str, split: str, data_dir: str | None = None, download: bool = False,
           **decode_kwargs) -> CatalogSource:
  """Random-access source of split `split` of catalog set `name` (module docstring).

  `data_dir`: tfds data directory (default `~/tensorflow_datasets` or `$TFDS_DATA_DIR`).
  `download=True` lets tfds download and prepare a missing set (in ArrayRecord). Extra
  keyword arguments go to the decoder (e.g. `foreground="species"` for `oxford_iiit_pet`).
  Unknown names are ValueErrors listing the known ones.
  """
  return CatalogSource(name, split, data_dir=data_dir, download=download, **decode_kwargs)
