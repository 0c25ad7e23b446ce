"""What the one-stage dense detectors share (RetinaNet, FCOS, SSD; torchvision's
`RetinaNet`, `FCOS` and `SSD` classes have the same skeleton): feature maps with a static
anchor table over them (by default a ResNet's C3..C5 into an FPN with P6 and P7), a head per
location, and at test time a top-k + class-aware NMS selection (`dense_heads.postprocess`,
by default per level). A subclass says what is its own: `head_outputs` (the head module and
its outputs), `losses` (assignment and losses in training) and `scores_and_boxes` (test-time
scores `[B, N, C]` and decoded boxes); and, where they differ from RetinaNet's, `features`
(SSD: its VGG or MobileNet extractor and default boxes) and `select` (SSD: top-k per class).

Inputs and outputs as `FasterRCNN` (the `jaxcv.models.detection` contract): images
`[B, H, W, 3]` normalised, H and W multiples of 32; `image_hw` `[B, 2]`; targets `boxes`,
`classes` (1..C), `box_valid`. Training returns the subclass's loss dict (nothing is
sampled: no PRNG stream), evaluation the detection dict with `D = detections_per_img`.
`intermediates`: `fpn` (P3..P7), `anchors` `[N, 4]` and the head's outputs, plus what the
subclass's losses add in training.

Params: `stem`, `stage1`..`stage4` (ResNet), `fpn`, `head`. The classification outputs have
`num_classes + 1` columns, column 0 torchvision's background, which no location is assigned
to: it takes part in the focal loss (target 0, as torchvision) and is left out of the
test-time candidates, so detected classes are 1..C.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.models.detection.backbone.fpn import FPN
from jaxcv.models.detection.dense_heads.postprocess import dense_detections
from jaxcv.models.detection.meta_arch.inputs import (TARGET_KEYS, check_detector_inputs,
                                                     features_and_anchors, full_image_hw)
MODULES = ("stem", "stage1", "stage2", "stage3", "stage4", "fpn", "head")


class DenseDetector(nn.Module):
  """The shared skeleton; fields are torchvision's argument names where it has them."""
  num_classes: int
  # backbone + FPN (torchvision's _resnet_fpn_extractor(returned_layers=[2, 3, 4]))
  backbone: str = "resnet50"
  width: int = 64
  backbone_norm: str = "frozen_batch"
  norm_epsilon: float = 1e-5
  num_groups: int = 32
  trainable_backbone_layers: int = 3
  fpn_channels: int = 256
  fpn_extra: str = "p6p7"
  # anchors (per level; the subclasses set torchvision's)
  anchor_sizes: Sequence[Sequence[float]] = ((32,), (64,), (128,), (256,), (512,))
  aspect_ratios: Sequence[Sequence[float]] = ((1.0,),)
  prior_probability: float = 0.01
  focal_alpha: float = 0.25
  focal_gamma: float = 2.0
  # test
  score_thresh: float = 0.05
  nms_thresh: float = 0.5
  detections_per_img: int = 100
  topk_candidates: int = 1000
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  @property
  def max_detections(self) -> int:
    return self.detections_per_img

  @property
  def target_keys(self) -> tuple[str, ...]:
    return TARGET_KEYS

  @property
  def module_names(self) -> tuple[str, ...]:
    return MODULES

  @property
  def size_multiple(self) -> int:
    """What the canvas's height and width must be multiples of."""
    return 32

  @property
  def maps_key(self) -> str:
    """The intermediates key of the feature maps the head runs on."""
    return "fpn"

  def check_targets(self, targets: dict, b: int, m: int, hw: tuple[int, int]) -> None:
    """Nothing beyond boxes and classes."""

  def check_config(self) -> None:
    """The subclass's own field checks (ValueErrors naming the field)."""

  # The subclass's parts, called inside __call__ (their submodules are the model's). These
  # are the abstract interface, not stubs: RetinaNet and FCOS define all three; a subclass
  # that misses one is told which (flax modules are dataclasses, so no abc here).
  def head_outputs(self, maps: list[jax.Array], num_anchors: int, train: bool) -> dict:
    """The head module on the FPN maps: its outputs, `cls_logits` `[B, N, C + 1]` first."""
    raise self._missing("head_outputs")

  def losses(self, outputs: dict, anchors: jax.Array, level_sizes: list[int],
             targets: dict) -> tuple[dict, dict]:
    """`(losses, intermediates to add)`."""
    raise self._missing("losses")

  def scores_and_boxes(self, outputs: dict, anchors: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Test-time scores `[B, N, C]` (classes 1..C) and boxes `[B, N, 4]`."""
    raise self._missing("scores_and_boxes")

  def features(self, images: jax.Array, train: bool):
    """`(maps (finest first), anchors [N, 4], level_sizes, anchors per location)`: the ResNet +
    FPN (torchvision's _resnet_fpn_extractor(returned_layers=[2, 3, 4]): C3..C5, then P6,
    P7) and the anchors of `anchor_sizes` / `aspect_ratios`."""
    fpn = FPN(self.fpn_channels, self.fpn_extra, None, self.dtype, name="fpn")
    return features_and_anchors(self, images, fpn, train, returned_stages=(2, 3, 4))

  def select(self, scores: jax.Array, boxes: jax.Array, level_sizes: list[int],
             image_hw: jax.Array) -> dict:
    """The test-time selection: per level top-k, class-aware NMS (torchvision's RetinaNet and
    FCOS `postprocess_detections`)."""
    return dense_detections(scores, boxes, level_sizes, image_hw,
                            score_thresh=self.score_thresh,
                            topk_candidates=self.topk_candidates, nms_thresh=self.nms_thresh,
                            detections_per_img=self.detections_per_img)

  def _missing(self, hook: str) -> TypeError:
    return TypeError(f"{type(self).__name__} is a DenseDetector without its own {hook}(): a "
                     f"dense detector says its head_outputs, losses and scores_and_boxes "
                     f"(see RetinaNet, FCOS)")

  @nn.compact
  def __call__(self, images: jax.Array, image_hw: jax.Array | None = None,
               targets: dict | None = None, train: bool = False):
    self.check_config()
    check_detector_inputs(self, images, image_hw, targets, train, self.size_multiple)
    image_hw = full_image_hw(images, image_hw)
    maps, anchors, level_sizes, num_anchors = self.features(images, train)
    outputs = self.head_outputs(maps, num_anchors, train)
    aux = {self.maps_key: maps, "anchors": anchors, **outputs}
    if train:
      losses, extra = self.losses(outputs, anchors, level_sizes, targets)
      return losses, {**aux, **extra}
    scores, boxes = self.scores_and_boxes(outputs, anchors)
    return self.select(scores, boxes, level_sizes, image_hw), aux
