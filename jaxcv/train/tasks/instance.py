"""Per-object tasks beyond boxes: `instance` (Mask R-CNN: box and mask AP) and `keypoints`
(Keypoint R-CNN: box and keypoint AP), both `detection` tasks with one more label.

`instance`: batches add `masks` bool `[B, M, H, W]` (canvas pixels; `data.keys` must ask
for them). `predict` pastes each detection's 28x28 `mask_probs` into the canvas
(`jaxcv.models.detection.meta_arch.mask_rcnn.paste_masks`, torchvision's numbers) and keeps
`masks >= 0.5` as bool `[B, D, H, W]`: B * D * H * W bytes per evaluation batch (50 x 100 x
128 x 128 = 82 MB), never in the model or in training. The evaluation adds `mask_map` (COCO
segm AP, pycocotools' numbers). Masks are scored at the canvas's resolution, the ground
truth's own (boxes are mapped back to the original pixels as `detection` does; with an
identity resize, as on shapes, both are the original). Pictures: ground-truth masks and
boxes | predicted masks (score >= `draw_score_thresh`).

`keypoints`: batches add `keypoints` float32 `[B, M, K, 3]` (x, y, v). K and the OKS sigmas
come from the data set (`keypoint_names`, `oks_sigmas`; COCO person's sigmas when the names
are COCO's 17), the model is built with `num_keypoints = K`. A horizontal flip must swap
left and right keypoints: with keypoints in `data.keys`, `random_hflip` in
`data.augmentation` needs the data set's `keypoint_flip_pairs` as its `flip_pairs` (an error
says so). The evaluation adds `kp_map` (COCO keypoints AP with those sigmas); keypoints are
mapped back to the original pixels. Pictures: keypoints of ground truth | predictions.

Bad input (`check_batch`): masks of another size than the canvas, a crowd region without a
mask pixel (COCO evaluation could not ignore detections on it), labelled keypoints outside
the image: each a ValueError naming the example and object. Crowd objects never train (the
`detection` task's rule, torchvision's and detectron2's); they only mark regions to ignore.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from jaxcv import viz
from jaxcv.metrics.coco import COCOEvaluator
from jaxcv.metrics.coco_params import COCO_KPT_OKS_SIGMAS
from jaxcv.models.detection.meta_arch.mask_rcnn import paste_masks
from jaxcv.train import tasks
from jaxcv.train.tasks.detection import Detection

COCO_PERSON_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")


def flip_pairs_from_names(names) -> tuple[tuple[int, int], ...]:
  """Pairs of keypoints whose names differ by left <-> right (`left_eye` / `right_eye`,
  shapes' `left` / `right`): what a horizontal flip swaps."""
  names = [str(n) for n in names]
  pairs = []
  for i, n in enumerate(names):
    if "left" in n and n.replace("left", "right") in names:
      pairs.append((i, names.index(n.replace("left", "right"))))
  return tuple(pairs)


def _first_bad(mask: np.ndarray, what: str) -> None:
  if mask.any():
    i, j = np.argwhere(mask)[0][:2]
    raise ValueError(f"{what} (example {i}, object {j})")


@tasks.register("instance")
class Instance(Detection):
  """Boxes, classes and masks of objects (Mask R-CNN)."""
  metric_directions: ClassVar[dict[str, str]] = {**Detection.metric_directions,
                                                  "mask_map": "max"}

  def check_batch(self, batch):
    super().check_batch(batch)
    b, h, w = np.shape(batch["image"])[:3]
    m = np.shape(batch["boxes"])[1]
    if "masks" not in batch:
      raise ValueError("the instance task needs 'masks' bool [B, M, H, W] in the batch: add "
                       "'masks' to config.data.keys")
    if np.shape(batch["masks"]) != (b, m, h, w):
      raise ValueError(f"batch 'masks' must be [B, M, H, W] = {(b, m, h, w)} (the canvas's "
                       f"pixels, one per object); got {np.shape(batch['masks'])}")
    if "iscrowd" in batch:
      crowd = np.asarray(batch["box_valid"], bool) & np.asarray(batch["iscrowd"], bool)
      empty = ~np.asarray(batch["masks"]).reshape(b, m, -1).any(-1)
      _first_bad(crowd & empty, "a crowd region has no mask pixel: COCO evaluation ignores "
                 "detections by the crowd's mask, so it needs one")

  def predict(self, model, variables, batch):
    dets = dict(super().predict(model, variables, batch))
    dets["masks"] = paste_masks(dets, batch["image"].shape[1:3])
    dets.pop("mask_probs")
    return dets

  def draw(self, model, variables, batch, path):
    out = self.compiled_predict(model, variables, batch)
    rows = []
    for i in range(min(6, len(batch["image"]))):
      img = viz.as_rgb(batch["image"][i])
      gv = np.asarray(batch["box_valid"][i], bool)
      gt = viz.draw_masks(img, batch["masks"][i], batch["classes"][i], valid=gv)
      gt = viz.draw_boxes(gt, batch["boxes"][i], batch["classes"][i], valid=gv,
                          class_names=self.class_names, scale=2)
      keep = out["valid"][i] & (out["scores"][i] >= self.draw_score_thresh)
      pred = viz.draw_masks(img, out["masks"][i], out["classes"][i], valid=keep)
      pred = viz.draw_boxes(pred, out["boxes"][i], out["classes"][i], out["scores"][i],
                            valid=keep, class_names=self.class_names, scale=2)
      rows.append([gt, pred])
    viz.save_grid(rows, ["ground truth", "predictions"], path)


@tasks.register("keypoints")
class Keypoints(Detection):
  """Boxes, classes and keypoints of objects (Keypoint R-CNN)."""
  metric_directions: ClassVar[dict[str, str]] = {**Detection.metric_directions,
                                                  "kp_map": "max"}

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    names = getattr(dataset, "keypoint_names", None)
    if not names:
      raise ValueError(f"the keypoints task needs a data set with keypoints; "
                       f"{getattr(dataset, 'name', dataset)!r} names none (keypoint_names)")
    self.keypoint_names = tuple(names)
    self.num_keypoints = len(names)
    sigmas = getattr(dataset, "oks_sigmas", None)
    if sigmas is None and self.keypoint_names == COCO_PERSON_KEYPOINTS:
      sigmas = COCO_KPT_OKS_SIGMAS
    if sigmas is None or len(sigmas) != self.num_keypoints:
      raise ValueError(f"the keypoints task needs the OKS sigmas of the data set's "
                       f"{self.num_keypoints} keypoints (dataset.oks_sigmas); got {sigmas}")
    self.oks_sigmas = np.asarray(sigmas, np.float64)
    pairs = tuple(getattr(dataset, "keypoint_flip_pairs", None)
                  or flip_pairs_from_names(self.keypoint_names))
    for spec in config.get("data", {}).get("augmentation", ()) or ():
      name, kwargs = (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))
      given = tuple(tuple(int(i) for i in p) for p in kwargs.get("flip_pairs", ()))
      if name == "random_hflip" and pairs and sorted(given) != sorted(pairs):
        raise ValueError(f"random_hflip with keypoints must swap the left/right keypoints: "
                         f"give it flip_pairs={pairs} (the data set's); got {given}")

  def model_kwargs(self):
    return {**super().model_kwargs(), "num_keypoints": self.num_keypoints}

  def eval_init(self):
    return COCOEvaluator(num_classes=self.num_classes, kpt_oks_sigmas=self.oks_sigmas)

  def check_batch(self, batch):
    super().check_batch(batch)
    b, h, w = np.shape(batch["image"])[:3]
    m = np.shape(batch["boxes"])[1]
    want = (b, m, self.num_keypoints, 3)
    if "keypoints" not in batch or np.shape(batch["keypoints"]) != want:
      raise ValueError(f"the keypoints task needs 'keypoints' float [B, M, K, 3] = {want} "
                       f"(x, y, v) in the batch (config.data.keys); got "
                       f"{np.shape(batch.get('keypoints'))}")
    kp = np.asarray(batch["keypoints"], np.float64)
    labelled = (kp[..., 2] > 0) & np.asarray(batch["box_valid"], bool)[..., None]
    outside = labelled & ~((kp[..., 0] >= 0) & (kp[..., 0] <= w) & (kp[..., 1] >= 0)
                           & (kp[..., 1] <= h))
    _first_bad(outside.any(-1), f"a labelled keypoint lies outside the {h}x{w} image (give "
               "it v = 0, or fix its coordinates)")

  def host_update(self, acc, batch, outputs):
    batch, outputs = dict(batch), dict(outputs)
    if "image_hw" in batch and "orig_hw" in batch:  # keypoints back to the original pixels
      ratio = (np.asarray(batch["orig_hw"], np.float64)
               / np.maximum(np.asarray(batch["image_hw"], np.float64), 1))
      scale = np.stack([ratio[:, 1], ratio[:, 0], np.ones(len(ratio))], -1)[:, None, None]
      for d in (batch, outputs):
        d["keypoints"] = (np.asarray(d["keypoints"], np.float64) * scale).astype(np.float32)
    return super().host_update(acc, batch, outputs)

  def draw(self, model, variables, batch, path):
    out = self.compiled_predict(model, variables, batch)
    skeleton = None
    rows = []
    for i in range(min(6, len(batch["image"]))):
      img = viz.as_rgb(batch["image"][i])
      gv = np.asarray(batch["box_valid"][i], bool)
      gt = viz.draw_boxes(img, batch["boxes"][i], batch["classes"][i], valid=gv,
                          class_names=self.class_names, scale=2)
      gt = viz.draw_keypoints(gt, np.asarray(batch["keypoints"][i]) * [2, 2, 1], valid=gv,
                              classes=batch["classes"][i], skeleton=skeleton)
      keep = out["valid"][i] & (out["scores"][i] >= self.draw_score_thresh)
      pred = viz.draw_boxes(img, out["boxes"][i], out["classes"][i], out["scores"][i],
                            valid=keep, class_names=self.class_names, scale=2)
      kp = np.asarray(out["keypoints"][i]).copy()
      kp[..., 2] = 2  # predicted keypoints are all "visible"
      pred = viz.draw_keypoints(pred, kp * [2, 2, 1], valid=keep, classes=out["classes"][i],
                                skeleton=skeleton)
      rows.append([gt, pred])
    viz.save_grid(rows, ["ground truth", "predictions"], path)
