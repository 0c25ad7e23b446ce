"""COCO evaluation from padded batches: export to COCO json (`to_coco_gt`, `to_coco_dets`)
and `COCOEvaluator`, which the training loop feeds batch by batch (see `HostEvalTask`).

Split from `jaxcv.metrics.coco` (the pycocotools-identical evaluator itself), which
re-exports these names. Batches are checked with the same rules as COCO dicts
(`coco_inputs`): ground-truth boxes and detection boxes must be finite with x2 >= x1 and
y2 >= y1 (on valid rows), GT areas finite and >= 0, scores finite, classes known.
"""
from __future__ import annotations

import jax
import numpy as np

from jaxcv.metrics import coco_rle
from jaxcv.metrics.coco_inputs import (Data, DetectionError, GroundTruthError, check_areas,
                                       check_finite, check_scores, check_xywh, index_of,
                                       sigmas_for)
from jaxcv.metrics.coco_params import IOU_TYPES


def _host(x):
  return None if x is None else np.asarray(jax.device_get(x))


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
  b = np.asarray(boxes, np.float64)
  return np.stack([b[..., 0], b[..., 1], b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], -1)


def _flatten(gt_batches, det_batches, mask_threshold: float):
  """Valid examples and rows of padded batches as flat NumPy arrays, in (batch, example,
  row) order: (images, gt, det) dicts."""
  imgs = {"id": [], "hw": []}
  g = {k: [] for k in ("img", "cls", "box", "crowd", "area", "masks", "kps")}
  d = {k: [] for k in ("img", "cls", "box", "score", "masks", "kps")}
  for i, batch in enumerate(gt_batches):
    ids = _host(batch["image_id"]).astype(np.int64).reshape(-1)
    ev = _host(batch.get("example_valid"))
    ev = np.ones(ids.shape, bool) if ev is None else ev.astype(bool).reshape(-1)
    masks = _host(batch.get("masks"))
    if "image" in batch:
      hw = tuple(np.shape(batch["image"])[1:3])
    elif masks is not None:
      hw = masks.shape[-2:]
    else:
      hw = (0, 0)
    imgs["id"].append(ids[ev])
    imgs["hw"].append(np.tile(np.asarray(hw, np.int64), (int(ev.sum()), 1)))
    bv = _host(batch["box_valid"]).astype(bool) & ev[:, None]
    rows = np.nonzero(bv)
    g["img"].append(np.broadcast_to(ids[:, None], bv.shape)[rows])
    g["cls"].append(_host(batch["classes"]).astype(np.int64)[rows])
    g["box"].append(_xyxy_to_xywh(_host(batch["boxes"]))[rows])
    crowd = _host(batch.get("iscrowd"))
    g["crowd"].append(np.zeros(rows[0].shape, bool) if crowd is None else
                      crowd.astype(bool)[rows])
    area = _host(batch.get("area"))
    g["area"].append(g["box"][-1][:, 2] * g["box"][-1][:, 3] if area is None else
                     area.astype(np.float64)[rows])
    g["masks"].append(None if masks is None else masks[rows] != 0)
    kps = _host(batch.get("keypoints"))
    g["kps"].append(None if kps is None else kps.astype(np.float64)[rows])
    if det_batches is not None:
      out = det_batches[i]
      dv = _host(out["valid"]).astype(bool) & ev[:, None]
      rows = np.nonzero(dv)
      d["img"].append(np.broadcast_to(ids[:, None], dv.shape)[rows])
      d["cls"].append(_host(out["classes"]).astype(np.int64)[rows])
      d["box"].append(_xyxy_to_xywh(_host(out["boxes"]))[rows])
      d["score"].append(_host(out["scores"]).astype(np.float64)[rows])
      m = _host(out.get("masks"))
      if m is not None:
        m = m[rows]
        m = m if m.dtype == bool else m >= mask_threshold
      d["masks"].append(m)
      k = _host(out.get("keypoints"))
      d["kps"].append(None if k is None else k.astype(np.float64)[rows])

  def cat(parts, empty_shape=(0,), dtype=np.float64):
    parts = [p for p in parts if p is not None]
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype)

  images = {"id": cat(imgs["id"], dtype=np.int64), "hw": cat(imgs["hw"], (0, 2), np.int64)}
  if np.unique(images["id"]).size != images["id"].size:
    ids, counts = np.unique(images["id"], return_counts=True)
    raise GroundTruthError(f"image_id {int(ids[counts > 1][0])} appears in "
                           f"{int(counts[counts > 1][0])} valid examples of the evaluated "
                           "batches; image ids must be unique")
  gt = {k: cat(g[k], (0, 4) if k == "box" else (0,)) for k in ("img", "cls", "box", "crowd",
                                                               "area")}
  gt["masks"] = None if any(m is None for m in g["masks"]) or not g["masks"] else [
      x for m in g["masks"] for x in m]
  gt["kps"] = None if any(k is None for k in g["kps"]) or not g["kps"] else cat(g["kps"])
  det = None
  if det_batches is not None:
    det = {k: cat(d[k], (0, 4) if k == "box" else (0,)) for k in ("img", "cls", "box",
                                                                  "score")}
    det["masks"] = None if any(m is None for m in d["masks"]) or not d["masks"] else [
        x for m in d["masks"] for x in m]
    det["kps"] = None if any(k is None for k in d["kps"]) or not d["kps"] else cat(d["kps"])
  return images, gt, det


