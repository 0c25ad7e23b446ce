"""`shapes` as a TensorFlow Datasets builder, for grain's random-access readers.

Why: the input pipeline reads examples by index from a tfds data source
(`builder.as_data_source(split)`, ArrayRecord files). This builder stores exactly the
examples `jaxcv.data.shapes.generate_example` makes, losslessly, and builds offline in
seconds into any `data_dir`; `shapes.decode` maps a stored record back to the example dict.

Use:

    builder = build(data_dir, image_size=128, split_sizes={"train": 2000}, seed=0)
    source = builder.as_data_source("train")
    example = shapes.decode(source[7])   # == shapes.generate_example(0, 7, 128, "train")

Configs: `64`, `128` (default), `256` (image size, default split sizes 2000/200/200, seed 0);
`make_config(image_size, split_sizes, seed)` makes any other (its name spells out all three,
so different settings never share files in one `data_dir`).

Features (see `shapes.generate_record`): `image` uint8 PNG [S, S, 3]; zlib-compressed tensors
(faster to write than PNG; tfds decodes uint16 PNG only with OpenCV): `instance_map`,
`panoptic`, `depth` uint16 [S, S, 1], `normals` uint16 [S, S, 3], `semantic`, `sketch` uint8
[S, S, 1]; `image_id`, `label` int32 scalars; `boxes` float32 [n, 4],
`classes` int32 [n], `iscrowd` bool [n], `area` float32 [n], `keypoints` float32 [n, 4, 3];
`segment_ids`, `segment_classes` int32 [s], `segment_isthing`, `segment_iscrowd` bool [s].
Importing this module imports TensorFlow (seconds); `jaxcv.data.shapes` does not.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from jaxcv.data import shapes


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
  """Image size S, examples per split (train, validation, test) and seed."""
  image_size: int = 128
  split_sizes: tuple[int, int, int] = (2000, 200, 200)
  seed: int = 0


def make_config(image_size: int = 128, split_sizes: dict[str, int] | None = None,
                seed: int = 0) -> ShapesConfig:
  """A config; `split_sizes` overrides `shapes.DEFAULT_SPLIT_SIZES` per split name."""
  shapes._check(image_size, "train")
  sizes = dict(shapes.DEFAULT_SPLIT_SIZES)
  for split, n in (split_sizes or {}).items():
    shapes._check(image_size, split)
    if int(n) < 1:  # tfds cannot write an empty split
      raise ValueError(f"split size of {split!r} must be at least 1, got {n}")
    sizes[split] = int(n)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative int, got {seed!r}")
  sizes = tuple(sizes[s] for s in shapes.SPLITS)
  default = sizes == tuple(shapes.DEFAULT_SPLIT_SIZES[s] for s in shapes.SPLITS) and seed == 0
  name = (f"{image_size}" if default else
          f"{image_size}_n{sizes[0]}-{sizes[1]}-{sizes[2]}_seed{seed}")
  return ShapesConfig(name=name, image_size=int(image_size), split_sizes=sizes, seed=int(seed),
                      description=f"{image_size}x{image_size}, splits "
                                  f"{dict(zip(shapes.SPLITS, sizes))}, seed {seed}")


class Shapes(tfds.core.GeneratorBasedBuilder):
  """jaxcv's synthetic `shapes` scenes (see `jaxcv.data.shapes`); nothing is downloaded."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First version."}
  BUILDER_CONFIGS: ClassVar[list[ShapesConfig]] = [make_config(s) for s in (64, 128, 256)]
  DEFAULT_CONFIG_NAME = "128"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # tfds' own lookup of this file needs the `importlib_resources` backport for modules in a
    # package (tensorflow-datasets 4.9.10); the answer is simply this file.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    t = tfds.features.Tensor

    def png(channels, dtype):
      return tfds.features.Image(shape=(s, s, channels), dtype=dtype, encoding_format="png")

    def zlib(channels, dtype):  # faster to write than PNG; uint16 PNG would need OpenCV
      return t(shape=(s, s, channels), dtype=dtype, encoding=tfds.features.Encoding.ZLIB)

    k = len(shapes.KEYPOINT_NAMES)
    return self.dataset_info_from_configs(
        description="jaxcv synthetic shapes: every label for every task, generated offline.",
        features=tfds.features.FeaturesDict({
            "image": png(3, np.uint8),
            "image_id": t(shape=(), dtype=np.int32),
            "label": t(shape=(), dtype=np.int32),
            "boxes": t(shape=(None, 4), dtype=np.float32),
            "classes": t(shape=(None,), dtype=np.int32),
            "iscrowd": t(shape=(None,), dtype=np.bool_),
            "area": t(shape=(None,), dtype=np.float32),
            "keypoints": t(shape=(None, k, 3), dtype=np.float32),
            "instance_map": zlib(1, np.uint16),
            "semantic": zlib(1, np.uint8),
            "depth": zlib(1, np.uint16),
            "normals": zlib(3, np.uint16),
            "sketch": zlib(1, np.uint8),
            "panoptic": zlib(1, np.uint16),
            "segment_ids": t(shape=(None,), dtype=np.int32),
            "segment_classes": t(shape=(None,), dtype=np.int32),
            "segment_isthing": t(shape=(None,), dtype=np.bool_),
            "segment_iscrowd": t(shape=(None,), dtype=np.bool_),
        }),
        supervised_keys=None,
        disable_shuffling=True,  # record i is example i (grain reads by index)
        homepage="https://github.com/jaxcv/jaxcv",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in shapes.SPLITS}

  def _generate_examples(self, split):
    c = self.builder_config
    n = c.split_sizes[shapes.SPLITS.index(split)]
    for i in range(n):
      yield i, shapes.generate_record(c.seed, i, c.image_size, split)


def build(data_dir: str, image_size: int = 128, split_sizes: dict[str, int] | None = None,
          seed: int = 0) -> Shapes:
  """The prepared builder (ArrayRecord files in `data_dir`, made if absent; offline)."""
  builder = Shapes(data_dir=str(data_dir), config=make_config(image_size, split_sizes, seed),
                   file_format="array_record")
  builder.download_and_prepare()
  return builder
