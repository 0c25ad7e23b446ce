"""Mask R-CNN (He et al. 2017) exactly as torchvision's `MaskRCNN`: Faster R-CNN with FPN
(`faster_rcnn.py`) plus a mask branch on its RoIs (`roi_heads/mask_head.py`):
`maskrcnn_resnet50_fpn`, `maskrcnn_resnet50_fpn_v2` (BatchNorm mask head), and
small-backbone variants.

    model = jaxcv.models.create("maskrcnn_resnet50_fpn", num_classes=90)
    dets, aux = model.apply(variables, images, image_hw)
    masks = paste_masks(dets, images.shape[1:3])     # [B, D, H, W] bool, canvas pixels

Training targets add `masks` bool `[B, M, H, W]` (the canvas's pixels) to Faster R-CNN's;
the losses add `loss_mask`. The mask head runs on the sampled positives (the first
`positive_slots` of the sample, padding masked), as torchvision's on `labels > 0`.

Evaluation adds `mask_probs [B, D, 28, 28]` (the sigmoid of each detection's class channel,
torchvision's `maskrcnn_inference`), not pasted masks: D x 28 x 28 floats per image instead
of D x H x W (at 800 x 1333 and D = 100, 0.3 MB instead of 427 MB), so the detector's
memory does not grow with the image. `paste_masks` (jaxcv.ops.paste_masks_in_image, the
same numbers as torchvision's `paste_masks_in_image`) pastes them where they are needed:
the `instance` task at the canvas size, the predict command at each image's original size.
`intermediates` add `mask_logits [B, D, 28, 28, C + 1]`.

Params add `mask_head` (`conv0`..`conv3`, v2 `bn0`..`bn3`) and `mask_predictor`
(`conv5_mask`, `mask_fcn_logits`): torchvision's `roi_heads.mask_head.{i}.{0,1}` and
`roi_heads.mask_predictor.*`.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from jaxcv.models.detection.meta_arch.faster_rcnn import V2, FasterRCNN, HEADS, pool_rois
from jaxcv.models.detection.roi_heads.mask_head import (MaskRCNNHeads, MaskRCNNPredictor,
                                                        mask_loss, mask_probs, mask_targets)
from jaxcv.models.detection.roi_heads.sampling import positive_slots
from jaxcv.models.registry import register
from jaxcv.ops.masks import paste_masks_in_image


def positives(sample, batch_size_per_image: int, positive_fraction: float):
  """The leading slots of a `RoISample` that can hold positives:
  `(rois, labels, matched, positive)`, each `[B, P, ...]`."""
  k = min(positive_slots(batch_size_per_image, positive_fraction), sample.boxes.shape[1])
  pos = sample.valid[:, :k] & (sample.labels[:, :k] > 0)
  return sample.boxes[:, :k], sample.labels[:, :k], sample.matched[:, :k], pos


class MaskRCNN(FasterRCNN):
  """Faster R-CNN's fields plus torchvision's mask-branch arguments."""
  mask_roi_pool_size: int = 14
  mask_sampling_ratio: int = 2
  mask_layers: Sequence[int] = (256, 256, 256, 256)
  mask_dilation: int = 1
  mask_head_norm: str | None = None
  mask_dim_reduced: int = 256
  # the static bound of the adaptive RoI Align grid of the mask targets (None: exact)
  mask_target_max_sampling: int | None = None

  @property
  def target_keys(self):
    return super().target_keys + ("masks",)

  @property
  def module_names(self):
    return HEADS + ("mask_head", "mask_predictor")

  def check_targets(self, targets, b, m, hw):
    if tuple(targets["masks"].shape) != (b, m) + hw:
      raise ValueError(f"{type(self).__name__}: targets['masks'] must be [B, M, H, W] = "
                       f"{(b, m) + hw} (the canvas's pixels); got {tuple(targets['masks'].shape)}")

  def mask_logits(self, maps, rois, valid, canvas_hw, train):
    b, r, _ = rois.shape
    x = pool_rois(maps, rois, self.mask_roi_pool_size, self.mask_sampling_ratio, canvas_hw)
    x = MaskRCNNHeads(self.mask_layers, self.mask_dilation, self.mask_head_norm,
                      self.num_groups, self.dtype, name="mask_head")(
        x, train=self.head_train("mask_head", train), mask=valid.reshape(-1))
    x = MaskRCNNPredictor(self.num_classes, self.mask_dim_reduced, self.dtype,
                          name="mask_predictor")(x)
    return x.reshape((b, r) + x.shape[1:])

  def extra_losses(self, maps, sample, targets, image_hw, canvas_hw, train):
    rois, labels, matched, pos = positives(sample, self.box_batch_size_per_image,
                                           self.box_positive_fraction)
    logits = self.mask_logits(maps, rois, pos, canvas_hw, train)
    t = mask_targets(targets["masks"], rois, matched, logits.shape[2],
                     self.mask_target_max_sampling)
    return {"loss_mask": mask_loss(logits, labels, t, pos)}

  def extra_outputs(self, maps, dets, image_hw, canvas_hw, aux):
    logits = self.mask_logits(maps, dets["boxes"], dets["valid"], canvas_hw, False)
    aux["mask_logits"] = logits
    return dict(dets, mask_probs=mask_probs(logits, dets["classes"]))


def paste_masks(dets: dict, image_shape, threshold: float | None = 0.5) -> jax.Array:
  """Each detection's `mask_probs` pasted into an `image_shape` (H, W) image at its box
  (torchvision's `paste_masks_in_image`, padding 1): `[B, D, H, W]`, bool `>= threshold`
  (torchvision's evaluation threshold 0.5), or the probabilities with `threshold=None`.
  Invalid detections paste nothing. For boxes in an image's original pixels pass its
  original size (torchvision pastes after its transform maps boxes back)."""
  image_shape = tuple(int(s) for s in image_shape)
  probs = jax.vmap(lambda m, bx: paste_masks_in_image(m, bx, image_shape))(
      dets["mask_probs"], dets["boxes"])
  probs = jnp.where(dets["valid"][..., None, None], probs, 0.0)
  return probs if threshold is None else probs >= threshold


register("maskrcnn_resnet50_fpn", MaskRCNN)
register("maskrcnn_resnet50_fpn_v2", functools.partial(MaskRCNN, **V2, mask_head_norm="batch"))
register("maskrcnn_resnet18_fpn", functools.partial(MaskRCNN, backbone="resnet18"))
register("maskrcnn_resnet34_fpn", functools.partial(MaskRCNN, backbone="resnet34"))
register("maskrcnn_resnet101_fpn", functools.partial(MaskRCNN, backbone="resnet101"))
