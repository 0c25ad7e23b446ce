"""Panoptic segmentation (Panoptic FPN): every pixel a thing instance or a stuff region.

Batches: the `instance` task's (boxes, classes, masks, ...) plus the panoptic keys,
`panoptic` int `[B, H, W]` (segment ids, 0 void) and the padded segment arrays
`segment_ids`, `segment_classes` (panoptic category ids: things 1..C, then the stuff
classes), `segment_isthing`, `segment_iscrowd`, `segment_valid`. The data set names its stuff
categories (`stuff_classes`, e.g. shapes' wall 6 and ground 7); the model is built with them
(its semantic labels 1..S).

`predict`: the detections with pasted masks, and the panoptic merge
(`jaxcv.models.detection.meta_arch.panoptic_fpn.panoptic_outputs`, detectron2's rule with the
model's thresholds) as `panoptic` and segment arrays, all compiled. Evaluation on the host:
`pq`, `sq`, `rq` and their `_things` / `_stuff` splits (`jaxcv.metrics.panoptic`,
panopticapi's rules), box and mask AP (`map`, `mask_map`, ... from the `instance` task's
`COCOEvaluator`), and `miou` of the semantic branch over its S + 1 labels (things, each
stuff class; void pixels and padding left out). Pictures: image | ground-truth panoptic map
| predicted panoptic map (each segment in its class's colour, segment borders dark).

Bad input (`check_batch`): a panoptic map naming a segment id that no valid segment has, and
the panoptic keys missing or of the wrong shape, are ValueErrors naming the example.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from jaxcv import viz
from jaxcv.metrics import panoptic as pq_lib
from jaxcv.models.detection.meta_arch.panoptic_fpn import panoptic_outputs
from jaxcv.models.detection.semantic.panoptic_merge import SEGMENT_KEYS as MERGE_KEYS
from jaxcv.models.detection.semantic.panoptic_merge import metric_segments
from jaxcv.models.detection.semantic.sem_seg_fpn import semantic_labels
from jaxcv.train import tasks
from jaxcv.train.tasks.instance import Instance

SEGMENT_KEYS = ("segment_ids", "segment_classes", "segment_isthing", "segment_valid")
PQ_KEYS = tuple(f"{m}{s}" for s in ("", "_things", "_stuff") for m in ("pq", "sq", "rq"))


def segment_class_map(panoptic, segments, i: int) -> np.ndarray:
  """`[H, W]` panoptic category per pixel of example `i` (0 void)."""
  pan = np.asarray(panoptic[i])
  ids = np.asarray(segments["segment_ids"][i])
  cls = np.asarray(segments["segment_classes"][i])
  valid = np.asarray(segments["segment_valid"][i], bool) & (ids > 0)
  lut = dict(zip(ids[valid].tolist(), cls[valid].tolist()))
  return np.vectorize(lambda s: lut.get(int(s), 0), otypes=[np.int64])(pan)


def _picture(image, panoptic, classes):
  pic = viz.overlay(image, classes, alpha=0.6, ignore_label=0)
  edge = np.zeros(panoptic.shape, bool)
  edge[:, 1:] |= panoptic[:, 1:] != panoptic[:, :-1]
  edge[1:] |= panoptic[1:] != panoptic[:-1]
  pic = np.array(pic)
  pic[edge] *= 0.3
  return pic


@tasks.register("panoptic")
class Panoptic(Instance):
  """Things and stuff (Panoptic FPN)."""
  metric_directions: ClassVar[dict[str, str]] = {**Instance.metric_directions,
                                                  **{k: "max" for k in PQ_KEYS},
                                                  "miou": "max"}

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    stuff = getattr(dataset, "stuff_classes", None)
    if not stuff:
      raise ValueError(f"the panoptic task needs a data set with stuff classes "
                       f"(dataset.stuff_classes); {getattr(dataset, 'name', dataset)!r} has none")
    self.stuff_classes = tuple(int(s) for s in stuff)
    if set(self.stuff_classes) & set(range(1, self.num_classes + 1)):
      raise ValueError(f"stuff classes {self.stuff_classes} overlap the thing classes "
                       f"1..{self.num_classes}")
    self.categories = {**{c: True for c in range(1, self.num_classes + 1)},
                       **{s: False for s in self.stuff_classes}}
    self.stuff_names = tuple(getattr(dataset, "stuff_names", ()) or
                             (str(s) for s in self.stuff_classes))

  def model_kwargs(self):
    return {**super().model_kwargs(), "stuff_classes": self.stuff_classes}

  def check_batch(self, batch):
    super().check_batch(batch)
    b, h, w = np.shape(batch["image"])[:3]
    missing = [k for k in ("panoptic",) + SEGMENT_KEYS if k not in batch]
    if missing:
      raise ValueError(f"the panoptic task needs {missing} in the batch: add 'panoptic' and "
                       f"the segment keys to config.data.keys")
    if np.shape(batch["panoptic"]) != (b, h, w):
      raise ValueError(f"batch 'panoptic' must be [B, H, W] = {(b, h, w)}; got "
                       f"{np.shape(batch['panoptic'])}")
    pan = np.asarray(batch["panoptic"])
    ids = np.where(np.asarray(batch["segment_valid"], bool), batch["segment_ids"], 0)
    for i in range(b):
      named = np.unique(pan[i])
      unknown = named[(named != 0) & ~np.isin(named, ids[i])]
      if unknown.size:
        raise ValueError(f"example {i}: the panoptic map names segment ids "
                         f"{unknown[:10].tolist()} that no valid segment has (segment_ids "
                         f"{ids[i][ids[i] > 0].tolist()})")

  def predict(self, model, variables, batch):
    dets, _ = model.apply(variables, self.model_input(batch), self._image_hw(batch))
    return panoptic_outputs(model, dets, batch["image"].shape[1:3])

  def eval_init(self):
    s = len(self.stuff_classes) + 1
    return {"coco": super().eval_init(), "pq": pq_lib.init(self.categories),
            "confusion": np.zeros((s, s), np.int64)}

  def host_update(self, acc, batch, outputs):
    batch, outputs = dict(batch), dict(outputs)
    valid = np.asarray(batch.get("example_valid", np.ones(len(batch["image"]), bool)), bool)
    pred_segments = metric_segments({k: np.asarray(outputs[k]) for k in MERGE_KEYS})
    gt_segments = {k: np.asarray(batch[k]) for k in SEGMENT_KEYS}
    if "segment_iscrowd" in batch:
      gt_segments["segment_iscrowd"] = np.asarray(batch["segment_iscrowd"])
    pq = pq_lib.update(acc["pq"], np.asarray(outputs["panoptic"]), pred_segments,
                       np.asarray(batch["panoptic"]), gt_segments, self.categories, valid)
    labels = np.asarray(semantic_labels(*(batch[k] for k in ("panoptic",) + SEGMENT_KEYS),
                                        stuff_classes=self.stuff_classes))
    if "image_hw" in batch:
      hw = np.asarray(batch["image_hw"])
      h, w = labels.shape[1:]
      inside = ((np.arange(h)[None, :, None] < hw[:, 0, None, None])
                & (np.arange(w)[None, None, :] < hw[:, 1, None, None]))
      labels = np.where(inside, labels, 255)
    keep = (labels != 255) & valid[:, None, None]
    s = acc["confusion"].shape[0]
    pred = np.asarray(outputs["semantic"])
    confusion = acc["confusion"] + np.bincount(labels[keep] * s + pred[keep],
                                               minlength=s * s).reshape(s, s)
    coco = super().host_update(acc["coco"], batch, outputs)
    return {"coco": coco, "pq": pq, "confusion": confusion}

  def result(self, acc):
    out = acc["coco"].compute()
    pq = pq_lib.compute(acc["pq"], self.categories)
    out.update({k: pq[k] for k in PQ_KEYS})
    c = acc["confusion"].astype(np.float64)
    union = c.sum(0) + c.sum(1) - np.diag(c)
    present = union > 0
    out["miou"] = float(np.mean(np.diag(c)[present] / union[present])) if present.any() \
        else float("nan")
    return out

  def draw(self, model, variables, batch, path):
    out = self.compiled_predict(model, variables, batch)
    gt_seg = {k: batch[k] for k in SEGMENT_KEYS}
    rows = []
    for i in range(min(6, len(batch["image"]))):
      img = viz.as_rgb(batch["image"][i])
      gt = _picture(img, np.asarray(batch["panoptic"][i]),
                    segment_class_map(batch["panoptic"], gt_seg, i))
      pred = _picture(img, np.asarray(out["panoptic"][i]),
                      segment_class_map(out["panoptic"], out, i))
      rows.append([img, gt, pred])
    viz.save_grid(rows, ["image", "ground truth", "panoptic prediction"], path)
