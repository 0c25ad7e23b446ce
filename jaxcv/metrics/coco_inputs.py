"""COCO evaluation inputs: checking a ground-truth dict and a result list, and packing them
into flat arrays (`pack` -> `Data`) for the matching and accumulation kernels.

Why checked here: pycocotools reads whatever it is given, and bad input gives numbers, not
errors (a ground-truth box of negative width matches nothing, a NaN `area` leaves every GT
out of every area range, so every stat is -1; duplicate ids overwrite each other in its index),
or a bare `KeyError: 'score'`. Each such case is a `GroundTruthError` or `DetectionError`
(both `COCOInputError`, a ValueError) that says what is wrong, which record (the annotation's
index, id and image id, the result's index and image id) and what is allowed.

What is checked (where the field is used by the evaluation type):
- gt: a dict with `images`, `categories` (and `annotations`), lists of dicts. Images and
  categories need a unique integer `id`; images need positive `height` / `width` for segm.
- annotations: a unique integer `id` (0 is allowed: pycocotools then counts a match as
  unmatched), `image_id` / `category_id` listed in `images` / `categories`, `area` a finite
  number >= 0; `bbox` (bbox, keypoints) 4 finite numbers `[x, y, w, h]` with w, h >= 0;
  `segmentation` (segm) an RLE of its image's size or polygons; `keypoints` (keypoints)
  3 * K finite numbers.
- results: dicts with integer `image_id` / `category_id` known to the gt, a finite `score`,
  and the field of the evaluation type (`bbox`, `segmentation`, `keypoints`) as above.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jaxcv.metrics import coco_rle
from jaxcv.metrics.coco_params import COCO_KPT_OKS_SIGMAS, IOU_TYPES


class COCOInputError(ValueError):
  """A COCO ground-truth dict or result list that the evaluation would misread."""


class GroundTruthError(COCOInputError):
  """A bad ground-truth dict: its images, categories or annotations."""


class DetectionError(COCOInputError):
  """A bad result (detection) list."""


class Data:
  """Ground truth and detections as flat arrays (original list order), indices into the
  sorted image / category id lists."""

  def __init__(self, iou_type, img_ids, img_hw, cat_ids, gt, dt):
    self.iou_type, self.img_ids, self.img_hw, self.cat_ids = iou_type, img_ids, img_hw, cat_ids
    self.gt, self.dt = gt, dt


def index_of(ids: np.ndarray, sorted_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Positions of `ids` in `sorted_ids` and whether each was found."""
  if sorted_ids.size == 0:
    return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
  pos = np.clip(np.searchsorted(sorted_ids, ids), 0, sorted_ids.size - 1)
  return pos.astype(np.int64), sorted_ids[pos] == ids


def sigmas_for(iou_type, kpt_oks_sigmas):
  """The OKS sigmas of a keypoints evaluation (COCO's 17 by default), None otherwise."""
  if iou_type != "keypoints":
    return None
  s = COCO_KPT_OKS_SIGMAS if kpt_oks_sigmas is None else np.asarray(kpt_oks_sigmas, np.float64)
  if s.ndim != 1 or s.size == 0:
    raise ValueError(f"kpt_oks_sigmas must be a 1-D list of per-keypoint sigmas, got {s.shape}")
  return s


# ------------------------------------------------------------------------------------------
# Checks on arrays: shared with the padded-batch evaluator (coco_batches). `describe(i)`
# names record i in the message; `error` is the exception class to raise.

Describe = Callable[[int], str]


def _first(bad: np.ndarray) -> int:
  return int(np.flatnonzero(bad)[0])


def check_xywh(boxes: np.ndarray, describe: Describe, error: type[COCOInputError]) -> None:
  """`[N, 4]` COCO boxes `[x, y, w, h]`: finite, w >= 0, h >= 0."""
  bad = ~np.isfinite(boxes).all(1) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
  if bad.any():
    i = _first(bad)
    raise error(f"{describe(i)}: bbox {boxes[i].tolist()} must be [x, y, w, h], finite with "
                f"w, h >= 0 ({int(bad.sum())} such boxes)")


def check_scores(scores: np.ndarray, describe: Describe) -> None:
  bad = ~np.isfinite(scores)
  if bad.any():
    i = _first(bad)
    raise DetectionError(f"{describe(i)}: score {scores[i]} must be finite ({int(bad.sum())} "
                         "detection scores are NaN or inf)")


