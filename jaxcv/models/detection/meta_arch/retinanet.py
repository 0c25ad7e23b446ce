"""RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection") exactly as
torchvision's `RetinaNet`: `retinanet_resnet50_fpn` (v1) and `retinanet_resnet50_fpn_v2`
(GroupNorm heads, P6 from C5, GIoU box loss), plus small-backbone variants. The skeleton is
`DenseDetector`'s, the parts `jaxcv.models.detection.dense_heads`'; this file says what is
RetinaNet's: its head, IoU assignment and losses, anchors and thresholds.

    model = jaxcv.models.create("retinanet_resnet50_fpn", num_classes=90)
    dets, aux = model.apply(variables, images, image_hw)                    # evaluation
    losses, aux = model.apply(variables, images, image_hw, targets, train=True,
                              mutable=["batch_stats"])[0]                   # training

Anchors: three sizes per level (x, int(x 2^(1/3)), int(x 2^(2/3))) for x = 32..512 over
P3..P7, times aspect ratios (0.5, 1, 2): 9 per location. Training: `Matcher(0.5, 0.4,
allow_low_quality_matches=True)` on IoU; losses `{"classification", "bbox_regression"}`
(torchvision's names, `dense_heads.retinanet_loss`). Test: sigmoid scores above 0.05, top
1000 per level, NMS 0.5, 300 detections. Intermediates add `cls_logits` `[B, N, C + 1]`,
`bbox_regression` `[B, N, 4]`, and in training `matches` `[B, N]`.

Params: `jaxcv.weights.torchvision` maps torchvision's `backbone.body.*`, `backbone.fpn.*`,
`head.classification_head.*`, `head.regression_head.*`.
"""
from __future__ import annotations

import functools

import jax

from jaxcv.models.detection.dense_heads.anchor_assignment import anchor_matches
from jaxcv.models.detection.dense_heads.retinanet_head import RetinaNetHead
from jaxcv.models.detection.dense_heads.retinanet_loss import BOX_LOSSES, retinanet_losses
from jaxcv.models.detection.meta_arch.dense_detector import DenseDetector
from jaxcv.models.registry import register
from jaxcv.ops.box_coder import decode_boxes

# torchvision's _default_anchorgen: (x, int(x * 2^(1/3)), int(x * 2^(2/3))) per level
RETINANET_SIZES = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3)))
                        for x in (32, 64, 128, 256, 512))


class RetinaNet(DenseDetector):
  """RetinaNet; fields beyond `DenseDetector`'s: `head_norm` (None; v2 "group"), the
  matcher's `fg_iou_thresh` / `bg_iou_thresh`, `box_loss` ("l1"; v2 "giou")."""
  anchor_sizes: tuple = RETINANET_SIZES
  aspect_ratios: tuple = ((0.5, 1.0, 2.0),)
  detections_per_img: int = 300
  head_norm: str | None = None
  fg_iou_thresh: float = 0.5
  bg_iou_thresh: float = 0.4
  box_loss: str = "l1"

  def check_config(self) -> None:
    if self.box_loss not in BOX_LOSSES:
      raise ValueError(f"{type(self).__name__}: box_loss must be one of {list(BOX_LOSSES)}; "
                       f"got {self.box_loss!r}")

  def head_outputs(self, maps, num_anchors, train):
    cls_logits, deltas = RetinaNetHead(num_anchors, self.num_classes + 1, self.head_norm,
                                       self.num_groups, self.prior_probability, self.dtype,
                                       name="head")(maps)
    return {"cls_logits": cls_logits, "bbox_regression": deltas}

  def losses(self, outputs, anchors, level_sizes, targets):
    matches = anchor_matches(anchors, targets["boxes"], targets["box_valid"],
                             self.fg_iou_thresh, self.bg_iou_thresh, True)
    losses = retinanet_losses(outputs["cls_logits"], outputs["bbox_regression"], anchors,
                              matches, targets["boxes"], targets["classes"],
                              alpha=self.focal_alpha, gamma=self.focal_gamma,
                              box_loss=self.box_loss)
    return losses, {"matches": matches}

  def scores_and_boxes(self, outputs, anchors):
    return (jax.nn.sigmoid(outputs["cls_logits"][..., 1:]),
            decode_boxes(outputs["bbox_regression"], anchors[None]))


register("retinanet_resnet50_fpn", RetinaNet)
# torchvision's v2 (Li et al. 2021's recipe): BatchNorm backbone always, GroupNorm heads, P6
# from C5, GIoU box loss
V2 = dict(backbone_norm="batch", trainable_backbone_layers=5, fpn_extra="p6p7_c5",
          head_norm="group", box_loss="giou")
register("retinanet_resnet50_fpn_v2", functools.partial(RetinaNet, **V2))
# Small variants for the shapes configs and tests.
register("retinanet_resnet18_fpn", functools.partial(RetinaNet, backbone="resnet18"))
register("retinanet_resnet34_fpn", functools.partial(RetinaNet, backbone="resnet34"))
register("retinanet_resnet18_fpn_v2", functools.partial(RetinaNet, backbone="resnet18", **V2))