def _categories(gt, det, num_classes):
  if num_classes is not None:
    return np.arange(1, num_classes + 1, dtype=np.int64)
  parts = [gt["cls"]] + ([det["cls"]] if det is not None else [])
  return np.unique(np.concatenate(parts).astype(np.int64))


def to_coco_gt(batches, num_classes: int | None = None) -> dict:
  """Padded ground-truth batches -> COCO gt dict (images, annotations with ids 1..N in
  (batch, example, row) order, bbox xywh, area, iscrowd, RLE segmentation from `masks`,
  keypoints + num_keypoints; categories 1..num_classes, or the classes seen)."""
  images, g, _ = _flatten(list(batches), None, 0.5)
  cats = _categories(g, None, num_classes)
  anns = []
  for j in range(g["img"].size):
    a = {"id": j + 1, "image_id": int(g["img"][j]), "category_id": int(g["cls"][j]),
         "bbox": g["box"][j].tolist(), "area": float(g["area"][j]),
         "iscrowd": int(g["crowd"][j])}
    if g["masks"] is not None:
      a["segmentation"] = coco_rle.encode(g["masks"][j])
    if g["kps"] is not None:
      a["keypoints"] = g["kps"][j].ravel().tolist()
      a["num_keypoints"] = int((g["kps"][j][:, 2] > 0).sum())
    anns.append(a)
  return {"images": [{"id": int(i), "height": int(h), "width": int(w)}
                     for i, (h, w) in zip(images["id"], images["hw"])],
          "annotations": anns, "categories": [{"id": int(c), "name": str(c)} for c in cats]}


def to_coco_dets(batches, outputs, iou_type: str = "bbox", mask_threshold: float = 0.5
                 ) -> list[dict]:
  """Padded model outputs (`boxes` xyxy, `scores`, `classes`, `valid`, optional `masks`,
  `keypoints`) with their batches (`image_id`, `example_valid`) -> COCO result list in
  (batch, example, row) order: `bbox` (xywh) for iou_type "bbox", RLE `segmentation` only for
  "segm" (area = mask area), `keypoints` only for "keypoints" (area = keypoint extent)."""
  if iou_type not in IOU_TYPES:
    raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
  _, _, d = _flatten(list(batches), list(outputs), mask_threshold)
  res = []
  for j in range(d["img"].size):
    r = {"image_id": int(d["img"][j]), "category_id": int(d["cls"][j]),
         "score": float(d["score"][j])}
    if iou_type == "bbox":
      r["bbox"] = d["box"][j].tolist()
    elif iou_type == "segm":
      r["segmentation"] = coco_rle.encode(d["masks"][j])
    else:
      r["keypoints"] = d["kps"][j].ravel().tolist()
    res.append(r)
  return res