def check_areas(areas: np.ndarray, describe: Describe) -> None:
  bad = ~np.isfinite(areas) | (areas < 0)
  if bad.any():
    i = _first(bad)
    raise GroundTruthError(f"{describe(i)}: area {areas[i]} must be a finite number >= 0 "
                           f"(the mask's pixel count; {int(bad.sum())} such annotations)")


def check_finite(values: np.ndarray, field: str, describe: Describe,
                 error: type[COCOInputError]) -> None:
  bad = ~np.isfinite(values.reshape(len(values), -1)).all(1)
  if bad.any():
    i = _first(bad)
    raise error(f"{describe(i)}: {field} must be finite numbers ({int(bad.sum())} records "
                "hold NaN or inf)")


def check_unique(ids: np.ndarray, what: str, error: type[COCOInputError]) -> None:
  """`ids` (in list order) must not repeat; the message names the id and its positions."""
  uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
  if (counts > 1).any():
    k = int(np.flatnonzero(counts > 1)[0])
    at = np.flatnonzero(inverse.reshape(-1) == k)[:5].tolist()
    raise error(f"{what} id {int(uniq[k])} appears {int(counts[k])} times (at indices {at}); "
                f"{what} ids must be unique ({int((counts > 1).sum())} repeated ids)")


def check_known(pos_ok: np.ndarray, ids: np.ndarray, field: str, listed_in: str,
                describe: Describe, error: type[COCOInputError]) -> None:
  if not pos_ok.all():
    i = _first(~pos_ok)
    raise error(f"{describe(i)}: {field} {int(ids[i])} is not in gt[{listed_in!r}] "
                f"({field.split('_')[0]} ids not in gt: {np.unique(ids[~pos_ok])[:10].tolist()})")


# ------------------------------------------------------------------------------------------
# Reading records


def _is_int(v) -> bool:
  if isinstance(v, (bool, np.bool_)):
    return False
  if isinstance(v, (int, np.integer)):
    return True
  return isinstance(v, (float, np.floating)) and float(v).is_integer()


def _is_number(v) -> bool:
  return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
      v, (bool, np.bool_))


def _records(obj, what: str, error: type[COCOInputError]) -> list:
  if not isinstance(obj, (list, tuple)):
    raise error(f"{what} must be a list of dicts, got {type(obj).__name__}")
  for i, r in enumerate(obj):
    if not isinstance(r, dict):
      raise error(f"{what}[{i}] must be a dict, got {type(r).__name__}")
  return list(obj)


def _require(records, key: str, describe: Describe, error, rule: str) -> None:
  for i, r in enumerate(records):
    if key not in r:
      raise error(f"{describe(i)} has no {key!r}; {rule}")


def _ints(records, key: str, describe: Describe, error, rule: str) -> np.ndarray:
  _require(records, key, describe, error, rule)
  for i, r in enumerate(records):
    if not _is_int(r[key]):
      raise error(f"{describe(i)}: {key} {r[key]!r} must be an integer; {rule}")
  return np.asarray([int(r[key]) for r in records], dtype=np.int64).reshape(-1)


def _numbers(records, key: str, describe: Describe, error, rule: str) -> np.ndarray:
  _require(records, key, describe, error, rule)
  for i, r in enumerate(records):
    if not _is_number(r[key]):
      raise error(f"{describe(i)}: {key} {r[key]!r} must be a number; {rule}")
  return np.asarray([r[key] for r in records], dtype=np.float64).reshape(-1)


def _rows(records, key: str, width: int, describe: Describe, error, rule: str) -> np.ndarray:
  """`[N, width]` float64 from each record's list of `width` numbers."""
  _require(records, key, describe, error, rule)
  for i, r in enumerate(records):
    v = r[key]
    if (not isinstance(v, (list, tuple, np.ndarray)) or len(v) != width
        or not all(_is_number(x) for x in v)):
      raise error(f"{describe(i)}: {key} {v!r} must be a list of {width} numbers; {rule}")
  if not records:
    return np.zeros((0, width), np.float64)
  return np.asarray([r[key] for r in records], dtype=np.float64).reshape(-1, width)


