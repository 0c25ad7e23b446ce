"""PASCAL VOC detection mAP, as the official devkit computes it (VOCevaldet.m / VOCap.m).

Why: VOC results are compared across papers by this exact procedure (greedy matching in score
order, difficult objects ignored, 11-point or all-point interpolated AP), so it is ported rule
by rule rather than approximated. It is a host-side NumPy evaluation over a whole data set
(one pass per class); the matching is sequential by nature and cheap next to the model.

Per class c, as VOCevaldet:
1. Detections of class c are sorted by descending score. Equal scores keep their input order
   (a stable sort, as MATLAB's `sort`; py-faster-rcnn's voc_eval.py uses
   `np.argsort(-confidence)`, which does not promise an order for ties).
2. Each detection, in that order, takes the ground-truth box of class c in its image with the
   largest IoU (the first such box on ties), among boxes that overlap it with positive width
   and height, whether difficult or already matched. With no such box it is a false positive.
3. IoU >= `iou_threshold` (the devkit's `ovmax >= minoverlap`; `iou_inclusive=False` gives
   voc_eval.py's `ovmax > ovthresh`): a difficult box makes the detection neither TP nor FP
   (skipped); an unmatched box makes it a TP and marks the box; a box already matched makes it
   a FP (duplicate). IoU below the threshold: FP.
4. recall = cumulative TP / number of non-difficult boxes, precision = cumulative TP /
   cumulative (TP + FP) (skipped detections count in neither).
5. AP: `use_07_metric` (VOC2007) averages, over the 11 recall levels t = 0, 0.1, ..., 1 (the
   doubles nearest k/10; voc_eval.py's `np.arange(0., 1.1, 0.1)` holds 0.30000000000000004,
   0.6000000000000001 and 0.7000000000000001, so a recall of exactly 3/10, 6/10 or 7/10 misses
   that level there), the maximum precision at recall >= t (0 if none); otherwise
   (VOC2010+) the area under the precision envelope (precision made monotone from the right),
   summed over the points where recall changes, with (0, 0) and (1, 0) appended as VOCap.
`plus_one`: the devkit's pixel convention, width = x2 - x1 + 1 (in intersections and areas);
off by default (continuous coordinates, as torchvision and COCO).

A class without non-difficult ground truth has AP NaN (the devkit divides by zero there) and
is left out of `map`; a class with ground truth and no detections has AP 0.

Inputs (classes are 1..C, 0 being background as in the batch convention):
- `gt`: one of
  * a sequence of per-image dicts `{"boxes": [n, 4], "classes": [n], "difficult": [n]}`
    (`difficult` optional, default False), the image id being the position in the sequence;
  * a mapping image id -> such a dict (ids any hashable: ints, "000005", ...);
  * a dict of padded batch arrays `{"image_id": [B], "boxes": [B, M, 4], "classes": [B, M],
    "box_valid": [B, M], "difficult": [B, M]}` (`box_valid` and `difficult` optional).
- `dets`: a dict `{"image_id": [D], "classes": [D], "scores": [D], "boxes": [D, 4]}`
  (optional `"valid": [D]`), or the tuple `(image_id, classes, scores, boxes)`; padded model
  outputs `[B, K]` / `[B, K, 4]` with `image_id` `[B]` and `valid` `[B, K]` are accepted too.
Boxes are `(x1, y1, x2, y2)` in pixels.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _array(name, x, ndim=None, last=None):
  x = np.asarray(x)
  if ndim is not None and x.ndim != ndim:
    raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
  if last is not None and (x.ndim == 0 or x.shape[-1] != last):
    raise ValueError(f"{name} must have last dim {last}, got shape {x.shape}")
  return x


def _check_boxes(name, boxes):
  boxes = _array(name, boxes, last=4).astype(np.float64).reshape(-1, 4)
  if not np.isfinite(boxes).all():
    raise ValueError(f"{name} contain NaN or infinite coordinates")
  bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
  if bad.any():
    raise ValueError(f"{name} has {int(bad.sum())} box(es) with x2 < x1 or y2 < y1, e.g. "
                     f"{boxes[bad][0].tolist()}")
  return boxes


def _int_classes(name, x):
  x = np.asarray(x)
  if x.size and not (np.issubdtype(x.dtype, np.integer)
                     or (np.issubdtype(x.dtype, np.floating) and (x == np.round(x)).all())):
    raise ValueError(f"{name} must be integer class indices, got dtype {x.dtype}")
  return x.astype(np.int64)


def _image(image_id, rec):
  if not isinstance(rec, Mapping) or "boxes" not in rec or "classes" not in rec:
    raise ValueError(f"ground truth of image {image_id!r} must be a dict with 'boxes' and "
                     "'classes' (and optionally 'difficult')")
  boxes = _check_boxes(f"gt boxes of image {image_id!r}", np.reshape(rec["boxes"], (-1, 4))
                       if np.size(rec["boxes"]) == 0 else rec["boxes"])
  classes = _int_classes(f"gt classes of image {image_id!r}", rec["classes"]).reshape(-1)
  difficult = np.asarray(rec.get("difficult", np.zeros(len(classes), bool))).reshape(-1)
  if not (len(boxes) == len(classes) == len(difficult)):
    raise ValueError(f"image {image_id!r}: {len(boxes)} boxes, {len(classes)} classes and "
                     f"{len(difficult)} difficult flags; they must match")
  return boxes, classes, difficult.astype(bool)


def _ground_truth(gt):
  """dict image id -> (boxes float64 [n, 4], classes int64 [n], difficult bool [n])."""
  if isinstance(gt, Mapping) and "boxes" in gt and "image_id" in gt:
    ids = _array("gt image_id", gt["image_id"], ndim=1).tolist()
    boxes = _array("gt boxes", gt["boxes"], ndim=3, last=4)
    b, m = boxes.shape[:2]
    classes = _array("gt classes", gt["classes"], ndim=2)
    valid = np.asarray(gt.get("box_valid", np.ones((b, m), bool)), bool)
    difficult = np.asarray(gt.get("difficult", np.zeros((b, m), bool)), bool)
    for name, x in (("classes", classes), ("box_valid", valid), ("difficult", difficult)):
      if x.shape != (b, m):
        raise ValueError(f"gt {name} has shape {x.shape}; boxes need {(b, m)}")
    if len(ids) != b:
      raise ValueError(f"gt image_id has {len(ids)} entries for {b} images")
    if len(set(ids)) != len(ids):
      raise ValueError("gt image_id has repeated ids")
    return {i: _image(i, {"boxes": boxes[k][valid[k]], "classes": classes[k][valid[k]],
                          "difficult": difficult[k][valid[k]]}) for k, i in enumerate(ids)}
  if isinstance(gt, Mapping):
    return {i: _image(i, rec) for i, rec in gt.items()}
  if isinstance(gt, Sequence):
    return {i: _image(i, rec) for i, rec in enumerate(gt)}
  raise ValueError("gt must be a sequence of per-image dicts, a mapping image id -> dict, or "
                   f"a dict of batch arrays; got {type(gt).__name__}")


def _detections(dets):
  """(image ids [D] list, classes int64 [D], scores float64 [D], boxes float64 [D, 4])."""
  if isinstance(dets, Mapping):
    missing = {"image_id", "classes", "scores", "boxes"} - set(dets)
    if missing:
      raise ValueError(f"dets lacks {sorted(missing)}")
    ids, classes, scores, boxes = (dets[k] for k in ("image_id", "classes", "scores", "boxes"))
    valid = dets.get("valid")
  elif isinstance(dets, (tuple, list)) and len(dets) == 4:
    (ids, classes, scores, boxes), valid = dets, None
  else:
    raise ValueError("dets must be a dict with image_id, classes, scores, boxes or the tuple "
                     "(image_id, classes, scores, boxes)")
  boxes = _array("det boxes", boxes, last=4)
  lead = boxes.shape[:-1]
  classes, scores, ids = np.asarray(classes), np.asarray(scores), np.asarray(ids)
  if len(lead) == 2 and ids.shape == lead[:1]:  # padded [B, K]: one image id per row
    ids = np.broadcast_to(ids[:, None], lead)
  valid = np.ones(lead, bool) if valid is None else np.asarray(valid, bool)
  for name, x in (("classes", classes), ("scores", scores), ("image_id", ids),
                  ("valid", valid)):
    if x.shape != lead:
      raise ValueError(f"det {name} has shape {x.shape}; det boxes need {lead}")
  valid = valid.reshape(-1)
  scores = scores.reshape(-1)[valid].astype(np.float64)
  if np.isnan(scores).any():
    raise ValueError("det scores contain NaN")
  return (ids.reshape(-1)[valid].tolist(),
          _int_classes("det classes", classes.reshape(-1)[valid]),
          scores, _check_boxes("det boxes", boxes.reshape(-1, 4)[valid]))


def _overlaps(box, gts, plus_one):
  """IoU of one box with gts `[n, 4]`, -inf where they do not overlap with positive width and
  height (VOCevaldet's `iw > 0 & ih > 0`)."""
  e = 1.0 if plus_one else 0.0
  iw = np.minimum(box[2], gts[:, 2]) - np.maximum(box[0], gts[:, 0]) + e
  ih = np.minimum(box[3], gts[:, 3]) - np.maximum(box[1], gts[:, 1]) + e
  inter = iw * ih
  union = ((box[2] - box[0] + e) * (box[3] - box[1] + e)
           + (gts[:, 2] - gts[:, 0] + e) * (gts[:, 3] - gts[:, 1] + e) - inter)
  ok = (iw > 0) & (ih > 0)
  return np.where(ok, inter / np.where(ok, union, 1.0), -np.inf)


def average_precision(recall, precision, use_07_metric: bool = False) -> float:
  """AP from the cumulative recall / precision `[D]` of score-sorted detections (VOCap.m, or
  the VOC2007 11-point average with `use_07_metric`)."""
  recall = np.asarray(recall, np.float64)
  precision = np.asarray(precision, np.float64)
  if use_07_metric:
    ap = 0.0
    for t in range(11):
      p = precision[recall >= t / 10]
      ap += (p.max() if p.size else 0.0) / 11
    return float(ap)
  mrec = np.concatenate([[0.0], recall, [1.0]])
  mpre = np.concatenate([[0.0], precision, [0.0]])
  mpre = np.maximum.accumulate(mpre[::-1])[::-1]
  i = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
  return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def evaluate(gt, dets, iou_threshold: float = 0.5, use_07_metric: bool = False,
             plus_one: bool = False, class_names: Sequence[str] | None = None, *,
             num_classes: int | None = None, iou_inclusive: bool = True) -> dict:
  """Per-class AP and mAP of detections `dets` against ground truth `gt` (formats above).

  Returns a dict: `map` (float, mean AP over classes with non-difficult ground truth; NaN if
  none), `ap` (float64 `[C]`, entry c-1 for class c, NaN for classes without ground truth),
  `num_positives` and `num_detections` (int `[C]`), `precision` and `recall` (lists of `[D_c]`
  float64 curves per class, in score order), and `ap_per_class` (name -> AP) when
  `class_names` is given. The number of classes C is `len(class_names)`, else `num_classes`,
  else the largest class index seen. Raises ValueError on unknown image ids, classes outside
  1..C, boxes with x2 < x1 or y2 < y1 or non-finite coordinates, NaN scores, bad shapes.
  """
  if not 0.0 <= float(iou_threshold) <= 1.0:
    raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
  images = _ground_truth(gt)
  d_ids, d_cls, d_scores, d_boxes = _detections(dets)
  if class_names is not None:
    if num_classes is not None and num_classes != len(class_names):
      raise ValueError(f"num_classes {num_classes} but {len(class_names)} class_names")
    num_classes = len(class_names)
  if num_classes is None:
    seen = [c.max() for _, c, _ in images.values() if c.size] + ([d_cls.max()] if d_cls.size
                                                                 else [])
    num_classes = int(max(seen)) if seen else 0
  for name, cls in [("det classes", d_cls)] + [
      (f"gt classes of image {i!r}", c) for i, (_, c, _) in images.items()]:
    if cls.size and (cls.min() < 1 or cls.max() > num_classes):
      raise ValueError(f"{name} must be in 1..{num_classes}, got "
                       f"{sorted(set(cls[(cls < 1) | (cls > num_classes)].tolist()))[:10]}")
  unknown = [i for i in dict.fromkeys(d_ids) if i not in images]
  if unknown:
    raise ValueError(f"dets name {len(unknown)} image id(s) not in gt, e.g. {unknown[:5]}")

  ap = np.full(num_classes, np.nan)
  npos = np.zeros(num_classes, np.int64)
  ndet = np.zeros(num_classes, np.int64)
  precisions, recalls = [], []
  for c in range(1, num_classes + 1):
    gts = {}  # image id -> (boxes, difficult, matched flags)
    for i, (boxes, classes, difficult) in images.items():
      sel = classes == c
      if sel.any():
        gts[i] = (boxes[sel], difficult[sel], np.zeros(int(sel.sum()), bool))
        npos[c - 1] += int((~difficult[sel]).sum())
    (det_idx,) = np.nonzero(d_cls == c)
    det_idx = det_idx[np.argsort(-d_scores[det_idx], kind="stable")]
    ndet[c - 1] = len(det_idx)
    tp = np.zeros(len(det_idx))
    fp = np.zeros(len(det_idx))
    for d, k in enumerate(det_idx):
      entry = gts.get(d_ids[k])
      if entry is None:
        fp[d] = 1
        continue
      boxes, difficult, matched = entry
      ov = _overlaps(d_boxes[k], boxes, plus_one)
      j = int(np.argmax(ov))  # first maximum, as the devkit's `if ov > ovmax`
      hit = ov[j] >= iou_threshold if iou_inclusive else ov[j] > iou_threshold
      if hit and np.isfinite(ov[j]):
        if not difficult[j]:
          if not matched[j]:
            tp[d] = 1
            matched[j] = True
          else:
            fp[d] = 1
      else:
        fp[d] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    # every counted detection has tp + fp >= 1 after the first non-skipped one; before it the
    # devkit's 0 / 0 is NaN, which never raises a max (treated as 0 here)
    prec = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    rec = tp / npos[c - 1] if npos[c - 1] else np.full_like(tp, np.nan)
    precisions.append(prec)
    recalls.append(rec)
    if npos[c - 1]:
      ap[c - 1] = average_precision(rec, prec, use_07_metric)
  have = ~np.isnan(ap)
  out = {"map": float(ap[have].mean()) if have.any() else float("nan"), "ap": ap,
         "num_positives": npos, "num_detections": ndet, "precision": precisions,
         "recall": recalls}
  if class_names is not None:
    out["ap_per_class"] = dict(zip(class_names, ap.tolist()))
  return out
