"""SSD (Liu et al. 2016, "SSD: Single Shot MultiBox Detector") exactly as torchvision's `SSD`:
`ssd300_vgg16`, and `ssd512_vgg16` (torchvision's highres extractor with the paper's SSD512
default boxes; torchvision has no builder or weights for it). The skeleton is
`DenseDetector`'s; this file says what is SSD's: the VGG extractor and default boxes
(`features`), the per-level 3x3 heads, the SSDMatcher + hard-negative losses and the
softmax scores with per-class top-k selection.

    model = jaxcv.models.create("ssd300_vgg16", num_classes=90)
    dets, aux = model.apply(variables, images)                 # images [B, 300, 300, 3]

Inputs: the canvas `[B, H, W, 3]` normalised with SSD's own numbers (torchvision: mean
(0.48235, 0.45882, 0.40784) x 255, std 1: the pixel in 0..255 minus the mean), any size the
extra layers take (torchvision resizes every image to 300x300, or 512x512: the configs do the
same with a fixed-size resize). Default boxes `ops.anchors.ssd_default_boxes` over the maps
(their relative scales and steps in the fields, in canvas pixels). Training: `ssd_matches`
(IoU 0.5 plus forced best matches), `ssd_losses` `{"bbox_regression", "classification"}`.
Test: softmax over the `num_classes + 1` columns (0 the background), BoxCoder (10, 10, 5, 5)
decoding, per class the scores above 0.01 and their best 400, NMS 0.45, 200 detections.
Intermediates: `features` (the maps), `anchors`, `cls_logits` `[B, N, C + 1]`,
`bbox_regression` `[B, N, 4]`, in training `matches`.

Params: `stage1`..`stage5`, `fc`, `extra1`.., `scale_weight` (`backbone.ssd_vgg`), `head`
(`cls_logits/level{l}`, `bbox_reg/level{l}`); `jaxcv.weights.torchvision` maps torchvision's
`backbone.features.*`, `backbone.extra.*`, `backbone.scale_weight`, `head.*.module_list.l`.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from jaxcv.layers.norm import batch_norm
from jaxcv.models.detection.backbone.ssd_vgg import extra_specs, ssd_vgg_features
from jaxcv.models.detection.dense_heads.anchor_assignment import ssd_matches
from jaxcv.models.detection.dense_heads.postprocess import per_class_detections
from jaxcv.models.detection.dense_heads.ssd_head import SSDHead
from jaxcv.models.detection.dense_heads.ssd_loss import SSD_BOX_WEIGHTS, ssd_losses
from jaxcv.models.detection.meta_arch.dense_detector import DenseDetector
from jaxcv.models.registry import register
from jaxcv.ops.anchors import ssd_default_boxes, ssd_num_anchors_per_location
from jaxcv.ops.box_coder import decode_boxes

SSD300 = dict(aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
              scales=(0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05),
              steps=(8, 16, 32, 64, 100, 300))
# the paper's SSD512 (its caffe model: min sizes 35.84 .. 460.8 of 512, steps 8 .. 512)
SSD512 = dict(aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,)),
              scales=(0.07, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05),
              steps=(8, 16, 32, 64, 128, 256, 512), highres=True)
# torchvision's SSD mean / std (on [0, 1] pixels) for the configs
SSD_MEAN = (0.48235, 0.45882, 0.40784)
SSD_STD = (1.0 / 255, 1.0 / 255, 1.0 / 255)


class SSD(DenseDetector):
  """SSD on torchvision's VGG-16 extractor; fields beyond `DenseDetector`'s (whose anchor
  and FPN fields SSD does not use): `highres` (SSD512's extra layer), `extra_layers` (other
  extra blocks than torchvision's, e.g. for small inputs: `(1x1 width, kxk width, k,
  stride, padding)` each, one feature map each), `backbone_norm` ("batch": BatchNorm after
  every extractor conv, as VGG's `_bn` variants; for training from scratch), `scales`, `steps`
  (of `ssd_default_boxes`; `aspect_ratios` per map), `iou_thresh` (the matcher's),
  `neg_to_pos_ratio` (3: torchvision's `positive_fraction` 0.25)."""
  aspect_ratios: tuple = SSD300["aspect_ratios"]
  scales: Sequence[float] | None = SSD300["scales"]
  steps: Sequence[int] | None = SSD300["steps"]
  min_ratio: float = 0.15     # the scales when `scales` is None (DefaultBoxGenerator's)
  max_ratio: float = 0.9
  clip: bool = True
  highres: bool = False
  extra_layers: Sequence[Sequence[int]] | None = None  # `backbone.ssd_vgg.extra_specs`
  backbone_norm: str | None = None   # None (torchvision's) or "batch": BN after every conv
  trainable_backbone_layers: int = 5
  iou_thresh: float = 0.5
  neg_to_pos_ratio: float = 3.0
  score_thresh: float = 0.01
  nms_thresh: float = 0.45
  detections_per_img: int = 200
  topk_candidates: int = 400

  @property
  def module_names(self) -> tuple[str, ...]:
    return self.backbone_modules + ("head",)

  @property
  def backbone_modules(self) -> tuple[str, ...]:
    extras = len(extra_specs(self.highres, self.extra_layers))
    return (tuple(f"stage{i}" for i in range(1, 6)) + ("fc",)
            + tuple(f"extra{i}" for i in range(1, extras + 1)))

  @property
  def size_multiple(self) -> int:
    return 1

  @property
  def maps_key(self) -> str:
    return "features"

  def check_config(self) -> None:
    name = type(self).__name__
    want = 2 + len(extra_specs(self.highres, self.extra_layers))
    if len(self.aspect_ratios) != want:
      raise ValueError(f"{name}: the extractor (conv4_3, fc7 and {want - 2} extra blocks) "
                       f"gives {want} maps, but aspect_ratios has {len(self.aspect_ratios)} "
                       f"levels")
    if self.backbone_norm not in (None, "batch"):
      raise ValueError(f"{name}: backbone_norm must be None or 'batch', got "
                       f"{self.backbone_norm!r}")
    if self.steps is not None and len(self.steps) != want:
      raise ValueError(f"{name}: steps has {len(self.steps)} entries for {want} maps")

  def backbone_maps(self, images: jax.Array, train: bool) -> list[jax.Array]:
    norm = lambda stage: (batch_norm(train, stage, self.frozen_stages, self.dtype)
                          if self.backbone_norm == "batch" else None)
    return ssd_vgg_features(self, images.astype(self.dtype), width=self.width,
                            highres=self.highres, extra_layers=self.extra_layers, norm=norm,
                            trainable_layers=self.trainable_backbone_layers, dtype=self.dtype,
                            model=type(self).__name__)

  def features(self, images, train):
    maps = self.backbone_maps(images, train)
    if len(maps) != len(self.aspect_ratios):
      raise ValueError(f"{type(self).__name__}: the backbone gives {len(maps)} maps, but "
                       f"aspect_ratios has {len(self.aspect_ratios)} levels")
    sizes = [tuple(m.shape[1:3]) for m in maps]
    anchors = ssd_default_boxes(tuple(images.shape[1:3]), sizes, self.aspect_ratios,
                                self.min_ratio, self.max_ratio, self.scales, self.steps,
                                self.clip)
    per_location = ssd_num_anchors_per_location(self.aspect_ratios)
    level_sizes = [h * w * a for (h, w), a in zip(sizes, per_location)]
    return maps, anchors, level_sizes, per_location

  def head_outputs(self, maps, num_anchors, train):
    cls_logits, deltas = SSDHead(tuple(num_anchors), self.num_classes + 1, self.dtype,
                                 name="head")(maps)
    return {"cls_logits": cls_logits, "bbox_regression": deltas}

  def losses(self, outputs, anchors, level_sizes, targets):
    matches = ssd_matches(anchors, targets["boxes"], targets["box_valid"], self.iou_thresh)
    losses = ssd_losses(outputs["cls_logits"], outputs["bbox_regression"], anchors, matches,
                        targets["boxes"], targets["classes"],
                        neg_to_pos_ratio=self.neg_to_pos_ratio)
    return losses, {"matches": matches}

  def scores_and_boxes(self, outputs, anchors):
    return (jax.nn.softmax(outputs["cls_logits"], axis=-1)[..., 1:],
            decode_boxes(outputs["bbox_regression"], anchors[None], SSD_BOX_WEIGHTS))

  def select(self, scores, boxes, level_sizes, image_hw):
    return per_class_detections(scores, boxes, image_hw, score_thresh=self.score_thresh,
                                topk_candidates=self.topk_candidates,
                                nms_thresh=self.nms_thresh,
                                detections_per_img=self.detections_per_img)


register("ssd300_vgg16", SSD)
register("ssd512_vgg16", functools.partial(SSD, **SSD512))
del jnp