def _rle_of(segm, h: int, w: int, what: str, error) -> dict:
  if isinstance(segm, list):  # polygons, merged into one RLE as pycocotools' annToRLE
    try:
      counts = coco_rle.polygons_to_counts(segm, h, w)
    except (ValueError, TypeError) as e:
      raise error(f"{what}: bad polygon segmentation ({e})") from None
    return {"size": [h, w], "counts": counts}
  if not isinstance(segm, dict):
    raise error(f"{what}: segmentation must be an RLE dict or polygon list, got "
                f"{type(segm).__name__}")
  sh, sw = (int(v) for v in segm.get("size", (-1, -1)))
  if (sh, sw) != (h, w):
    raise error(f"{what}: mask size {[sh, sw]} differs from its image's {[h, w]}")
  return segm


def _runs_list(records, hw, describe: Describe, error) -> list[tuple[np.ndarray, np.ndarray]]:
  _require(records, "segmentation", describe, error,
           "segm evaluation needs an RLE or polygon 'segmentation' in every record")
  return [coco_rle.runs(coco_rle.rle_counts(_rle_of(r["segmentation"], h, w, describe(i),
                                                     error)))
          for i, (r, (h, w)) in enumerate(zip(records, hw.tolist()))]


# ------------------------------------------------------------------------------------------
# Packing


def _pack_images(gt: dict, iou_type: str):
  images = _records(gt["images"], "gt['images']", GroundTruthError)
  cats = _records(gt["categories"], "gt['categories']", GroundTruthError)
  img_all = _ints(images, "id", lambda i: f"gt['images'][{i}]", GroundTruthError,
                  "every image needs an integer 'id'")
  check_unique(img_all, "image", GroundTruthError)
  if iou_type == "segm":  # masks are checked against their image's size
    for key in ("height", "width"):
      hw = _ints(images, key, lambda i: f"gt['images'][{i}] (id {int(img_all[i])})",
                 GroundTruthError, "segm evaluation needs each image's height and width")
      if (hw < 1).any():
        i = _first(hw < 1)
        raise GroundTruthError(f"gt['images'][{i}] (id {int(img_all[i])}): {key} {int(hw[i])} "
                               "must be >= 1")
  cat_all = _ints(cats, "id", lambda i: f"gt['categories'][{i}]", GroundTruthError,
                  "every category needs an integer 'id'")
  check_unique(cat_all, "category", GroundTruthError)
  img_ids, first = np.unique(img_all, return_index=True)
  img_hw = np.asarray([[images[i].get("height", 0), images[i].get("width", 0)] for i in first],
                      dtype=np.int64).reshape(-1, 2)
  return img_ids, img_hw, np.unique(cat_all)


def _pack_gt(gt: dict, iou_type: str, num_kpts, img_ids, img_hw, cat_ids) -> dict:
  anns = _records(gt.get("annotations", []), "gt['annotations']", GroundTruthError)

  def describe(i):
    a = anns[i]
    known = ", ".join(f"{k} {a[k]!r}" for k in ("id", "image_id") if k in a)
    return f"gt['annotations'][{i}]" + (f" ({known})" if known else "")

  err = GroundTruthError
  ids = _ints(anns, "id", describe, err, "every annotation needs a unique integer 'id'")
  check_unique(ids, "annotation", err)
  g_img = _ints(anns, "image_id", describe, err, "every annotation needs its image's id")
  g_cat = _ints(anns, "category_id", describe, err, "every annotation needs a category id")
  gi, ok_i = index_of(g_img, img_ids)
  gc, ok_c = index_of(g_cat, cat_ids)
  check_known(ok_i, g_img, "image_id", "images", describe, err)
  check_known(ok_c, g_cat, "category_id", "categories", describe, err)
  g = {"img": gi, "cat": gc, "id": ids}
  g["area"] = _numbers(anns, "area", describe, err,
                       "every annotation needs its 'area' (a pixel count >= 0)")
  check_areas(g["area"], describe)
  g["crowd"] = np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
  g["ignore"] = g["crowd"].copy()
  box_rule = f"{iou_type} evaluation needs each annotation's 'bbox' [x, y, w, h]"
  if iou_type == "bbox":
    g["box"] = _rows(anns, "bbox", 4, describe, err, box_rule)
    check_xywh(g["box"], describe, err)
  elif iou_type == "segm":
    g["runs"] = _runs_list(anns, img_hw[g["img"]], describe, err)
  else:
    rule = f"keypoints evaluation: every gt annotation needs 'keypoints' ({3 * num_kpts} numbers)"
    g["kps"] = _rows(anns, "keypoints", 3 * num_kpts, describe, err, rule).reshape(-1, num_kpts, 3)
    check_finite(g["kps"], "keypoints", describe, err)
    g["box"] = _rows(anns, "bbox", 4, describe, err, box_rule)
    check_xywh(g["box"], describe, err)
    nk = np.asarray([a.get("num_keypoints", -1) for a in anns], dtype=np.int64)
    nk = np.where(nk < 0, (g["kps"][..., 2] > 0).sum(-1), nk)  # absent: count of v > 0
    g["ignore"] |= nk == 0
  return g


