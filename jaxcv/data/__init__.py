"""Data sets by name: `load(name, split, **kwargs) -> ArrayDataset`.

Known names: `digits` (scikit-learn's 8x8 digits, built in, no download), `mnist` and
`cifar10` (TensorFlow Datasets, read from `data_dir`) as in-memory `ArrayDataset`s;
`shapes` (the built-in synthetic set with every label, generated offline) and the catalog sets
`voc/2007`, `voc/2012`, `coco/2017`, `coco/2017_panoptic`, `oxford_iiit_pet` as
`ExampleDataset`s, which the pipeline (`jaxcv.data.pipeline`) sanitises, augments
(`jaxcv.data.augment`), pads and batches. Every split comes in the batch format of
`docs/conventions.md`.

A new data set is one new module in this package with a loader function
`fn(split, **kwargs) -> ArrayDataset` decorated with `@register("name")`: the first lookup
(`load`, `names`) imports every module of the package (`REGISTRY`, a
`jaxcv.registry.Registry`), so neither `load` nor this file changes. Discovery imports no
TensorFlow: loaders import it when they read (`base.import_tfds`), and `shapes_tfds`, which
imports it at its top, is left to the `shapes` loader (`source="tfds"`).

`from_config(config.data)` builds a run's splits from a config section (`jaxcv.data.build`).
"""
from jaxcv.data.base import (ArrayDataset, CorruptExampleError, check_split, gray_to_rgb,
                              resize_images)
from jaxcv.data.build import from_config, set_transforms
from jaxcv.data.registry import REGISTRY, load, names, register, unregister

__all__ = ["REGISTRY", "ArrayDataset", "CorruptExampleError", "from_config", "load", "names",
           "register", "set_transforms", "unregister", "check_split", "gray_to_rgb",
           "resize_images"]
