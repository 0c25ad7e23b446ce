"""Panoptic FPN (Kirillov et al. 2019) as detectron2's `PanopticFPN`: Mask R-CNN with FPN
(`mask_rcnn.py`) plus a semantic branch on the same FPN (`semantic/sem_seg_fpn.py`,
detectron2's `SemSegFPNHead` on P2..P5), trained jointly; at test time the instances and the
stuff prediction merge into one panoptic map (`semantic/panoptic_merge.py`, detectron2's
`combine_semantic_and_instance_outputs`).

Semantic classes: label 0 is every "thing" pixel, labels 1..S the stuff classes
`stuff_classes` (their panoptic category ids, in label order), 255 ignored; the head has
S + 1 outputs. Training targets add the panoptic batch keys (`panoptic [B, H, W]`,
`segment_ids`, `segment_classes`, `segment_isthing`, `segment_valid [B, S]`) from which the
labels are made (`semantic_labels`; canvas pixels beyond each image's valid size are
ignored); the losses add `loss_sem_seg` (cross-entropy over the labelled pixels; its weight,
detectron2's 0.5, is the task's `config.loss`). Evaluation adds `semantic [B, H, W]` (the
argmax, 0 beyond each image's valid size, so no stuff is painted on padding); `intermediates`
add `sem_seg_logits [B, H, W, S + 1]`. The merge needs pasted masks, so it is a separate
function, `panoptic_outputs`, that the `panoptic` task runs after `paste_masks` (the
detector's memory stays bounded by D x 28 x 28 per image, as Mask R-CNN's).

Params add `sem_seg_head` (`p2_0`, `p3_0`, `p4_0..1`, `p5_0..2`, `predictor`).
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax.numpy as jnp

from jaxcv.models.detection.meta_arch.faster_rcnn import HEADS
from jaxcv.models.detection.meta_arch.mask_rcnn import MaskRCNN, paste_masks
from jaxcv.models.detection.semantic.panoptic_merge import combine_batch
from jaxcv.models.detection.semantic.sem_seg_fpn import (SemSegFPNHead, sem_seg_loss,
                                                         semantic_labels)
from jaxcv.models.registry import register

PANOPTIC_KEYS = ("panoptic", "segment_ids", "segment_classes", "segment_isthing",
                 "segment_valid")


def _inside(image_hw, shape):
  """bool `[B, H, W]`: the pixels inside each image's valid size."""
  h, w = shape
  rows = jnp.arange(h)[None, :, None] < image_hw[:, 0, None, None]
  cols = jnp.arange(w)[None, None, :] < image_hw[:, 1, None, None]
  return rows & cols


class PanopticFPN(MaskRCNN):
  """Mask R-CNN's fields plus detectron2's semantic head and merge arguments."""
  stuff_classes: Sequence[int] = ()
  sem_seg_conv_dims: int = 128
  sem_seg_norm: str | None = "GN"
  sem_seg_ignore_value: int = 255
  combine_overlap_thresh: float = 0.5
  combine_stuff_area_thresh: int = 4096
  combine_instances_score_thresh: float = 0.5

  @property
  def target_keys(self):
    return super().target_keys + PANOPTIC_KEYS

  @property
  def module_names(self):
    return HEADS + ("mask_head", "mask_predictor", "sem_seg_head")

  def check_targets(self, targets, b, m, hw):
    super().check_targets(targets, b, m, hw)
    if tuple(targets["panoptic"].shape) != (b,) + hw:
      raise ValueError(f"{type(self).__name__}: targets['panoptic'] must be [B, H, W] = "
                       f"{(b,) + hw}; got {tuple(targets['panoptic'].shape)}")

  def semantic_logits(self, maps):
    if not self.stuff_classes:
      raise ValueError(f"{type(self).__name__} needs stuff_classes (the panoptic category ids "
                       "of the stuff classes, in semantic label order 1..S)")
    return SemSegFPNHead(len(self.stuff_classes) + 1, (4, 8, 16, 32), self.sem_seg_conv_dims,
                         4, self.sem_seg_norm, self.dtype, name="sem_seg_head")(maps[:4])

  def extra_losses(self, maps, sample, targets, image_hw, canvas_hw, train):
    losses = super().extra_losses(maps, sample, targets, image_hw, canvas_hw, train)
    labels = semantic_labels(*(targets[k] for k in PANOPTIC_KEYS),
                             stuff_classes=tuple(self.stuff_classes),
                             ignore_value=self.sem_seg_ignore_value)
    labels = jnp.where(_inside(image_hw, canvas_hw), labels, self.sem_seg_ignore_value)
    logits = self.semantic_logits(maps)
    losses["loss_sem_seg"] = sem_seg_loss(logits, labels, self.sem_seg_ignore_value)
    return losses

  def extra_outputs(self, maps, dets, image_hw, canvas_hw, aux):
    dets = super().extra_outputs(maps, dets, image_hw, canvas_hw, aux)
    logits = self.semantic_logits(maps)
    aux["sem_seg_logits"] = logits
    semantic = jnp.argmax(logits, -1).astype(jnp.int32)
    return dict(dets, semantic=jnp.where(_inside(image_hw, canvas_hw), semantic, 0))


def panoptic_outputs(model: PanopticFPN, dets: dict, image_shape) -> dict:
  """The detections with `masks` (pasted, bool `[B, D, H, W]`), `panoptic [B, H, W]` and the
  merged segments (`segment_ids`, `segment_classes`, `segment_isthing`, `segment_scores`,
  `segment_area`, `segment_instance`, `segment_valid`, each `[B, D + S]`), with the model's
  thresholds. Jit-able."""
  masks = paste_masks(dets, image_shape)
  panoptic, segments = combine_batch(
      masks, dets["scores"], dets["classes"], dets["valid"], dets["semantic"],
      stuff_classes=tuple(model.stuff_classes),
      overlap_threshold=model.combine_overlap_thresh,
      stuff_area_thresh=model.combine_stuff_area_thresh,
      instances_score_thresh=model.combine_instances_score_thresh)
  out = {k: v for k, v in dets.items() if k != "mask_probs"}
  return {**out, "masks": masks, "panoptic": panoptic, **segments}


register("panopticfpn_resnet50_fpn", PanopticFPN)
register("panopticfpn_resnet18_fpn", functools.partial(PanopticFPN, backbone="resnet18"))