def _pack_dets(dets, iou_type: str, num_kpts, img_ids, img_hw, cat_ids) -> dict:
  dets = _records(dets, "dets", DetectionError)

  def describe(i):
    r = dets[i]
    known = ", ".join(f"{k} {r[k]!r}" for k in ("image_id", "category_id") if k in r)
    return f"dets[{i}]" + (f" ({known})" if known else "")

  err = DetectionError
  n = len(dets)
  d = {"score": _numbers(dets, "score", describe, err, "every result needs a finite 'score'")}
  check_scores(d["score"], describe)
  d_img = _ints(dets, "image_id", describe, err, "every result needs its image's id")
  d_cat = _ints(dets, "category_id", describe, err, "every result needs a category id")
  d["img"], ok_i = index_of(d_img, img_ids)
  d["cat"], ok_c = index_of(d_cat, cat_ids)
  check_known(ok_i, d_img, "image_id", "images", describe, err)
  check_known(ok_c, d_cat, "category_id", "categories", describe, err)
  # COCO.loadRes' area rule is decided by the first result
  branch = None
  if n:
    first = dets[0]
    if "bbox" in first and first["bbox"] != []:
      branch = "bbox"
    elif "segmentation" in first:
      branch = "segm"
    elif "keypoints" in first:
      branch = "keypoints"
    else:
      raise err("results need 'bbox', 'segmentation' or 'keypoints' (dets[0] has none)")
  if branch == "bbox" or (iou_type == "bbox" and n):
    d["box"] = _rows(dets, "bbox", 4, describe, err,
                     "every result needs a 'bbox' [x, y, w, h] (the first one has one)")
    check_xywh(d["box"], describe, err)
  if (iou_type == "segm" or branch == "segm") and n:
    d["runs"] = _runs_list(dets, img_hw[d["img"]], describe, err)
  if (iou_type == "keypoints" or branch == "keypoints") and n:
    width = 3 * num_kpts if num_kpts else len(dets[0]["keypoints"])
    kp = _rows(dets, "keypoints", width, describe, err,
               f"keypoints evaluation: every result needs 'keypoints' ({width} numbers)")
    check_finite(kp, "keypoints", describe, err)
    if num_kpts:
      d["kps"] = kp.reshape(-1, num_kpts, 3)
  if branch == "bbox":
    d["area"] = d["box"][:, 2] * d["box"][:, 3]
  elif branch == "segm":
    d["area"] = np.asarray([float((e - s).sum()) for s, e in d["runs"]], dtype=np.float64)
  elif branch == "keypoints":
    x, y = kp[:, 0::3], kp[:, 1::3]
    d["area"] = (x.max(1) - x.min(1)) * (y.max(1) - y.min(1))
  else:
    d["area"] = np.zeros((0,), np.float64)
  return d


def pack(gt: dict, dets: Sequence[dict], iou_type: str, num_kpts: int | None) -> Data:
  """Checks `gt` and `dets` (module docstring) and packs them; raises GroundTruthError /
  DetectionError naming the first bad record."""
  if iou_type not in IOU_TYPES:
    raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
  if not isinstance(gt, dict) or "images" not in gt or "categories" not in gt:
    raise GroundTruthError("gt must be a COCO dict with 'images', 'annotations' and "
                           "'categories'")
  img_ids, img_hw, cat_ids = _pack_images(gt, iou_type)
  g = _pack_gt(gt, iou_type, num_kpts, img_ids, img_hw, cat_ids)
  d = _pack_dets(dets, iou_type, num_kpts, img_ids, img_hw, cat_ids)
  return Data(iou_type, img_ids, img_hw, cat_ids, g, d)
