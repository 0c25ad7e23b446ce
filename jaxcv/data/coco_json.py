"""`coco_json`: a user's own detection data in a COCO-format annotation file.

    ds = jaxcv.data.load("coco_json", "train", annotations="instances_train.json",
                         images="images/train", keys=("boxes", "classes", "masks"))

Splits: one annotation file per split. `annotations` is either one path (then `split` may be
any string: the file is the split, and `split` only names it in messages), or a dict
`{split: path}` (then `split` must be one of its keys; this is the form for a config, whose
`train_split` and `eval_splits` pick the files: `data.annotations = {"train": ...,
"validation": ...}`). `images` is the folder the images' `file_name`s are relative to, one
folder or a dict `{split: folder}` with the same keys.

The mapping to the example interface of `docs/conventions.md` (per-object rows in the
file's annotation order; every image of `images` is an example, in the file's order, those
without annotations included):
- `image`: the file read with PIL, converted to RGB, float32 `[H, W, 3]` in [0, 1] (uint8 /
  255; no EXIF rotation is applied, as torchvision's `CocoDetection`).
- `image_id`: the COCO image `id` (int32).
- `boxes`: `bbox` `[x, y, w, h]` -> `(x, y, x + w, y + h)` float32 (in float64 first). Not
  clipped or checked here: boxes that are not finite, inverted, empty or outside the image
  go to the pipeline, which drops and counts them (`jaxcv.data.pipeline.sanitize`).
- `classes`: the category ids sorted ascending are classes 1..C. The returned data set
  carries the mapping both ways: `ds.category_ids[c - 1]` is the COCO id of class c (an
  int32 array, so `ds.category_ids[classes - 1]` maps an array), `ds.class_of_category`
  the dict COCO id -> class, and `ds.class_names[c - 1]` the category's `name`.
- `iscrowd` (bool), `area` (float32: the annotation's `area`; `w * h` of its bbox where the
  file has no `area`).
- `masks` bool `[n, H, W]`, only when `keys` asks for it (decoding costs time): polygons
  rasterised and merged, or an RLE (compressed or not) decoded, by `jaxcv.metrics.coco_rle`,
  bit-identical to pycocotools' `annToMask`. Every annotation then needs a segmentation.
- `keypoints` float32 `[n, K, 3]` `(x, y, v)`, offered when the file has keypoints (all
  with the same K; an annotation without them gets v = 0). COCO's keypoint coordinates are
  integer pixel indices; jaxcv's are continuous (the centre of pixel (i, j) is (j + 0.5,
  i + 0.5), see `jaxcv.data.geometry`), so labelled keypoints (v > 0) get x + 0.5 and
  y + 0.5, as detectron2's `load_coco_json` does; unlabelled ones are (0, 0, 0). Exporting
  back to COCO's convention subtracts 0.5. `ds.keypoint_names` lists the names from the
  categories (None if they give none).

`keys` chooses the labels (default: `boxes`, `classes`, `iscrowd`, `area`, and `keypoints`
when the file has keypoints; `masks` only on request); `image` and `image_id` always.
There is no `image_size`: images keep their size; a preprocess step (`data.preprocess`,
e.g. `("resize_pad_to", {"size": 512})`) gives a batch one shape.

Errors. The file is read and checked when the data set is loaded; a bad file is a
`DataFileError` (a ValueError) naming the file and the problem: a missing or malformed file
(with the JSON parser's message), a missing image file (`check_files`, on by default: one
`stat` per image), an annotation on an image id or a category id the file does not list,
a bbox that is not 4 numbers, ids that repeat or do not fit int32, keypoints of different
lengths, a requested label the file lacks. An image that fails to read or decode later (or
whose size contradicts the file's `height` / `width`) is a `CorruptExampleError` naming it:
the pipeline replaces that example by the next one and counts it.
`DataFileError` and `read_image` are shared with `voc_xml`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxcv.data.base import (CorruptExampleError, check_bool, check_int, check_keys,
                             check_path, check_split)
from jaxcv.data.example_sets import CachedSource, KeySelect
from jaxcv.data.pipeline import ExampleDataset
from jaxcv.data.registry import register

EXAMPLE_KEYS = ("image", "image_id", "boxes", "classes", "iscrowd", "area", "masks",
                "keypoints")
_INT32 = np.iinfo(np.int32)


class DataFileError(ValueError):
  """A user's annotation data (a file or folder) that cannot be read as it is: the message
  names the file and the problem. Raised when the data set is loaded, never replaced by the
  pipeline (unlike `CorruptExampleError`, which stands for one unreadable example)."""


def read_image(path: str) -> np.ndarray:
  """The image file `path` as float32 RGB `[H, W, 3]` in [0, 1] (PIL, `convert("RGB")`,
  uint8 / 255); CorruptExampleError naming the file if it cannot be read or decoded."""
  from PIL import Image  # noqa: PLC0415 - only reading needs it

  try:
    with Image.open(path) as im:
      rgb = np.asarray(im.convert("RGB"))
  except MemoryError:
    raise
  except Exception as e:  # noqa: BLE001 - PIL signals a bad file with many types
    raise CorruptExampleError(f"image file {path} cannot be read "
                              f"({type(e).__name__}: {str(e)[:300]})") from e
  return rgb.astype(np.float32) / np.float32(255.0)


def per_split(value: Any, split: str, name: str) -> Any:
  """`value[split]` when `value` maps split names (a dict or ConfigDict), else `value`;
  ValueError listing the splits for a split the mapping lacks."""
  if isinstance(value, (str, bytes, os.PathLike)) or not hasattr(value, "items"):
    return value
  splits = dict(value.items())
  check_split(name, split, splits)
  return splits[split]


def _is_int(v: Any) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v: Any) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
      v, (bool, np.bool_))


def _read_json(path: str) -> Any:
  if not os.path.isfile(path):
    raise DataFileError(f"annotation file {path} does not exist")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise DataFileError(f"annotation file {path} is not valid JSON: {e}") from None
  except (OSError, UnicodeDecodeError) as e:
    raise DataFileError(f"annotation file {path} cannot be read: {e}") from None


def _records(gt: Mapping, key: str, path: str, required: bool = True) -> list:
  if key not in gt:
    if required:
      raise DataFileError(f"annotation file {path} has no {key!r} list (keys: {sorted(gt)})")
    return []
  recs = gt[key]
  if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
    raise DataFileError(f"annotation file {path}: {key!r} must be a list of objects")
  return recs


def _ids(recs: list, what: str, path: str) -> list[int]:
  ids = []
  for i, r in enumerate(recs):
    v = r.get("id")
    if not _is_int(v) or not _INT32.min <= v <= _INT32.max:
      raise DataFileError(f"annotation file {path}: {what} {i} has id {v!r}; expected an "
                          "integer that fits int32")
    ids.append(int(v))
  seen = set()
  for v in ids:
    if v in seen:
      raise DataFileError(f"annotation file {path}: {what} id {v} occurs more than once")
    seen.add(v)
  return ids


def _check_segmentation(segm: Any, hw: tuple[int, int] | None, where: str) -> None:
  """The cheap structural checks of a segmentation at load (decoding is done per example)."""
  if isinstance(segm, list):
    if not segm or not all(isinstance(p, list) and p and all(_is_number(x) for x in p)
                           for p in segm):
      raise DataFileError(f"{where}: segmentation must be a non-empty list of polygons "
                          "[x0, y0, x1, y1, ...] or an RLE {'size', 'counts'}; got "
                          f"{str(segm)[:100]}")
    return
  if not isinstance(segm, dict) or "size" not in segm or "counts" not in segm:
    raise DataFileError(f"{where}: segmentation must be polygons or an RLE dict with 'size' "
                        f"and 'counts'; got {str(segm)[:100]}")
  size = segm["size"]
  if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
    raise DataFileError(f"{where}: RLE 'size' must be [height, width], got {size!r}")
  if hw is not None and tuple(size) != hw:
    raise DataFileError(f"{where}: RLE size {size} differs from its image's [height, width] "
                        f"{list(hw)}")


def decode_segmentation(segm: Any, h: int, w: int) -> np.ndarray:
  """A COCO segmentation (polygons, RLE with compressed or list counts) -> bool `[h, w]`,
  as pycocotools' `annToMask` (`jaxcv.metrics.coco_rle`)."""
  from jaxcv.metrics import coco_rle  # noqa: PLC0415 - only masks need it

  if isinstance(segm, list):
    counts = coco_rle.polygons_to_counts(segm, h, w)
  else:
    counts = coco_rle.rle_counts({"size": [h, w], "counts": segm["counts"]})
  return coco_rle.decode({"size": [h, w], "counts": counts}).astype(bool)


