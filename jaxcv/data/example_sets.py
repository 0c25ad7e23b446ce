"""Registration of the per-example data sets: `shapes` and the tfds catalog readers.

Each loader returns an `ExampleDataset` (see `jaxcv.data.pipeline`): a random-access source
of examples that the pipeline sanitises, augments, pads to `max_boxes` and batches. Which
labels reach the batches is chosen with `keys` (e.g. `("image", "semantic")` for
segmentation: padding masks nobody uses costs time), `image_id` always included.

`class_counts` on the returned data set gives the size of each label space: `label`
(classification, 0..C-1), `classes` (objects, 1..C), `semantic` (classes per pixel incl.
background 0), `panoptic` (segment classes). Tasks pick the one they predict.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from jaxcv.data import catalog
from jaxcv.data import shapes as shapes_lib
from jaxcv.data.pipeline import ExampleDataset

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
    if missing:
      raise KeyError(f"example {i} has no {missing}; it has {sorted(example)}")
    return {k: example[k] for k in self.keys}


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
    return self.decode(self.records[int(i)])


SHAPES_CLASS_COUNTS = {"label": len(shapes_lib.LABEL_NAMES),
                       "classes": shapes_lib.NUM_CLASSES,
                       "semantic": shapes_lib.NUM_CLASSES + 1,
                       "panoptic": len(shapes_lib.PANOPTIC_CLASS_NAMES)}


def load_shapes(split: str, *, image_size: int = 128,
                split_sizes: Mapping[str, int] | None = None, seed: int = 0,
                source: str = "generate", data_dir: str | None = None,
                keys: Sequence[str] | None = None, max_boxes: int = 16,
                max_segments: int = 16) -> ExampleDataset:
  """`shapes` split `split` as an `ExampleDataset`.

  Args:
    image_size: S; images are S x S (>= 32).
    split_sizes: examples per split (default `shapes.DEFAULT_SPLIT_SIZES`); missing splits
      keep their default.
    seed: the data set's seed (examples are a function of (seed, split, index)).
    source: "generate" (each example made on access; nothing stored) or "tfds" (the
      `shapes` tfds builder, prepared once in ArrayRecord files under `data_dir`, then read
      with `tfds.data_source`). Both give identical examples.
    keys: labels to keep (default: all); `image` and `image_id` always.
    max_boxes, max_segments: padded sizes of the per-object and per-segment arrays.
  """
  sizes = dict(shapes_lib.DEFAULT_SPLIT_SIZES)
  sizes.update({k: int(v) for k, v in dict(split_sizes or {}).items()})
  unknown = sorted(set(sizes) - set(shapes_lib.SPLITS))
  if unknown:
    raise ValueError(f"shapes has no split(s) {unknown}; splits: {list(shapes_lib.SPLITS)}")
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
  ds = ExampleDataset(KeySelect(src, keys), SHAPES_CLASS_COUNTS["label"], "shapes", split,
                      max_boxes=max_boxes, max_segments=max_segments)
  ds.class_counts = dict(SHAPES_CLASS_COUNTS)
  return ds


def catalog_loader(name: str):
  """Loader of catalog set `name` (read with `tfds.data_source` from `data_dir`)."""

  def load(split: str, *, data_dir: str | None = None, keys: Sequence[str] | None = None,
           max_boxes: int = 100, max_segments: int = 128, download: bool = False,
           **decode_kwargs) -> ExampleDataset:
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
