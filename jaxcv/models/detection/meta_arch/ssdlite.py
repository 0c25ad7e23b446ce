"""SSDlite (MobileNetV2 paper, section 6.2; MobileNetV3 paper, section 6.3) exactly as
torchvision's `ssdlite320_mobilenet_v3_large`: SSD (`meta_arch.ssd`: SSDMatcher 0.5 with
forced best matches, smooth L1 + softmax CE with 3:1 hard negatives, BoxCoder (10, 10, 5, 5),
per-class top-k selection) with what differs said here: the MobileNetV3-Large extractor with
SSDlite's extra blocks (`backbone.ssdlite_mobilenet`), the depthwise-separable heads with
BatchNorm and ReLU6 (`dense_heads.ssdlite_head`), the default boxes
(`DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)`: 6 per cell, centres
and scales from the map sizes), BatchNorm eps 0.001 and momentum 0.03 (torch's sense) in
every layer, and the test-time numbers: score 0.001, top 300 per class, NMS 0.55, 300
detections.

    model = jaxcv.models.create("ssdlite320_mobilenet_v3_large", num_classes=90)
    dets, aux = model.apply(variables, images)            # images [B, 320, 320, 3]

Inputs: the canvas normalised with `SSDLITE_MEAN` / `SSDLITE_STD` (pixels in [0, 1] to
[-1, 1]), any size (torchvision resizes every image to 320x320: the configs do the same).
`reduced_tail` (default True) halves the last three MobileNetV3 blocks, as torchvision does
whenever no ImageNet backbone is loaded, its published COCO weights included; an ImageNet
MobileNetV3 backbone has `reduced_tail=False` (`jaxcv.weights.torchvision.load` reads it from
the state_dict). `width_mult` scales the MobileNetV3 (not the extra blocks), as torchvision's
builder's `width_mult`. `trainable_backbone_layers` 0..6 (6: all).

Training: BatchNorm uses batch statistics and moves its running ones (torch's rule, unbiased
variance) everywhere but in `frozen_stages`; the losses `{"bbox_regression",
"classification"}`. Intermediates as SSD's: `features` (the six maps), `anchors`,
`cls_logits` `[B, N, C + 1]`, `bbox_regression` `[B, N, 4]`, in training `matches`.

Params: `stem`, `block1`..`block15`, `last_conv` (jaxcv `mobilenet_v3_large`'s names),
`extra1`..`extra4`, `head` (`cls_logits/level{l}`, `bbox_reg/level{l}`);
`jaxcv.weights.torchvision` maps torchvision's `backbone.features.0.*` (features 0..12 and
the C4 expansion), `backbone.features.1.*` (the rest of features.13, 14, 15, 16),
`backbone.extra.k.*` and `head.*.module_list.l.*`.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax

from jaxcv.models.detection.backbone.ssdlite_mobilenet import (EXTRA_WIDTHS,
                                                               ssdlite_mobilenet_features)
from jaxcv.models.detection.dense_heads.ssdlite_head import SSDLiteHead
from jaxcv.models.detection.meta_arch.ssd import SSD
from jaxcv.models.mobilenetv3 import TorchBatchNorm, block_configs
from jaxcv.models.registry import register

# torchvision's ssdlite image_mean / image_std (on [0, 1] pixels) for the configs
SSDLITE_MEAN = (0.5, 0.5, 0.5)
SSDLITE_STD = (0.5, 0.5, 0.5)


class SSDLite(SSD):
  """SSDlite on MobileNetV3-Large; fields beyond `SSD`'s (whose VGG fields `width`,
  `highres`, `extra_layers`, `backbone_norm` it does not use): `width_mult`, `reduced_tail`
  (the MobileNetV3's), `norm_momentum` (torch's sense) with `norm_epsilon` (every
  BatchNorm's)."""
  aspect_ratios: tuple = ((2, 3),) * 6
  scales: Sequence[float] | None = None
  steps: Sequence[int] | None = None
  min_ratio: float = 0.2
  max_ratio: float = 0.95
  trainable_backbone_layers: int = 6
  score_thresh: float = 0.001
  nms_thresh: float = 0.55
  detections_per_img: int = 300
  topk_candidates: int = 300
  norm_epsilon: float = 1e-3
  norm_momentum: float = 0.03
  width_mult: float = 1.0
  reduced_tail: bool = True

  @property
  def backbone_modules(self) -> tuple[str, ...]:
    blocks = len(block_configs("large")[0])
    return (("stem",) + tuple(f"block{k}" for k in range(1, blocks + 1)) + ("last_conv",)
            + tuple(f"extra{k}" for k in range(1, len(EXTRA_WIDTHS) + 1)))

  def check_config(self) -> None:
    name = type(self).__name__
    for field in ("highres", "extra_layers"):  # the VGG extractor's, not SSDlite's
      if getattr(self, field, None):
        raise ValueError(f"{name}: {field} is the VGG SSD's; SSDlite's extractor has its own "
                         f"{len(EXTRA_WIDTHS)} extra blocks")
    want = 2 + len(EXTRA_WIDTHS)
    if len(self.aspect_ratios) != want:
      raise ValueError(f"{name}: the extractor gives {want} maps, but aspect_ratios has "
                       f"{len(self.aspect_ratios)} levels")
    if self.steps is not None and len(self.steps) != want:
      raise ValueError(f"{name}: steps has {len(self.steps)} entries for {want} maps")

  def norm(self, stage: str, train: bool):
    """The BatchNorm of top-level module `stage`: batch statistics in training unless the
    stage is frozen."""
    return functools.partial(TorchBatchNorm,
                             use_running_average=not train or stage in self.frozen_stages,
                             momentum=self.norm_momentum, epsilon=self.norm_epsilon,
                             dtype=self.dtype)

  def backbone_maps(self, images: jax.Array, train: bool) -> list[jax.Array]:
    return ssdlite_mobilenet_features(
        images.astype(self.dtype), norm=lambda stage: self.norm(stage, train),
        width_mult=self.width_mult, reduced_tail=self.reduced_tail,
        trainable_layers=self.trainable_backbone_layers, dtype=self.dtype,
        model=type(self).__name__)

  def head_outputs(self, maps, num_anchors, train):
    cls_logits, deltas = SSDLiteHead(tuple(num_anchors), self.num_classes + 1,
                                     self.norm("head", train), self.dtype, name="head")(maps)
    return {"cls_logits": cls_logits, "bbox_regression": deltas}


register("ssdlite320_mobilenet_v3_large", SSDLite)