class COCOJsonSource:
  """Random-access examples of one COCO-format file: `len(src)`, `src[i] -> example`.

  Annotations are parsed to arrays when built (`_parse`); `src[i]` reads image i and, for
  `masks`, decodes its segmentations."""

  def __init__(self, images: list[dict], keys: tuple[str, ...], path: str):
    self.images, self.keys, self.path = images, keys, path

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    i = int(i)
    if not 0 <= i < len(self.images):
      raise IndexError(f"{self.path} has {len(self.images)} images; asked for {i}")
    rec = self.images[i]
    image = read_image(rec["file"])
    h, w = image.shape[:2]
    if rec["hw"] is not None and rec["hw"] != (h, w):
      raise CorruptExampleError(f"image file {rec['file']} is {h}x{w} (height x width), but "
                                f"{self.path} says {rec['hw'][0]}x{rec['hw'][1]} for image id "
                                f"{rec['id']}")
    ex = {"image": image, "image_id": np.int32(rec["id"])}
    for key in self.keys:
      if key in rec["objects"]:
        ex[key] = rec["objects"][key].copy()
    if "masks" in self.keys:
      masks = np.zeros((len(rec["segms"]), h, w), bool)
      for j, (ann_id, segm) in enumerate(rec["segms"]):
        try:
          masks[j] = decode_segmentation(segm, h, w)
        except (ValueError, TypeError) as e:
          raise CorruptExampleError(f"{self.path}: annotation id {ann_id} (image "
                                    f"{rec['file']}): bad segmentation ({e})") from e
      ex["masks"] = masks
    return ex


