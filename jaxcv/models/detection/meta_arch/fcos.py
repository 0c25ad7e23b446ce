"""FCOS (Tian et al. 2019, "Fully Convolutional One-Stage Object Detection") exactly as
torchvision's `FCOS`: `fcos_resnet50_fpn`, plus small-backbone variants. The skeleton is
`DenseDetector`'s (as RetinaNet's); this file says what is FCOS's: one square "anchor" per
location (side 8, 16, 32, 64, 128 on P3..P7, torchvision's: the strides), its head with a
centre-ness branch, its point assignment and losses, and its test-time score.

    model = jaxcv.models.create("fcos_resnet50_fpn", num_classes=90)
    dets, aux = model.apply(variables, images, image_hw)                    # evaluation
    losses, aux = model.apply(variables, images, image_hw, targets, train=True,
                              mutable=["batch_stats"])[0]                   # training

Training (`dense_heads.fcos_loss`): centre sampling radius 1.5, scale ranges per level,
the smallest box wins; losses `{"classification", "bbox_regression", "bbox_ctrness"}`
(torchvision's names). Test: score `sqrt(sigmoid(class) * sigmoid(centre-ness))` above 0.2,
top 1000 per level, NMS 0.6, 100 detections; boxes `ops.linear_decode` of the codes.
Intermediates add `cls_logits` `[B, N, C + 1]`, `bbox_regression` `[B, N, 4]`,
`bbox_ctrness` `[B, N]`, and in training `matches` `[B, N]`.

Params: `jaxcv.weights.torchvision` maps torchvision's `backbone.body.*`, `backbone.fpn.*`,
`head.classification_head.*`, `head.regression_head.*`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxcv.models.detection.dense_heads.fcos_head import FCOSHead
from jaxcv.models.detection.dense_heads.fcos_loss import fcos_losses, fcos_matches
from jaxcv.models.detection.meta_arch.dense_detector import DenseDetector
from jaxcv.models.registry import register
from jaxcv.ops.box_coder import linear_decode


class FCOS(DenseDetector):
  """FCOS; fields beyond `DenseDetector`'s: `center_sampling_radius`, `num_convs`."""
  anchor_sizes: tuple = ((8,), (16,), (32,), (64,), (128,))
  aspect_ratios: tuple = ((1.0,),)
  score_thresh: float = 0.2
  nms_thresh: float = 0.6
  detections_per_img: int = 100
  center_sampling_radius: float = 1.5
  num_convs: int = 4

  def check_config(self) -> None:
    ratios = {tuple(r) for r in self.aspect_ratios}
    if any(len(s) != 1 for s in self.anchor_sizes) or ratios != {(1.0,)}:
      raise ValueError(f"{type(self).__name__}: one square anchor per location (one size per "
                       f"level, aspect ratio 1.0, as torchvision's FCOS requires); got sizes "
                       f"{self.anchor_sizes} and ratios {self.aspect_ratios}")

  def head_outputs(self, maps, num_anchors, train):
    return FCOSHead(num_anchors, self.num_classes + 1, self.num_convs, "group",
                    self.num_groups, self.prior_probability, self.dtype, name="head")(maps)

  def losses(self, outputs, anchors, level_sizes, targets):
    matches = fcos_matches(anchors, level_sizes, targets["boxes"], targets["box_valid"],
                           self.center_sampling_radius)
    losses = fcos_losses(outputs["cls_logits"], outputs["bbox_regression"],
                         outputs["bbox_ctrness"], anchors, matches, targets["boxes"],
                         targets["classes"], alpha=self.focal_alpha, gamma=self.focal_gamma)
    return losses, {"matches": matches}

  def scores_and_boxes(self, outputs, anchors):
    scores = jnp.sqrt(jax.nn.sigmoid(outputs["cls_logits"][..., 1:])
                      * jax.nn.sigmoid(outputs["bbox_ctrness"])[..., None])
    return scores, linear_decode(outputs["bbox_regression"], anchors[None])


register("fcos_resnet50_fpn", FCOS)
register("fcos_resnet18_fpn", functools.partial(FCOS, backbone="resnet18"))
register("fcos_resnet34_fpn", functools.partial(FCOS, backbone="resnet34"))
