"""The catalog decoders: one tfds record -> one jaxcv example (`decode_<name>`, `READERS`).

The mapping's conventions (boxes to pixel xyxy, classes 1..C, `area`, `image_id`, panoptic
ids, the pet trimap) are in the module docstring of `jaxcv.data.catalog`. A record that
contradicts itself is a `CorruptExampleError` naming the problem, never repaired.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jaxcv.data.base import CorruptExampleError
from jaxcv.data.catalog_classes import COCO_PANOPTIC_ISTHING

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


def names() -> list[str]:
  """The catalog names, sorted."""
  return sorted(READERS)


def reader(name: str) -> Callable[..., dict[str, np.ndarray]]:
  """`decode(record, index=None, **kwargs) -> example` for catalog set `name`."""
  if name not in READERS:
    raise ValueError(f"unknown catalog data set {name!r}; known: {names()}")
  return READERS[name]
