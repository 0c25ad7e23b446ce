"""Faster R-CNN with FPN (Ren et al. 2015; Lin et al. 2017) exactly as torchvision's
`FasterRCNN`: `fasterrcnn_resnet50_fpn` (v1) and `fasterrcnn_resnet50_fpn_v2` (Li et al.
2021's recipe: BatchNorm FPN, two-conv RPN head, 4conv+1fc box head), layer for layer, plus
small-backbone variants. The parts live in `jaxcv.models.detection` (backbone, proposal
generator, RoI heads); this file wires them.

    model = jaxcv.models.create("fasterrcnn_resnet50_fpn", num_classes=90)
    variables = model.init({"params": key}, images)              # images [B, H, W, 3]
    (dets, aux) = model.apply(variables, images, image_hw)        # eval: the detection dict
    (losses, aux) = model.apply(variables, images, image_hw, targets, train=True,
                                rngs={"sample": key}, mutable=["batch_stats"])[0]

Input: the normalised canvas `[B, H, W, 3]` (H, W multiples of 32), `image_hw` int `[B, 2]`
the valid (height, width) of each image in it (default: the whole canvas), and in training
`targets = {"boxes" [B, M, 4], "classes" [B, M] (1..C), "box_valid" [B, M]}` (the batch
keys). `num_classes` counts the objects, not the background: the predictor has
`num_classes + 1` outputs with the background at index 0 (torchvision's `num_classes` is
this plus one: its COCO weights are `num_classes=90` here).

Output `(output, intermediates)`: in evaluation `{"boxes", "scores", "classes", "valid"}`
(`jaxcv.models.detection` contract); in training `{"loss_objectness", "loss_rpn_box_reg",
"loss_classifier", "loss_box_reg"}` (torchvision's four losses; the training sampler draws
from the `sample` PRNG stream). `intermediates`: `fpn` (the maps, finest first, "pool"
last), `objectness` `[B, N]`, `rpn_deltas` `[B, N, 4]`, `anchors` `[N, 4]`, `proposals`
`[B, R, 4]`, `proposal_scores`, `proposal_valid`, and the box head's `class_logits`
`[B, R, C + 1]` and `box_regression` `[B, R, (C + 1) * 4]` on the RoIs (the proposals in
evaluation, the sampled RoIs in training).

Params: `stem`, `stage1`..`stage4` (ResNet), `fpn`, `rpn_head`, `box_head`,
`box_predictor` (`jaxcv.weights.torchvision` maps torchvision's `backbone.body.*`,
`backbone.fpn.*`, `rpn.head.*`, `roi_heads.box_head.*`, `roi_heads.box_predictor.*`).
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.norm import norm_layer
from jaxcv.models.detection.backbone.fpn import FPN
from jaxcv.models.detection.meta_arch.inputs import (TARGET_KEYS, check_detector_inputs,
                                                     features_and_anchors, full_image_hw)
from jaxcv.models.detection.proposal_generator.anchor_generator import (
    DEFAULT_ASPECT_RATIOS, DEFAULT_SIZES)
from jaxcv.models.detection.proposal_generator.rpn import (anchor_targets, rpn_losses,
                                                          select_proposals)
from jaxcv.models.detection.proposal_generator.rpn_head import RPNHead
from jaxcv.models.detection.roi_heads.box_head import ConvFCHead, TwoMLPHead
from jaxcv.models.detection.roi_heads.box_predictor import FastRCNNPredictor
from jaxcv.models.detection.roi_heads.fast_rcnn import (BOX_WEIGHTS, fast_rcnn_losses,
                                                        postprocess_detections)
from jaxcv.models.detection.roi_heads.sampling import sample_rois
from jaxcv.models.registry import register
from jaxcv.ops.roi import multiscale_roi_align

HEADS = ("stem", "stage1", "stage2", "stage3", "stage4", "fpn", "rpn_head", "box_head",
         "box_predictor")


def pool_rois(maps, rois, size: int, sampling_ratio: int, canvas_hw) -> jax.Array:
  """torchvision's `MultiScaleRoIAlign` over the FPN levels (without "pool"): rois
  `[B, R, 4]` canvas pixels -> `[B * R, size, size, C]`."""
  b, r, _ = rois.shape
  return multiscale_roi_align(maps[:-1], rois.reshape(b * r, 4),
                              jnp.repeat(jnp.arange(b, dtype=jnp.int32), r), size,
                              sampling_ratio, tuple(canvas_hw))


class FasterRCNN(nn.Module):
  """Faster R-CNN; the fields are torchvision's `FasterRCNN` keyword arguments where it has
  them (same names, same defaults)."""
  num_classes: int
  # backbone + FPN
  backbone: str = "resnet50"
  width: int = 64
  backbone_norm: str = "frozen_batch"
  norm_epsilon: float = 1e-5
  num_groups: int = 32
  trainable_backbone_layers: int = 3
  fpn_channels: int = 256
  fpn_norm: str | None = None
  # RPN
  anchor_sizes: Sequence[Sequence[float]] = DEFAULT_SIZES
  aspect_ratios: Sequence[Sequence[float]] = DEFAULT_ASPECT_RATIOS
  rpn_conv_depth: int = 1
  rpn_pre_nms_top_n_train: int = 2000
  rpn_pre_nms_top_n_test: int = 1000
  rpn_post_nms_top_n_train: int = 2000
  rpn_post_nms_top_n_test: int = 1000
  rpn_nms_thresh: float = 0.7
  rpn_fg_iou_thresh: float = 0.7
  rpn_bg_iou_thresh: float = 0.3
  rpn_batch_size_per_image: int = 256
  rpn_positive_fraction: float = 0.5
  rpn_score_thresh: float = 0.0
  # RoI heads
  box_head: str = "two_mlp"          # or "conv_fc" (v2)
  box_head_norm: str | None = "batch"
  representation_size: int = 1024
  box_roi_pool_size: int = 7
  box_sampling_ratio: int = 2
  box_score_thresh: float = 0.05
  box_nms_thresh: float = 0.5
  box_detections_per_img: int = 100
  box_fg_iou_thresh: float = 0.5
  box_bg_iou_thresh: float = 0.5
  box_batch_size_per_image: int = 512
  box_positive_fraction: float = 0.25
  bbox_reg_weights: Sequence[float] = BOX_WEIGHTS
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  @property
  def max_detections(self) -> int:
    return self.box_detections_per_img

  @property
  def target_keys(self) -> tuple[str, ...]:
    """The `targets` keys training needs (a task passes these batch keys)."""
    return TARGET_KEYS

  @property
  def module_names(self) -> tuple[str, ...]:
    """The top-level submodules (what `frozen_stages` may name)."""
    return HEADS

  # Hooks for the detectors that add per-region heads (Mask / Keypoint R-CNN): called inside
  # `__call__` (their submodules are the model's), each returning what it adds.
  def check_targets(self, targets: dict, b: int, m: int, hw: tuple[int, int]) -> None:
    """Checks the targets beyond boxes and classes (shapes; under jit no values)."""

  def extra_losses(self, maps, sample, targets, image_hw, canvas_hw, train: bool) -> dict:
    """Training losses of extra heads on the sampled RoIs (`RoISample`)."""
    return {}

  def extra_outputs(self, maps, dets: dict, image_hw, canvas_hw, aux: dict) -> dict:
    """Evaluation outputs of extra heads on the detections (added to `dets`)."""
    return dets

  def head_train(self, name: str, train: bool) -> bool:
    return train and name not in self.frozen_stages

  def _check(self, images, image_hw, targets, train):
    if self.box_head not in ("two_mlp", "conv_fc"):
      raise ValueError(f"{type(self).__name__}: box_head must be 'two_mlp' or 'conv_fc'; got "
                       f"{self.box_head!r}")
    check_detector_inputs(self, images, image_hw, targets, train)

  @nn.compact
  def __call__(self, images: jax.Array, image_hw: jax.Array | None = None,
               targets: dict | None = None, train: bool = False):
    self._check(images, image_hw, targets, train)
    b, h, w, _ = images.shape
    image_hw = full_image_hw(images, image_hw)
    fpn_norm = None if self.fpn_norm is None else functools.partial(
        norm_layer(self.fpn_norm, train and "fpn" not in self.frozen_stages, self.dtype,
                   num_groups=self.num_groups))
    fpn = FPN(self.fpn_channels, "maxpool", fpn_norm, self.dtype, name="fpn")
    maps, anchors, level_sizes, num_anchors = features_and_anchors(self, images, fpn, train)
    objectness, deltas = RPNHead(num_anchors, self.rpn_conv_depth, self.dtype,
                                 name="rpn_head")(maps)
    top_n = ((self.rpn_pre_nms_top_n_train, self.rpn_post_nms_top_n_train) if train else
             (self.rpn_pre_nms_top_n_test, self.rpn_post_nms_top_n_test))
    proposals, proposal_scores, proposal_valid = select_proposals(
        anchors, objectness, deltas, level_sizes, image_hw, pre_nms_top_n=top_n[0],
        post_nms_top_n=top_n[1], nms_thresh=self.rpn_nms_thresh,
        score_thresh=self.rpn_score_thresh)
    aux = {"fpn": maps, "objectness": objectness, "rpn_deltas": deltas, "anchors": anchors,
           "proposals": proposals, "proposal_scores": proposal_scores,
           "proposal_valid": proposal_valid}

    if train:
      key_rpn, key_roi = jax.random.split(self.make_rng("sample"))
      labels, rpn_targets = anchor_targets(anchors, targets["boxes"], targets["box_valid"],
                                           self.rpn_fg_iou_thresh, self.rpn_bg_iou_thresh)
      losses = rpn_losses(objectness, deltas, labels, rpn_targets, key_rpn,
                          batch_size_per_image=self.rpn_batch_size_per_image,
                          positive_fraction=self.rpn_positive_fraction)
      sample = sample_rois(proposals, proposal_valid, targets["boxes"], targets["classes"],
                           targets["box_valid"], key_roi,
                           fg_iou_thresh=self.box_fg_iou_thresh,
                           bg_iou_thresh=self.box_bg_iou_thresh,
                           batch_size_per_image=self.box_batch_size_per_image,
                           positive_fraction=self.box_positive_fraction,
                           weights=self.bbox_reg_weights)
      rois, roi_valid = sample.boxes, sample.valid
    else:
      rois, roi_valid = proposals, proposal_valid

    r = rois.shape[1]
    pooled = pool_rois(maps, rois, self.box_roi_pool_size, self.box_sampling_ratio, (h, w))
    if self.box_head == "two_mlp":
      head = TwoMLPHead(self.representation_size, self.dtype, name="box_head")
    else:
      head = ConvFCHead(norm=self.box_head_norm, num_groups=self.num_groups,
                        fc_layers=(self.representation_size,), dtype=self.dtype,
                        name="box_head")
    x = head(pooled, train=self.head_train("box_head", train), mask=roi_valid.reshape(-1))
    logits, box_deltas = FastRCNNPredictor(self.num_classes, self.dtype,
                                           name="box_predictor")(x)
    logits = logits.reshape(b, r, -1)
    box_deltas = box_deltas.reshape(b, r, -1)
    aux.update(class_logits=logits, box_regression=box_deltas)
    if train:
      losses.update(fast_rcnn_losses(logits, box_deltas, sample.labels, sample.targets,
                                     roi_valid))
      losses.update(self.extra_losses(maps, sample, targets, image_hw, (h, w), train))
      return losses, aux
    dets = postprocess_detections(logits, box_deltas, rois, roi_valid, image_hw,
                                  score_thresh=self.box_score_thresh,
                                  nms_thresh=self.box_nms_thresh,
                                  detections_per_img=self.box_detections_per_img,
                                  weights=self.bbox_reg_weights)
    return self.extra_outputs(maps, dets, image_hw, (h, w), aux), aux


register("fasterrcnn_resnet50_fpn", FasterRCNN)
# torchvision's v2 recipe (Li et al. 2021), shared by the v2 Mask R-CNN
V2 = dict(backbone_norm="batch", trainable_backbone_layers=5, fpn_norm="batch",
          rpn_conv_depth=2, box_head="conv_fc", box_head_norm="batch")
register("fasterrcnn_resnet50_fpn_v2", functools.partial(FasterRCNN, **V2))
# Small variants for the shapes configs and tests: any torchvision ResNet, narrow widths.
register("fasterrcnn_resnet18_fpn", functools.partial(FasterRCNN, backbone="resnet18"))
register("fasterrcnn_resnet34_fpn", functools.partial(FasterRCNN, backbone="resnet34"))
register("fasterrcnn_resnet101_fpn", functools.partial(FasterRCNN, backbone="resnet101"))