def _parse(gt: Any, path: str, image_dir: str, keys: tuple[str, ...] | None,
           check_files: bool) -> dict:
  """The checked contents of a COCO dict: images with their object arrays, categories."""
  if not isinstance(gt, dict):
    raise DataFileError(f"annotation file {path}: expected a JSON object with 'images', "
                        f"'annotations' and 'categories', got a {type(gt).__name__}")
  images = _records(gt, "images", path)
  cats = _records(gt, "categories", path)
  anns = _records(gt, "annotations", path, required=False)
  if not images:
    raise DataFileError(f"annotation file {path} lists no images")
  if not cats:
    raise DataFileError(f"annotation file {path} lists no categories")
  image_ids, cat_ids = _ids(images, "image", path), _ids(cats, "category", path)
  order = np.argsort(cat_ids, kind="stable")
  category_ids = np.asarray(cat_ids, np.int32)[order]
  class_of = {int(c): k + 1 for k, c in enumerate(category_ids)}
  class_names = tuple(str(cats[j].get("name", cat_ids[j])) for j in order)
  kp_names = next((tuple(map(str, cats[j]["keypoints"])) for j in order
                   if isinstance(cats[j].get("keypoints"), list) and cats[j]["keypoints"]),
                  None)

  recs = []
  for i, (im, iid) in enumerate(zip(images, image_ids)):
    name = im.get("file_name")
    if not isinstance(name, str) or not name:
      raise DataFileError(f"annotation file {path}: image id {iid} has no 'file_name'")
    hw = None
    if "height" in im or "width" in im:
      hw = (im.get("height"), im.get("width"))
      if not all(_is_int(v) and v > 0 for v in hw):
        raise DataFileError(f"annotation file {path}: image id {iid} has height, width "
                            f"{list(hw)}; expected positive integers")
    recs.append({"id": iid, "file": os.path.join(image_dir, name), "hw": hw, "anns": []})
  by_id = dict(zip(image_ids, recs))
  num_kpts = None
  for j, a in enumerate(anns):
    where = f"annotation file {path}: annotation {j} (id {a.get('id')!r})"
    iid, cid = a.get("image_id"), a.get("category_id")
    if not _is_int(iid) or iid not in by_id:
      raise DataFileError(f"{where} is on image id {iid!r}, which 'images' does not list")
    if not _is_int(cid) or cid not in class_of:
      raise DataFileError(f"{where} has category id {cid!r}, which 'categories' does not "
                          f"list (ids: {sorted(class_of)})")
    bbox = a.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
      raise DataFileError(f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
    if "area" in a and not _is_number(a["area"]):
      raise DataFileError(f"{where}: area must be a number, got {a['area']!r}")
    if a.get("iscrowd", 0) not in (0, 1):  # True / False compare equal to 1 / 0
      raise DataFileError(f"{where}: iscrowd must be 0 or 1, got {a['iscrowd']!r}")
    kp = a.get("keypoints")
    if kp:
      if not (isinstance(kp, list) and len(kp) % 3 == 0 and all(_is_number(v) for v in kp)):
        raise DataFileError(f"{where}: keypoints must be 3 K numbers [x, y, v, ...]")
      if num_kpts is None:
        num_kpts = len(kp) // 3
      elif len(kp) // 3 != num_kpts:
        raise DataFileError(f"{where} has {len(kp) // 3} keypoints, an earlier annotation "
                            f"{num_kpts}; every annotation needs the same number")
    by_id[iid]["anns"].append((j, a))

  available = ["image", "image_id", "boxes", "classes", "iscrowd", "area", "masks"]
  if num_kpts is not None:
    available.append("keypoints")
  if keys is None:
    keys = tuple(k for k in available if k != "masks")
  else:
    missing = [k for k in keys if k not in available]
    if missing:
      raise DataFileError(f"annotation file {path} has no {missing} (data.keys): no "
                          "annotation has keypoints")
  want_masks = "masks" in keys
  if want_masks:
    for j, a in enumerate(anns):
      where = f"annotation file {path}: annotation {j} (id {a.get('id')!r})"
      if not a.get("segmentation"):
        raise DataFileError(f"{where} has no segmentation; 'masks' (data.keys) needs one on "
                            "every annotation")
      _check_segmentation(a["segmentation"], by_id[a["image_id"]]["hw"], where)

  for rec in recs:
    rows = rec.pop("anns")
    n = len(rows)
    xywh = np.asarray([a["bbox"] for _, a in rows], np.float64).reshape(n, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    area = [float(a["area"]) if "area" in a else float(b[2] * b[3])
            for (_, a), b in zip(rows, xywh)]
    objects = {"boxes": boxes.astype(np.float32),
               "classes": np.asarray([class_of[a["category_id"]] for _, a in rows],
                                     np.int32).reshape(n),
               "iscrowd": np.asarray([bool(a.get("iscrowd", 0)) for _, a in rows],
                                     bool).reshape(n),
               "area": np.asarray(area, np.float32).reshape(n)}
    if num_kpts is not None and "keypoints" in keys:
      kps = np.zeros((n, num_kpts, 3), np.float64)
      for r, (_, a) in enumerate(rows):
        if a.get("keypoints"):
          kps[r] = np.asarray(a["keypoints"], np.float64).reshape(num_kpts, 3)
      labelled = kps[..., 2] > 0
      kps[..., :2] = np.where(labelled[..., None], kps[..., :2] + 0.5, 0.0)
      objects["keypoints"] = kps.astype(np.float32)
    rec["objects"] = objects
    rec["segms"] = [(a.get("id"), a["segmentation"]) for _, a in rows] if want_masks else []

  if check_files:
    missing = [r for r in recs if not os.path.isfile(r["file"])]
    if missing:
      r = missing[0]
      raise DataFileError(f"image file {r['file']} (image id {r['id']} of {path}) does not "
                          f"exist ({len(missing)} of {len(recs)} images missing; images= "
                          f"is the folder the file_names are relative to)")
  return {"images": recs, "keys": tuple(keys), "category_ids": category_ids,
          "class_of_category": class_of, "class_names": class_names,
          "keypoint_names": kp_names, "num_keypoints": num_kpts}


@register("coco_json")
def load_coco_json(split: str, *, annotations: str | Mapping[str, str] | None = None,
                   images: str | Mapping[str, str] | None = None,
                   keys: Sequence[str] | None = None, max_boxes: int = 100,
                   check_files: bool = True, cache: bool = False) -> ExampleDataset:
  """Split `split` of a COCO-format annotation file as an `ExampleDataset`.

  Args:
    annotations: the COCO json of this split, or a dict `{split: path}` (module docstring).
    images: the folder the images' `file_name`s are relative to, or a dict `{split: folder}`.
    keys: labels to keep (default: module docstring; `masks` only on request).
    max_boxes: padded size of the per-object arrays (>= 1).
    check_files: check at load that every image file exists (one stat per image); False
      defers that to reading, where a missing image is counted and replaced.
    cache: keep each example in memory after its first read (`example_sets.CachedSource`).

  The data set has `class_counts` (`classes`: C), `category_ids` (int32 `[C]`, the COCO id
  of class c at c - 1), `class_of_category` (COCO id -> class), `class_names`,
  `keypoint_names`, `image_files` (path of example i) and `annotation_file`.
  """
  name = "coco_json"
  if annotations is None or images is None:
    raise ValueError("coco_json needs annotations= (the COCO json, or {split: path}) and "
                     "images= (the folder the file_names are relative to)")
  path = check_path(per_split(annotations, split, name),
                    "coco_json: annotations (data.annotations)")
  image_dir = check_path(per_split(images, split, name),
                         "coco_json: images (data.images)")
  keys = check_keys(name, keys, EXAMPLE_KEYS)
  max_boxes = check_int(max_boxes, "coco_json: max_boxes (data.max_boxes)", 1)
  check_files = check_bool(check_files, "coco_json: check_files (data.check_files)")
  cache = check_bool(cache, "coco_json: cache (data.cache)")
  if keys is not None:
    keys = tuple(k for k in keys if k not in ("image", "image_id"))
  parsed = _parse(_read_json(path), path, image_dir, keys, check_files)
  src = KeySelect(COCOJsonSource(parsed["images"], parsed["keys"], path), parsed["keys"])
  num_classes = len(parsed["category_ids"])
  ds = ExampleDataset(CachedSource(src) if cache else src, num_classes, name, split,
                      max_boxes=max_boxes)
  ds.class_counts = {"classes": num_classes}
  ds.category_ids = parsed["category_ids"]
  ds.category_ids.flags.writeable = False
  ds.class_of_category = parsed["class_of_category"]
  ds.class_names = parsed["class_names"]
  ds.keypoint_names = parsed["keypoint_names"]
  ds.image_files = tuple(r["file"] for r in parsed["images"])
  ds.annotation_file = path
  return ds

