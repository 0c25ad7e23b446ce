"""The per-example data sets, registered here: `shapes` and the tfds catalog readers.

Each loader returns an `ExampleDataset` (see `jaxcv.data.pipeline`): a random-access source
of examples that the pipeline sanitises, augments, pads to `max_boxes` and batches. Which
labels reach the batches is chosen with `keys` (e.g. `("image", "semantic")` for
segmentation: padding masks nobody uses costs time), `image_id` always included.

Every option is checked when the data set is loaded, a ValueError naming it (an
`image_size` below 32, a misspelt key with the known ones listed, negative or non-integer
`split_sizes`, `max_boxes` < 1, ...): a bad option would otherwise fail the same way on
every example, which the pipeline must not mistake for unreadable examples.

`class_counts` on the returned data set gives the size of each label space: `label`
(classification, 0..C-1), `classes` (objects, 1..C), `semantic` (classes per pixel incl.
background 0), `panoptic` (segment classes). Tasks pick the one they predict.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxcv.data import catalog
from jaxcv.data import shapes as shapes_lib
from jaxcv.data.base import check_bool, check_int, check_keys, check_path, read_record
from jaxcv.data.pipeline import ExampleDataset
from jaxcv.data.registry import register

ALWAYS_KEYS = ("image", "image_id")


class KeySelect:
  """A source restricted to `keys` (plus `image` and `image_id`); all keys when None."""

  def __init__(self, source, keys: Sequence[str] | None):
    self.source = source
    self.keys = None if keys is None else tuple(dict.fromkeys((*ALWAYS_KEYS, *keys)))

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i: int) -> dict:
    example = self.source[i]
    if self.keys is None:
      return dict(example)
    missing = [k for k in self.keys if k not in example]
    if missing:  # the loaders check `keys`; this is a source that breaks its own key list
      raise KeyError(f"example {i} has no {missing} (data.keys); it has {sorted(example)}")
    return {k: example[k] for k in self.keys}


def _compact(value) -> tuple:
  """(kind, array) storing `value` losslessly in fewer bytes where that is exact: float maps
  whose values are all k / 255 (8-bit images) as uint8 codes, small non-negative integers as
  uint8; anything else as it is."""
  a = np.asarray(value)
  if a.size and a.dtype == np.float32:
    codes = np.rint(a * np.float32(255.0))
    if codes.min() >= 0 and codes.max() <= 255:
      codes = codes.astype(np.uint8)
      if np.array_equal(codes.astype(np.float32) / np.float32(255.0), a):
        return "u8/255", codes
  if a.size and a.dtype.kind in "iu" and a.dtype.itemsize > 1 and a.min() >= 0 \
     and a.max() <= 255:
    return a.dtype, a.astype(np.uint8)
  return None, a


def _expand(kind, a: np.ndarray) -> np.ndarray:
  if kind is None:
    return a
  if kind == "u8/255":
    return a.astype(np.float32) / np.float32(255.0)
  return a.astype(kind)


class CachedSource:
  """Keeps every example after its first read, in memory, stored losslessly in fewer bytes
  (`_compact`: 8-bit images as uint8, small label maps as uint8), and returns exactly what
  `source[i]` returned. For sources that are slow to read or make (a generated `shapes`
  split) and fit in memory: at 128x128 an image with its semantic map takes 64 KB.
  Safe with several worker threads (two may make the same example once each)."""

  def __init__(self, source):
    self.source = source
    self._store: dict[int, dict] = {}

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i: int) -> dict:
    i = int(i)
    stored = self._store.get(i)
    if stored is None:
      example = self.source[i]
      self._store[i] = {k: _compact(v) for k, v in example.items()}
      return dict(example)
    return {k: _expand(kind, a) for k, (kind, a) in stored.items()}


class ShapesSource:
  """Split `split` of `shapes`, each example generated on access (deterministic, offline)."""

  def __init__(self, split: str, image_size: int, num_examples: int, seed: int):
    self.split, self.image_size = split, int(image_size)
    self.num_examples, self.seed = int(num_examples), int(seed)

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, i: int) -> dict:
    if not 0 <= int(i) < self.num_examples:
      raise IndexError(f"shapes/{self.split} has {self.num_examples} examples; asked for {i}")
    return shapes_lib.generate_example(self.seed, int(i), self.image_size, self.split)


class DecodedSource:
  """A tfds data source whose records go through `decode`."""

  def __init__(self, records, decode):
    self.records, self.decode = records, decode

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, i: int) -> dict:
    return self.decode(read_record(self.records, int(i), "shapes (tfds)"))


SHAPES_CLASS_COUNTS = {"label": len(shapes_lib.LABEL_NAMES),
                       "classes": shapes_lib.NUM_CLASSES,
                       "semantic": shapes_lib.NUM_CLASSES + 1,
                       "panoptic": len(shapes_lib.PANOPTIC_CLASS_NAMES)}


@register("shapes", splits=shapes_lib.SPLITS)
def load_shapes(split: str, *, image_size: int = 128,
                split_sizes: Mapping[str, int] | None = None, seed: int = 0,
                source: str = "generate", data_dir: str | None = None,
                keys: Sequence[str] | None = None, max_boxes: int = 16,
                max_segments: int = 16, cache: bool = False) -> ExampleDataset:
  """`shapes` split `split` as an `ExampleDataset`.

  Args:
    image_size: S; images are S x S (>= 32).
    split_sizes: examples per split (default `shapes.DEFAULT_SPLIT_SIZES`); missing splits
      keep their default.
    seed: the data set's seed (examples are a function of (seed, split, index)).
    source: "generate" (each example made on access; nothing stored) or "tfds" (the
      `shapes` tfds builder, prepared once in ArrayRecord files under `data_dir`, then read
      with `tfds.data_source`). Both give identical examples.
    keys: labels to keep (default: all; `shapes.EXAMPLE_KEYS`); `image` and `image_id`
      always.
    max_boxes, max_segments: padded sizes of the per-object and per-segment arrays (>= 1).
    cache: keep each example (its `keys`) in memory after it is first made (`CachedSource`):
      later epochs cost no generation. Memory: about 64 KB per example at 128x128 for
      `keys=("semantic",)`, several times that with every label.

  Every option is checked here (ValueError naming it); see the module docstring.
  """
  image_size = check_int(image_size, "shapes: image_size (data.image_size)",
                         shapes_lib.MIN_IMAGE_SIZE)
  sizes = dict(shapes_lib.DEFAULT_SPLIT_SIZES)
  if split_sizes is not None and not hasattr(split_sizes, "items"):
    raise ValueError(f"shapes: split_sizes must map split names to sizes, e.g. "
                     f"{{'train': 500}}; got {split_sizes!r}")
  for k, v in dict(split_sizes or {}).items():
    if k not in shapes_lib.SPLITS:
      raise ValueError(f"shapes has no split {k!r} (data.split_sizes); splits: "
                       f"{list(shapes_lib.SPLITS)}")
    # the generator's index range, [0, 1,000,000), bounds a split's size
    sizes[k] = check_int(v, f"shapes: split_sizes[{k!r}]", 0, shapes_lib.MAX_INDEX)
  seed = check_int(seed, "shapes: seed (data.seed)", 0)
  data_dir = check_path(data_dir, "shapes: data_dir (data.data_dir)")
  keys = check_keys("shapes", keys, shapes_lib.EXAMPLE_KEYS)
  max_boxes = check_int(max_boxes, "shapes: max_boxes (data.max_boxes)", 1)
  max_segments = check_int(max_segments, "shapes: max_segments (data.max_segments)", 1)
  cache = check_bool(cache, "shapes: cache (data.cache)")
  if source == "generate":
    src = ShapesSource(split, image_size, sizes[split], seed)
  elif source == "tfds":
    if data_dir is None:
      raise ValueError("shapes with source='tfds' needs data.data_dir (where the ArrayRecord "
                       "files are built once)")
    from jaxcv.data import shapes_tfds  # noqa: PLC0415 - imports TensorFlow

    builder = shapes_tfds.build(data_dir, image_size, sizes, seed)
    src = DecodedSource(builder.as_data_source(split), shapes_lib.decode)
  else:
    raise ValueError(f"unknown shapes source {source!r}; known: ['generate', 'tfds']")
  src = KeySelect(src, keys)
  ds = ExampleDataset(CachedSource(src) if cache else src, SHAPES_CLASS_COUNTS["label"],
                      "shapes", split,
                      max_boxes=max_boxes, max_segments=max_segments)
  ds.class_counts = dict(SHAPES_CLASS_COUNTS)
  ds.class_names = tuple(shapes_lib.CLASS_NAMES)  # of classes 1..C (detection pictures)
  ds.keypoint_names = tuple(shapes_lib.KEYPOINT_NAMES)  # the keypoints task's metadata
  ds.keypoint_flip_pairs = tuple(shapes_lib.KEYPOINT_FLIP_PAIRS)
  ds.oks_sigmas = tuple(float(s) for s in shapes_lib.OKS_SIGMAS)
  ds.stuff_classes = (shapes_lib.WALL_CLASS, shapes_lib.GROUND_CLASS)  # panoptic stuff ids
  ds.stuff_names = tuple(shapes_lib.STUFF_NAMES)
  return ds


def catalog_loader(name: str):
  """Loader of catalog set `name` (read with `tfds.data_source` from `data_dir`)."""

  def load(split: str, *, data_dir: str | None = None, keys: Sequence[str] | None = None,
           max_boxes: int = 100, max_segments: int = 128, download: bool = False,
           **decode_kwargs) -> ExampleDataset:
    # checked before the source is opened (which imports TensorFlow: seconds)
    data_dir = check_path(data_dir, f"{name}: data_dir (data.data_dir)")
    keys = check_keys(name, keys, catalog.EXAMPLE_KEYS[name])
    max_boxes = check_int(max_boxes, f"{name}: max_boxes (data.max_boxes)", 1)
    max_segments = check_int(max_segments, f"{name}: max_segments (data.max_segments)", 1)
    download = check_bool(download, f"{name}: download")
    src = catalog.source(name, split, data_dir=data_dir, download=download, **decode_kwargs)
    n = catalog.NUM_CLASSES[name]
    ds = ExampleDataset(KeySelect(src, keys), n, name, split, max_boxes=max_boxes,
                        max_segments=max_segments)
    ds.class_counts = {"label": n, "classes": n, "panoptic": n}
    if name == "oxford_iiit_pet":
      fg = decode_kwargs.get("foreground", "pet")
      ds.class_counts["semantic"] = {"pet": 2, "species": 3, "breed": n + 1}[fg]
    return ds

  load.__name__ = f"load_{name.replace('/', '_')}"
  load.__doc__ = f"`{name}` split `split` as an `ExampleDataset` (see `catalog.source`)."
  return load


# catalog sets read per example; mnist and cifar10 keep their in-memory loaders
CATALOG_EXAMPLE_SETS = ("voc/2007", "voc/2012", "coco/2017", "coco/2017_panoptic",
                        "oxford_iiit_pet")
for _name in CATALOG_EXAMPLE_SETS:
  register(_name)(catalog_loader(_name))
del _name
