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
"""
from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jaxcv.data.base import CorruptExampleError, read_record

VOC_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")

# (COCO category id, name) of the 80 thing classes, in tfds label order (sorted by id).
_COCO_THINGS = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"),
    (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"),
    (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"),
    (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"),
    (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"),
    (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
    (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"))

# The 53 stuff classes of COCO panoptic (panopticapi's panoptic_coco_categories.json).
_COCO_STUFF = (
    (92, "banner"), (93, "blanket"), (95, "bridge"), (100, "cardboard"), (107, "counter"),
    (109, "curtain"), (112, "door-stuff"), (118, "floor-wood"), (119, "flower"),
    (122, "fruit"), (125, "gravel"), (128, "house"), (130, "light"), (133, "mirror-stuff"),
    (138, "net"), (141, "pillow"), (144, "platform"), (145, "playingfield"),
    (147, "railroad"), (148, "river"), (149, "road"), (151, "roof"), (154, "sand"),
    (155, "sea"), (156, "shelf"), (159, "snow"), (161, "stairs"), (166, "tent"),
    (168, "towel"), (171, "wall-brick"), (175, "wall-stone"), (176, "wall-tile"),
    (177, "wall-wood"), (178, "water-other"), (180, "window-blind"), (181, "window-other"),
    (184, "tree-merged"), (185, "fence-merged"), (186, "ceiling-merged"),
    (187, "sky-other-merged"), (188, "cabinet-merged"), (189, "table-merged"),
    (190, "floor-other-merged"), (191, "pavement-merged"), (192, "mountain-merged"),
    (193, "grass-merged"), (194, "dirt-merged"), (195, "paper-merged"),
    (196, "food-other-merged"), (197, "building-other-merged"), (198, "rock-merged"),
    (199, "wall-other-merged"), (200, "rug-merged"))

# classes 1..80 -> COCO category id: COCO_CATEGORY_IDS[classes - 1].
COCO_CATEGORY_IDS = np.array([c for c, _ in _COCO_THINGS], dtype=np.int32)
COCO_CATEGORY_NAMES = tuple(n for _, n in _COCO_THINGS)
# segment_classes 1..133 -> COCO panoptic category id: COCO_PANOPTIC_CATEGORY_IDS[cls - 1].
COCO_PANOPTIC_CATEGORY_IDS = np.array([c for c, _ in _COCO_THINGS + _COCO_STUFF],
                                      dtype=np.int32)
COCO_PANOPTIC_CATEGORY_NAMES = tuple(n for _, n in _COCO_THINGS + _COCO_STUFF)
COCO_PANOPTIC_ISTHING = np.arange(133) < 80
for _a in (COCO_CATEGORY_IDS, COCO_PANOPTIC_CATEGORY_IDS, COCO_PANOPTIC_ISTHING):
  _a.flags.writeable = False
del _a

# the keys of each reader's examples (what `keys=` may select)
_VOC_KEYS = ("image", "image_id", "boxes", "classes", "difficult", "iscrowd", "area")
EXAMPLE_KEYS = {
    "voc/2007": _VOC_KEYS, "voc/2012": _VOC_KEYS,
    "coco/2017": ("image", "image_id", "boxes", "classes", "iscrowd", "area"),
    "coco/2017_panoptic": ("image", "image_id", "panoptic", "segment_ids", "segment_classes",
                           "segment_isthing", "segment_iscrowd"),
    "oxford_iiit_pet": ("image", "image_id", "label", "semantic"),
    "mnist": ("image", "image_id", "label"), "cifar10": ("image", "image_id", "label"),
}

NUM_CLASSES = {"voc/2007": 20, "voc/2012": 20, "coco/2017": 80, "coco/2017_panoptic": 133,
               "oxford_iiit_pet": 37, "mnist": 10, "cifar10": 10}

_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- helpers


def _text(value: Any) -> str:
  """A tfds Text feature (`str`, `bytes`, 0-d NumPy array of either) as `str`."""
  if isinstance(value, np.ndarray):
    value = value.item()
  if isinstance(value, bytes):
    return value.decode("utf-8")
  return str(value)


def _image(record: Mapping[str, Any], key: str = "image") -> np.ndarray:
  """uint8 `[H, W, 1 | 3]` (or `[H, W]`) -> float32 `[H, W, 3]` in [0, 1]."""
  if key not in record:
    raise CorruptExampleError(f"record has no {key!r}; keys: {sorted(record)}")
  img = np.asarray(record[key])
  if img.ndim == 2:
    img = img[..., None]
  if img.ndim != 3 or img.shape[-1] not in (1, 3):
    raise CorruptExampleError(f"{key!r} has shape {img.shape}; expected [H, W, 1] or [H, W, 3]")
  if img.dtype != np.uint8:
    raise CorruptExampleError(f"{key!r} has dtype {img.dtype}; expected uint8 (encoded 0..255)")
  out = img.astype(np.float32) / np.float32(255.0)
  if out.shape[-1] == 1:
    out = np.repeat(out, 3, axis=-1)
  return out


def _field(record: Mapping[str, Any], key: str) -> Any:
  if key not in record:
    raise CorruptExampleError(f"record has no {key!r}; keys: {sorted(record)}")
  return record[key]


def _int32_scalar(value: Any, what: str) -> np.ndarray:
  v = np.asarray(value)
  if v.ndim != 0 or not np.issubdtype(v.dtype, np.integer):
    raise CorruptExampleError(f"{what} must be an integer scalar, got {v.dtype} {v.shape}")
  if not np.iinfo(np.int32).min <= int(v) <= np.iinfo(np.int32).max:
    raise CorruptExampleError(f"{what} {int(v)} does not fit in int32")
  return np.int32(int(v))


def _index_id(index: int | None, name: str) -> np.ndarray:
  if index is None:
    raise ValueError(f"{name} records carry no image id: pass index= (the record's position "
                     "in its tfds split; `source` does)")
  return _int32_scalar(int(index), f"{name} image_id (index)")


def _objects(record: Mapping[str, Any], key: str, fields: tuple[str, ...]
             ) -> dict[str, np.ndarray]:
  """The sequence features `fields` of `record[key]`, checked to have one length."""
  if key not in record:
    raise CorruptExampleError(f"record has no {key!r}; keys: {sorted(record)}")
  objs = record[key]
  out = {}
  for f in fields:
    if f not in objs:
      raise CorruptExampleError(f"record[{key!r}] has no {f!r}; keys: {sorted(objs)}")
    out[f] = np.asarray(objs[f])
  lengths = {f: (a.shape[0] if a.ndim else -1) for f, a in out.items()}
  if len(set(lengths.values())) != 1 or -1 in lengths.values():
    raise CorruptExampleError(f"record[{key!r}] fields have different lengths: {lengths}")
  bbox = out.get("bbox")
  if bbox is not None and bbox.size == 0:  # data_source gives an empty list for no objects
    bbox = out["bbox"] = np.zeros((0, 4), np.float32)
  if bbox is not None and (bbox.ndim != 2 or bbox.shape[1] != 4):
    raise CorruptExampleError(f"record[{key!r}]['bbox'] has shape {bbox.shape}; expected [n, 4] "
                              "(ymin, xmin, ymax, xmax) normalised")
  return out


def boxes_to_pixels(bbox: np.ndarray, height: int, width: int) -> np.ndarray:
  """tfds `[n, 4]` normalised `(ymin, xmin, ymax, xmax)` -> float32 `[n, 4]` pixel xyxy.

  `x = xnorm * width`, `y = ynorm * height`, computed in float64. No clipping or
  reordering: degenerate boxes pass through for the pipeline to count and drop.
  """
  b = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
  scale = np.array([width, height, width, height], dtype=np.float64)
  return (b[:, [1, 0, 3, 2]] * scale).astype(np.float32)


def _labels(label: np.ndarray, num_classes: int, what: str) -> np.ndarray:
  label = np.asarray(label)
  if label.size and (label.min() < 0 or label.max() >= num_classes):
    raise CorruptExampleError(f"{what} labels span [{label.min()}, {label.max()}]; expected "
                              f"0..{num_classes - 1}")
  return label.astype(np.int32)


def decode_panoptic_png(rgb: np.ndarray) -> np.ndarray:
  """COCO panoptic PNG uint8 `[H, W, 3]` -> int32 `[H, W]` ids `R + 256 G + 256^2 B`."""
  rgb = np.asarray(rgb)
  if rgb.ndim != 3 or rgb.shape[-1] != 3:
    raise CorruptExampleError(f"panoptic PNG has shape {rgb.shape}; expected [H, W, 3] RGB")
  c = rgb.astype(np.int32)
  return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


# ----------------------------------------------------------------------------- decoders


def _decode_voc(record: Mapping[str, Any], index: int | None = None) -> dict[str, np.ndarray]:
  del index  # VOC's id is its file name
  image = _image(record)
  h, w = image.shape[:2]
  name = _text(record.get("image/filename", ""))
  digits = re.sub(r"\D", "", name.rsplit(".", 1)[0])
  if not digits:
    raise CorruptExampleError(f"VOC file name {name!r} has no digits to make an image_id from")
  objs = _objects(record, "objects", ("bbox", "label", "is_difficult"))
  boxes = boxes_to_pixels(objs["bbox"], h, w)
  n = boxes.shape[0]
  area = ((boxes[:, 2].astype(np.float64) - boxes[:, 0])
          * (boxes[:, 3].astype(np.float64) - boxes[:, 1])).astype(np.float32)
  return {"image": image, "image_id": _int32_scalar(int(digits), "VOC image_id"),
          "boxes": boxes, "classes": _labels(objs["label"], 20, "VOC") + 1,
          "difficult": objs["is_difficult"].astype(bool), "iscrowd": np.zeros(n, bool),
          "area": area}


def decode_voc2007(record: Mapping[str, Any], index: int | None = None
                   ) -> dict[str, np.ndarray]:
  """`voc/2007` record -> `image`, `image_id`, `boxes`, `classes` 1..20, `difficult`,
  `iscrowd` (False), `area` (box area). See the module docstring."""
  return _decode_voc(record, index)


def decode_voc2012(record: Mapping[str, Any], index: int | None = None
                   ) -> dict[str, np.ndarray]:
  """`voc/2012` record; as `decode_voc2007` (its `test` split has no objects)."""
  return _decode_voc(record, index)


def decode_coco2017(record: Mapping[str, Any], index: int | None = None
                    ) -> dict[str, np.ndarray]:
  """`coco/2017` record -> `image`, `image_id` (COCO's), `boxes` float32 `[n, 4]` pixel xyxy,
  `classes` int32 1..80 (`COCO_CATEGORY_IDS[classes - 1]` is COCO's id), `iscrowd` bool,
  `area` float32 (COCO's field). No `masks`: tfds' COCO has none."""
  del index
  image = _image(record)
  h, w = image.shape[:2]
  objs = _objects(record, "objects", ("bbox", "label", "is_crowd", "area"))
  return {"image": image, "image_id": _int32_scalar(_field(record, "image/id"), "COCO image/id"),
          "boxes": boxes_to_pixels(objs["bbox"], h, w),
          "classes": _labels(objs["label"], 80, "COCO") + 1,
          "iscrowd": objs["is_crowd"].astype(bool),
          "area": objs["area"].astype(np.float32)}


def decode_coco2017_panoptic(record: Mapping[str, Any], index: int | None = None
                             ) -> dict[str, np.ndarray]:
  """`coco/2017_panoptic` record -> `image`, `image_id`, `panoptic` int32 `[H, W]` (segment
  id, 0 void), `segment_ids` int32 `[s]`, `segment_classes` int32 1..133
  (`COCO_PANOPTIC_CATEGORY_IDS[c - 1]` is COCO's id), `segment_isthing` (classes 1..80),
  `segment_iscrowd` bool."""
  del index
  image = _image(record)
  if "panoptic_image" not in record:
    raise CorruptExampleError(f"record has no 'panoptic_image'; keys: {sorted(record)}")
  pan = decode_panoptic_png(record["panoptic_image"])
  if pan.shape != image.shape[:2]:
    raise CorruptExampleError(f"panoptic map {pan.shape} and image {image.shape[:2]} differ "
                              "in size")
  objs = _objects(record, "panoptic_objects", ("id", "label", "is_crowd"))
  ids = objs["id"]
  if ids.size and (ids.min() < 1 or ids.max() >= 256 ** 3):
    raise CorruptExampleError(f"panoptic segment ids span [{ids.min()}, {ids.max()}]; expected "
                              "1..256^3-1 (0 is void)")
  labels = _labels(objs["label"], 133, "COCO panoptic")
  return {"image": image, "image_id": _int32_scalar(_field(record, "image/id"), "COCO image/id"),
          "panoptic": pan, "segment_ids": ids.astype(np.int32),
          "segment_classes": labels + 1, "segment_isthing": COCO_PANOPTIC_ISTHING[labels],
          "segment_iscrowd": objs["is_crowd"].astype(bool)}


PET_FOREGROUND = ("pet", "species", "breed")


def decode_oxford_iiit_pet(record: Mapping[str, Any], index: int | None = None,
                           foreground: str = "pet") -> dict[str, np.ndarray]:
  """`oxford_iiit_pet` record -> `image`, `image_id` (= `index`), `label` (breed 0..36),
  `semantic` int32 `[H, W]`: trimap 2 (background) -> 0, 3 (border) -> 255 (ignore),
  1 (pet) -> 1 (`foreground="pet"`), 1 + species (`"species"`: cat 1, dog 2) or 1 + breed
  (`"breed"`: 1..37)."""
  if foreground not in PET_FOREGROUND:
    raise ValueError(f"foreground must be one of {PET_FOREGROUND}, got {foreground!r}")
  image = _image(record)
  trimap = np.asarray(_field(record, "segmentation_mask"))
  if trimap.ndim == 3 and trimap.shape[-1] == 1:
    trimap = trimap[..., 0]
  if trimap.shape != image.shape[:2]:
    raise CorruptExampleError(f"segmentation_mask {trimap.shape} and image "
                              f"{image.shape[:2]} differ in size")
  bad = (trimap < 1) | (trimap > 3)
  if bad.any():
    raise CorruptExampleError(f"trimap values {sorted(np.unique(trimap[bad]).tolist())[:10]} are "
                              "outside 1 (pet), 2 (background), 3 (border)")
  breed = int(_labels(_field(record, "label"), 37, "pet breed"))
  fg = {"pet": 1, "species": 1 + int(_labels(record.get("species", 0), 2, "pet species")),
        "breed": 1 + breed}[foreground]
  lut = np.array([255, fg, 0, 255], dtype=np.int32)  # index 0 never occurs
  return {"image": image, "image_id": _index_id(index, "oxford_iiit_pet"),
          "label": np.int32(breed), "semantic": lut[trimap.astype(np.int64)]}


def decode_mnist(record: Mapping[str, Any], index: int | None = None
                 ) -> dict[str, np.ndarray]:
  """`mnist` record -> `image` float32 `[28, 28, 3]` (gray in all channels), `label` 0..9,
  `image_id` (= `index`)."""
  return {"image": _image(record), "image_id": _index_id(index, "mnist"),
          "label": np.int32(_labels(_field(record, "label"), 10, "mnist"))}


def decode_cifar10(record: Mapping[str, Any], index: int | None = None
                   ) -> dict[str, np.ndarray]:
  """`cifar10` record -> `image` float32 `[32, 32, 3]`, `label` 0..9, `image_id` (= `index`;
  the record's `id` text is not used, so ids agree with `jaxcv.data.load`)."""
  return {"image": _image(record), "image_id": _index_id(index, "cifar10"),
          "label": np.int32(_labels(_field(record, "label"), 10, "cifar10"))}


# decode options by data set: option -> allowed values (checked when a source is opened)
DECODE_OPTIONS = {"oxford_iiit_pet": {"foreground": PET_FOREGROUND}}

READERS: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "voc/2007": decode_voc2007,
    "voc/2012": decode_voc2012,
    "coco/2017": decode_coco2017,
    "coco/2017_panoptic": decode_coco2017_panoptic,
    "oxford_iiit_pet": decode_oxford_iiit_pet,
    "mnist": decode_mnist,
    "cifar10": decode_cifar10,
}

# Image features kept encoded by the tfds.load fallback and decoded on access.
_IMAGE_FEATURES = {"voc/2007": ("image",), "voc/2012": ("image",), "coco/2017": ("image",),
                   "coco/2017_panoptic": ("image", "panoptic_image"),
                   "oxford_iiit_pet": ("image", "segmentation_mask"),
                   "mnist": ("image",), "cifar10": ("image",)}
_JAXCV_SPLITS = ("mnist", "cifar10")


def names() -> list[str]:
  """The catalog names, sorted."""
  return sorted(READERS)


def reader(name: str) -> Callable[..., dict[str, np.ndarray]]:
  """`decode(record, index=None, **kwargs) -> example` for catalog set `name`."""
  if name not in READERS:
    raise ValueError(f"unknown catalog data set {name!r}; known: {names()}")
  return READERS[name]


# ----------------------------------------------------------------------------- sources


def _import_tfds():
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):  # already initialised, or no such device type
    pass
  import tensorflow_datasets as tfds
  return tfds


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
      from jaxcv.data.base import check_split
      from jaxcv.data.tfds_readers import SPLITS
      check_split(name, self.split, SPLITS)
      tfds_split = "test" if self.split == "test" else "train"
    data_dir = None if data_dir is None else str(data_dir)
    tfds = _import_tfds()
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
      from jaxcv.data.tfds_readers import split_rows
      _, rows = split_rows(self.split, n)
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
