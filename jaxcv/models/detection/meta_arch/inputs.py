"""What every detector does with its inputs before its heads. The checks (shapes are
static, so these run at trace time and raise ValueErrors naming the problem): the
normalised canvas `[B, H, W, 3]` with H, W multiples of `multiple`, `frozen_stages` among the
model's `module_names`, `image_hw` `[B, 2]`, and in training the model's `target_keys`
(at least `TARGET_KEYS`) with `[B, M, ...]` shapes, then the model's own
`check_targets(targets, B, M, (H, W))` for what it adds. Then `features_and_anchors`: the
ResNet + FPN maps and the anchor table over them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcv.models import common
from jaxcv.models.detection.backbone.resnet_fpn import resnet_fpn_features
from jaxcv.models.detection.proposal_generator.anchor_generator import (anchors_for,
                                                                       check_anchor_config)

TARGET_KEYS = ("boxes", "classes", "box_valid")   # what every detector trains on


def check_detector_inputs(model, images, image_hw, targets, train: bool,
                          multiple: int = 32) -> None:
  name = type(model).__name__
  common.check_image(images, name, multiple=multiple)
  common.check_frozen(model.frozen_stages, list(model.module_names), name)
  b = images.shape[0]
  if image_hw is not None and tuple(image_hw.shape) != (b, 2):
    raise ValueError(f"{name}: image_hw must be [B, 2] = {(b, 2)} (valid height, width); "
                     f"got shape {tuple(image_hw.shape)}")
  if not train:
    return
  if targets is None or any(k not in targets for k in model.target_keys):
    raise ValueError(f"{name} in training needs targets with keys {list(model.target_keys)}; "
                     f"got {None if targets is None else sorted(targets)}")
  m = targets["boxes"].shape[1] if targets["boxes"].ndim == 3 else -1
  for k, shape in (("boxes", (b, m, 4)), ("classes", (b, m)), ("box_valid", (b, m))):
    if tuple(targets[k].shape) != shape:
      raise ValueError(f"{name}: targets[{k!r}] must have shape {shape} [B, M, ...]; got "
                       f"{tuple(targets[k].shape)}")
  model.check_targets(targets, b, m, tuple(images.shape[1:3]))


def full_image_hw(images: jax.Array, image_hw: jax.Array | None) -> jax.Array:
  """`image_hw`, or the whole canvas for every image when it is None."""
  if image_hw is not None:
    return image_hw
  b, h, w, _ = images.shape
  return jnp.tile(jnp.array([[h, w]], jnp.int32), (b, 1))


def features_and_anchors(model, images: jax.Array, fpn, train: bool,
                         returned_stages=(1, 2, 3, 4)):
  """Inside the detector's `nn.compact` method: the FPN maps (finest first) of the model's
  ResNet (its fields `backbone`, `width`, `backbone_norm`, `norm_epsilon`, `num_groups`,
  `trainable_backbone_layers`, `frozen_stages`, `dtype`) through `fpn`, and the anchors of
  its `anchor_sizes` / `aspect_ratios` over them: `(maps, anchors [N, 4], level_sizes,
  anchors per location)`."""
  name = type(model).__name__
  maps = resnet_fpn_features(
      images.astype(model.dtype), backbone=model.backbone, width=model.width,
      norm=model.backbone_norm, norm_epsilon=model.norm_epsilon, num_groups=model.num_groups,
      trainable_layers=model.trainable_backbone_layers, frozen_stages=model.frozen_stages,
      train=train, fpn=fpn, returned_stages=returned_stages, dtype=model.dtype, model=name)
  per_location = check_anchor_config(model.anchor_sizes, model.aspect_ratios, len(maps), name)
  anchors, level_sizes = anchors_for(tuple(images.shape[1:3]), maps, model.anchor_sizes,
                                     model.aspect_ratios)
  return maps, anchors, level_sizes, per_location