def _data_from_arrays(images, g, d, cats, iou_type, num_kpts) -> Data:
  """Data straight from flattened batches: what `pack` gives for to_coco_gt / to_coco_dets.
  Ground-truth row j is annotation id j + 1 of `to_coco_gt`; detection row j is
  `to_coco_dets(...)[j]`."""
  img_ids, first = np.unique(images["id"], return_index=True)
  img_hw = images["hw"][first]

  def gt_row(j):
    return f"ground-truth box {j} (annotation id {j + 1}, image_id {int(g['img'][j])})"

  def det_row(j):
    return f"detection {j} (image_id {int(d['img'][j])}, class {int(d['cls'][j])})"

  gi, _ = index_of(g["img"], img_ids)
  gc, okc = index_of(g["cls"], cats)
  di, _ = index_of(d["img"], img_ids)
  dc, okd = index_of(d["cls"], cats)
  if not okc.all():
    j = int(np.flatnonzero(~okc)[0])
    raise GroundTruthError(f"{gt_row(j)}: class {int(g['cls'][j])} is not one of the "
                           f"categories {cats.tolist()[:10]} (1..num_classes)")
  if not okd.all():
    j = int(np.flatnonzero(~okd)[0])
    raise DetectionError(f"{det_row(j)}: class {int(d['cls'][j])} is not one of the "
                         f"categories {cats.tolist()[:10]} (1..num_classes)")
  check_scores(d["score"], det_row)
  check_areas(g["area"], gt_row)
  if iou_type in ("bbox", "keypoints"):  # xywh here: x2 < x1 is a negative width
    check_xywh(g["box"], gt_row, GroundTruthError)
  if iou_type == "bbox":
    check_xywh(d["box"], det_row, DetectionError)
  if iou_type == "keypoints":
    check_finite(g["kps"], "keypoints", gt_row, GroundTruthError)
    check_finite(d["kps"], "keypoints", det_row, DetectionError)
  gt = {"img": gi, "cat": gc, "id": np.arange(1, gi.size + 1), "area": g["area"],
        "crowd": g["crowd"].astype(bool), "ignore": g["crowd"].astype(bool)}
  dt = {"img": di, "cat": dc, "score": d["score"]}
  if iou_type == "bbox":
    gt["box"], dt["box"] = g["box"], d["box"]
    dt["area"] = d["box"][:, 2] * d["box"][:, 3]
  elif iou_type == "segm":
    gt["runs"] = [coco_rle.runs(coco_rle.mask_counts(m)) for m in g["masks"]]
    dt["runs"] = [coco_rle.runs(coco_rle.mask_counts(m)) for m in d["masks"]]
    dt["area"] = np.asarray([float((e - s).sum()) for s, e in dt["runs"]], np.float64)
  else:
    if g["kps"].shape[1] != num_kpts or d["kps"].shape[1] != num_kpts:
      raise ValueError(f"keypoints must have K = {num_kpts} (len(kpt_oks_sigmas)) entries")
    gt["kps"], gt["box"], dt["kps"] = g["kps"], g["box"], d["kps"]
    gt["ignore"] = gt["ignore"] | ((g["kps"][..., 2] > 0).sum(-1) == 0)
    x, y = d["kps"][..., 0], d["kps"][..., 1]
    dt["area"] = (x.max(1) - x.min(1)) * (y.max(1) - y.min(1)) if x.size else np.zeros(0)
  return Data(iou_type, img_ids, img_hw, cats, gt, dt)


class COCOEvaluator:
  """COCO metrics over an evaluation set for the training loop.

  `update(batch, outputs)` takes one padded batch (`image_id`, `example_valid`, `boxes`,
  `classes`, `box_valid`, `iscrowd`, `area`, optional `masks`, `keypoints`) and the model's
  padded outputs (`boxes [B, D, 4]` xyxy pixels, `scores [B, D]`, `classes [B, D]` 1..C,
  `valid [B, D]`, optional `masks [B, D, H, W]` bool or probabilities (>= mask_threshold is
  foreground), `keypoints [B, D, K, 3]`); arrays are copied to the host. `compute()` returns
  `map`, `map50`, `map75`, `map_small`, `map_medium`, `map_large`, `mar100`, plus `mask_map`
  and `kp_map` when both sides have masks / keypoints. The numbers equal `evaluate` on
  `to_coco_gt` / `to_coco_dets` of the same batches.
  """

  def __init__(self, num_classes: int | None = None, kpt_oks_sigmas=None,
               mask_threshold: float = 0.5):
    self.num_classes = num_classes
    self.kpt_oks_sigmas = kpt_oks_sigmas
    self.mask_threshold = mask_threshold
    self.reset()

  def reset(self):
    self._batches: list[dict] = []
    self._outputs: list[dict] = []

  def update(self, batch: dict, outputs: dict) -> None:
    keys = ("image_id", "example_valid", "boxes", "classes", "box_valid", "iscrowd", "area",
            "masks", "keypoints")
    self._batches.append({k: _host(batch[k]) for k in keys if k in batch})
    if "image" in batch:
      self._batches[-1]["image"] = np.zeros((1,) + tuple(np.shape(batch["image"])[1:3]))
    okeys = ("boxes", "scores", "classes", "valid", "masks", "keypoints")
    self._outputs.append({k: _host(outputs[k]) for k in okeys if k in outputs})

  def results(self) -> dict[str, np.ndarray]:
    """The stats array per iou type ("bbox", and "segm" / "keypoints" where available)."""
    images, g, d = _flatten(self._batches, self._outputs, self.mask_threshold)
    cats = _categories(g, d, self.num_classes)
    types = ["bbox"]
    if g["masks"] is not None and d["masks"] is not None:
      types.append("segm")
    if g["kps"] is not None and d["kps"] is not None:
      types.append("keypoints")
    from jaxcv.metrics.coco import evaluate_data  # noqa: PLC0415 - coco imports this module

    out = {}
    for t in types:
      sigmas = sigmas_for(t, self.kpt_oks_sigmas)
      data = _data_from_arrays(images, g, d, cats, t, None if sigmas is None else sigmas.size)
      out[t] = evaluate_data(data, sigmas).stats
    return out

  def compute(self) -> dict[str, float]:
    res = self.results()
    s = res["bbox"]
    out = {"map": s[0], "map50": s[1], "map75": s[2], "map_small": s[3], "map_medium": s[4],
           "map_large": s[5], "mar100": s[8]}
    if "segm" in res:
      out["mask_map"] = res["segm"][0]
    if "keypoints" in res:
      out["kp_map"] = res["keypoints"][0]
    return {k: float(v) for k, v in out.items()}
