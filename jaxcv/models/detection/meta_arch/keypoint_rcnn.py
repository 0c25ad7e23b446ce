"""Keypoint R-CNN exactly as torchvision's `KeypointRCNN`: Faster R-CNN with FPN
(`faster_rcnn.py`) plus a keypoint branch on its RoIs (`roi_heads/keypoint_head.py`):
`keypointrcnn_resnet50_fpn` (COCO person: `num_classes=1`, 17 keypoints) and small-backbone
variants.

Training targets add `keypoints` float32 `[B, M, K, 3]` (x, y, v) in canvas pixels; the
losses add `loss_keypoint` (the branch runs on the sampled positives, as torchvision's).
Evaluation adds `keypoints [B, D, K, 3]` (x, y, 1) in canvas pixels and `keypoint_scores
[B, D, K]` (torchvision's `keypoints_scores`); `intermediates` add `keypoint_logits
[B, D, 56, 56, K]`. The heatmaps are decoded at each box's own size as torchvision does,
on a static grid bounded by `keypoint_max_size` (None: the canvas's longest side, exact).

Params add `keypoint_head` (`conv0`..`conv7`) and `keypoint_predictor`
(`kps_score_lowres`): torchvision's `roi_heads.keypoint_head.{2i}` and
`roi_heads.keypoint_predictor.kps_score_lowres`.
"""
from __future__ import annotations

import functools
from typing import Sequence

from jaxcv.models.detection.meta_arch.faster_rcnn import HEADS, FasterRCNN, pool_rois
from jaxcv.models.detection.meta_arch.mask_rcnn import positives
from jaxcv.models.detection.roi_heads.keypoint_head import (KeypointRCNNHeads,
                                                            KeypointRCNNPredictor,
                                                            keypoint_inference, keypoint_loss)
from jaxcv.models.registry import register


class KeypointRCNN(FasterRCNN):
  """Faster R-CNN's fields plus torchvision's keypoint-branch arguments."""
  num_keypoints: int = 17
  keypoint_roi_pool_size: int = 14
  keypoint_sampling_ratio: int = 2
  keypoint_layers: Sequence[int] = (512,) * 8
  keypoint_max_size: int | None = None
  keypoint_roi_batch: int = 8

  @property
  def target_keys(self):
    return super().target_keys + ("keypoints",)

  @property
  def module_names(self):
    return HEADS + ("keypoint_head", "keypoint_predictor")

  def check_targets(self, targets, b, m, hw):
    want = (b, m, self.num_keypoints, 3)
    if tuple(targets["keypoints"].shape) != want:
      raise ValueError(f"{type(self).__name__}: targets['keypoints'] must be [B, M, K, 3] = "
                       f"{want} (x, y, v; K = num_keypoints); got "
                       f"{tuple(targets['keypoints'].shape)}")

  def keypoint_logits(self, maps, rois, valid, canvas_hw, train):
    b, r, _ = rois.shape
    x = pool_rois(maps, rois, self.keypoint_roi_pool_size, self.keypoint_sampling_ratio,
                  canvas_hw)
    x = KeypointRCNNHeads(self.keypoint_layers, self.dtype, name="keypoint_head")(
        x, train=self.head_train("keypoint_head", train), mask=valid.reshape(-1))
    x = KeypointRCNNPredictor(self.num_keypoints, self.dtype, name="keypoint_predictor")(x)
    return x.reshape((b, r) + x.shape[1:])

  def extra_losses(self, maps, sample, targets, image_hw, canvas_hw, train):
    rois, _, matched, pos = positives(sample, self.box_batch_size_per_image,
                                      self.box_positive_fraction)
    logits = self.keypoint_logits(maps, rois, pos, canvas_hw, train)
    return {"loss_keypoint": keypoint_loss(logits, rois, targets["keypoints"], matched, pos)}

  def extra_outputs(self, maps, dets, image_hw, canvas_hw, aux):
    logits = self.keypoint_logits(maps, dets["boxes"], dets["valid"], canvas_hw, False)
    aux["keypoint_logits"] = logits
    bound = self.keypoint_max_size or max(canvas_hw)
    kps, scores = keypoint_inference(logits, dets["boxes"], bound, self.keypoint_roi_batch)
    return dict(dets, keypoints=kps, keypoint_scores=scores)


register("keypointrcnn_resnet50_fpn", functools.partial(KeypointRCNN, num_classes=1))
register("keypointrcnn_resnet18_fpn", functools.partial(KeypointRCNN, backbone="resnet18"))
register("keypointrcnn_resnet34_fpn", functools.partial(KeypointRCNN, backbone="resnet34"))
