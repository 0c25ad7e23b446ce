"""TensorFlow Datasets catalog sets as random-access sources of jaxcv examples.

`source(name, split)` opens a prepared tfds data set with `tfds.data_source` (random access
over ArrayRecord files, what grain's `MapDataset` wants) and returns each record mapped to the
example interface of `docs/conventions.md` (the batch table minus the batch axis: NumPy
arrays, unpadded). `decode_<name>(record)` is that mapping for one record as tfds gives it
(a nested dict; sequences as arrays or lists; text as `str` or `bytes`); `READERS` holds
them by name and `reader(name)` looks one up. Padding to `max_boxes`, augmentation and batching happen later in
the pipeline.

| name | task keys | notes |
|---|---|---|
| `voc/2007`, `voc/2012` | `boxes`, `classes` 1..20, `difficult`, `iscrowd` (all False), `area` (box area) | no masks; VOC 2012 `test` has no annotations |
| `coco/2017` | `boxes`, `classes` 1..80, `iscrowd`, `area` (COCO's `area`) | tfds has no instance masks or keypoints for COCO, so `masks` / `keypoints` are absent; `test` has no annotations |
| `coco/2017_panoptic` | `panoptic`, `segment_ids`, `segment_classes` 1..133, `segment_isthing`, `segment_iscrowd` | splits `train`, `validation` |
| `oxford_iiit_pet` | `semantic`, `label` (breed 0..36) | trimap -> `semantic`, see below |
| `mnist`, `cifar10` | `label` 0..9 | gray repeated in all three channels |

Every example has `image` float32 `[H, W, 3]` in [0, 1] (uint8 / 255) and `image_id` int32.

Conventions of the mapping:
- Boxes: tfds stores `[ymin, xmin, ymax, xmax]` normalised by the image size; here they are
  `(x1, y1, x2, y2)` in pixels: `x = xnorm * W`, `y = ynorm * H` (in float64, then float32).
  For VOC this gives back the XML annotation's numbers, which are 1-based pixel indices; no
  shift is applied (detectron2 subtracts 1 from x1 and y1; jaxcv keeps the file's values,
  as VOC's own `voc_eval.py` does).
- Classes: tfds labels are contiguous from 0; `classes = label + 1` (0 is background).
  COCO json export needs COCO's own category ids: `COCO_CATEGORY_IDS[classes - 1]` (80 ids
  in 1..90), and for panoptic `COCO_PANOPTIC_CATEGORY_IDS[segment_classes - 1]` (133 ids in
  1..200; the first 80 are the things, in the order of tfds' labels, which are the order of
  the annotation file's `categories`, sorted by id). `COCO_CATEGORY_NAMES` and
  `COCO_PANOPTIC_CATEGORY_NAMES` give the names, `VOC_CLASS_NAMES` VOC's.
- `area` (COCO): the annotation's `area` field as tfds stores it (int64, so any fraction of
  a polygon area is already dropped). VOC: box area `(x2 - x1) * (y2 - y1)` in pixels.
- `image_id`: COCO's `image/id`; VOC the digits of the file name (`000005.jpg` -> 5,
  `2008_000008.jpg` -> 2008000008); `oxford_iiit_pet`, `mnist` and `cifar10` have no id
  in the record, so `image_id` is the record's index in the tfds split read (for `mnist` and
  `cifar10` the index in tfds `train` / `test`, the same ids as `jaxcv.data.load`).
- Panoptic: the PNG holds `id = R + 256 G + 256^2 B` per pixel (0 = void), matched to
  `segment_ids` (the `panoptic_objects/id` feature).
- `oxford_iiit_pet` trimap (1 pet, 2 background, 3 border): background -> 0, border -> 255
  (ignore; the outline is ambiguous), pet -> 1 by default (`foreground="pet"`, 2 classes),
  or `1 + species` (`"species"`: 1 cat, 2 dog) or `1 + breed` (`"breed"`: 1..37).
- Splits: any tfds split string (`train`, `validation`, `test`, `train+validation`,
  `train[:100]`, ...) except for `mnist` and `cifar10`, which take jaxcv's split names
  (`train`, `validation`, `test`, `train+validation`: the last tenth of tfds `train` is
  `validation`; `jaxcv.data.tfds_readers`), so both give the same rows and ids.

Bad records are `CorruptExampleError`s (a ValueError) naming the problem (object fields of
different lengths, a mask or panoptic map of another size than the image, trimap values
outside 1..3, an image that is not `[H, W, 1 | 3]`, a missing feature), not silently
repaired; so is any failure of the storage layer to return a record (`base.read_record`).
The pipeline replaces such an example by the next one and counts it. Bad options (an unknown
`foreground`, a split the set lacks) are plain ValueErrors when the source is opened.

Preparing the data (needs internet once; afterwards everything reads from `data_dir`,
default `~/tensorflow_datasets`). `tfds.data_source` reads ArrayRecord files, so build with
`--file_format=array_record`:

    tfds build voc/2007 --file_format=array_record --data_dir ~/tensorflow_datasets
    tfds build voc/2012 --file_format=array_record
    tfds build coco/2017 --file_format=array_record            # ~25 GB download
    tfds build coco/2017_panoptic --file_format=array_record   # ~19 GB + panoptic PNGs
    tfds build oxford_iiit_pet --file_format=array_record
    tfds build mnist --file_format=array_record
    tfds build cifar10 --file_format=array_record

or in Python `tfds.builder(name, data_dir=..., file_format="array_record")
.download_and_prepare()`, or `source(name, split, download=True)`. None of these sets
needs manual download steps (COCO comes from images.cocodataset.org). A data set already
prepared as TFRecord only (tfds' default for `tfds.load`) cannot be read by
`tfds.data_source`; `source` then falls back to reading the split once with `tfds.load`
(images kept encoded in memory, decoded on access: fine for VOC, pets, MNIST, CIFAR-10,
tens of GB for COCO), and logs that it does so. Convert instead with
`tfds build NAME --file_format=array_record` (tfds re-generates; or
`tfds convert_format --root_data_dir DIR --out_file_format array_record`).

TensorFlow / tfds are imported only when a source is opened, never on import of this
module, and TensorFlow is told not to use any GPU.

Layout: `catalog_classes` (VOC names, COCO category ids and names, `NUM_CLASSES`),
`catalog_decode` (the decoders, `READERS`, `EXAMPLE_KEYS`), `catalog_source`
(`CatalogSource`, `source`: the tfds access). This module documents the mapping and exports
every public name of the three.
"""
from jaxcv.data.catalog_classes import (COCO_CATEGORY_IDS, COCO_CATEGORY_NAMES,
                                        COCO_PANOPTIC_CATEGORY_IDS,
                                        COCO_PANOPTIC_CATEGORY_NAMES, COCO_PANOPTIC_ISTHING,
                                        NUM_CLASSES, VOC_CLASS_NAMES)
from jaxcv.data.catalog_decode import (DECODE_OPTIONS, EXAMPLE_KEYS, PET_FOREGROUND, READERS,
                                       boxes_to_pixels, decode_cifar10, decode_coco2017,
                                       decode_coco2017_panoptic, decode_mnist,
                                       decode_oxford_iiit_pet, decode_panoptic_png,
                                       decode_voc2007, decode_voc2012, names, reader)
from jaxcv.data.catalog_source import CatalogSource, source

__all__ = [
    "COCO_CATEGORY_IDS", "COCO_CATEGORY_NAMES", "COCO_PANOPTIC_CATEGORY_IDS",
    "COCO_PANOPTIC_CATEGORY_NAMES", "COCO_PANOPTIC_ISTHING", "NUM_CLASSES", "VOC_CLASS_NAMES",
    "DECODE_OPTIONS", "EXAMPLE_KEYS", "PET_FOREGROUND", "READERS", "boxes_to_pixels",
    "decode_cifar10", "decode_coco2017", "decode_coco2017_panoptic", "decode_mnist",
    "decode_oxford_iiit_pet", "decode_panoptic_png", "decode_voc2007", "decode_voc2012",
    "names", "reader", "CatalogSource", "source"]
