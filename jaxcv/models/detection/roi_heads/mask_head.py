"""Mask R-CNN's mask branch (He et al. 2017) as torchvision's `MaskRCNNHeads`,
`MaskRCNNPredictor`, `maskrcnn_loss` and `maskrcnn_inference`, with static shapes.

- `MaskRCNNHeads`: 3x3 convs (256 each, four) with ReLU on the 14x14 RoI features; v2 puts a
  BatchNorm after each conv (torchvision's `maskrcnn_resnet50_fpn_v2`), its training
  statistics over the valid RoIs only.
- `MaskRCNNPredictor`: `conv5_mask` (ConvTranspose 2x2, stride 2) + ReLU, `mask_fcn_logits`
  (1x1 conv to `num_classes + 1` channels, background at 0): logits `[K, 28, 28, C + 1]`.
- `mask_targets`: each positive's matched ground-truth mask RoI-aligned into its proposal
  (torchvision's `project_masks_on_boxes`: `roi_align(mask, box, 28, spatial_scale 1,
  sampling_ratio -1, aligned False)`). The adaptive sampling grid `ceil(roi_side / 28)` is
  data-dependent; a proposal lies inside the canvas, so `ceil(canvas_side / 28)` bounds it
  and the static grid is exact. Computed as two matrix products per RoI
  (`jaxcv.ops.roi_separable.roi_align_maps`, the same numbers as the gather form of
  `roi_align`, which at 128 px took 0.6 s of a 2 s training step on 2 cores).
- `mask_loss`: binary cross-entropy on the matched class's channel, mean over the positives'
  pixels (0 without positives, as torchvision's `mask_logits.sum() * 0`).
- `mask_probs`: sigmoid of the predicted class's channel (`maskrcnn_inference`), `[.., 28, 28]`;
  pasting into the image is `jaxcv.ops.paste_masks_in_image` (see the meta-architecture).

Init as torchvision: kaiming normal (fan_out, ReLU gain) for every conv weight, zero biases.
For the transposed conv torch's fan_out is `in_channels * k * k` (its weight is `[in, out,
k, k]`), which `transpose_fan_out` reproduces on jaxcv's `[k, k, in, out]` kernel.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxcv.layers.conv_norm_act import kaiming_fan_out, torch_conv
from jaxcv.layers.conv_variants import ConvTranspose
from jaxcv.models.detection.roi_heads.box_head import conv_norm_relu_stack
from jaxcv.ops.roi_separable import roi_align_maps

# torch's kaiming_normal_(mode="fan_out") on a ConvTranspose2d weight [in, out, k, k]: its
# "fan_out" is in * k * k, the input-channel axis of jaxcv's [k, k, in, out] kernel
transpose_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal", in_axis=-1,
                                                     out_axis=-2)


class MaskRCNNHeads(nn.Module):
  layers: Sequence[int] = (256, 256, 256, 256)
  dilation: int = 1
  norm: str | None = None
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None):
    return conv_norm_relu_stack(x, self.layers, self.norm, self.num_groups, train, mask,
                                self.dtype, self.dilation)


class MaskRCNNPredictor(nn.Module):
  num_classes: int  # objects, without the background
  dim_reduced: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = ConvTranspose(self.dim_reduced, kernel_size=2, strides=2, padding=0, dtype=self.dtype,
                      kernel_init=transpose_fan_out, name="conv5_mask")(x)
    x = nn.relu(x)
    x = torch_conv(self.num_classes + 1, 1, use_bias=True, dtype=self.dtype,
                   kernel_init=kaiming_fan_out, name="mask_fcn_logits")(x)
    return x.astype(jnp.float32)


def exact_sampling_bound(canvas_hw: Sequence[int], size: int) -> int:
  """The largest adaptive RoI Align grid `ceil(roi_side / size)` of an RoI in the canvas."""
  return max(1, math.ceil(max(int(canvas_hw[0]), int(canvas_hw[1])) / size))


def mask_targets(gt_masks, rois, matched, size: int = 28,
                 max_sampling_ratio: int | None = None) -> jax.Array:
  """Ground-truth masks projected on their RoIs (torchvision's `project_masks_on_boxes`).

  Args: gt_masks `[B, M, H, W]` (bool or {0, 1}) in canvas pixels, rois `[B, P, 4]`,
  matched int `[B, P]` (the ground-truth row of each RoI), `size` the target side,
  `max_sampling_ratio` the static bound of the adaptive grid (default: exact for the canvas).
  Returns float32 `[B, P, size, size]` in [0, 1]."""
  b, m, h, w = gt_masks.shape
  p = rois.shape[1]
  bound = max_sampling_ratio or exact_sampling_bound((h, w), size)
  index = (jnp.arange(b, dtype=jnp.int32)[:, None] * m + matched.astype(jnp.int32)).reshape(-1)
  out = roi_align_maps(gt_masks.reshape(b * m, h, w), jax.lax.stop_gradient(rois).reshape(-1, 4),
                       index, size, 1.0, sampling_ratio=-1, aligned=False,
                       max_sampling_ratio=bound)
  return out.reshape(b, p, size, size)


def _class_channel(mask_logits, classes):
  """`[..., S, S, C + 1]` logits, int `[...]` classes -> `[..., S, S]` that class's channel."""
  idx = jnp.maximum(classes, 0).astype(jnp.int32)[..., None, None, None]
  return jnp.take_along_axis(mask_logits, idx, axis=-1)[..., 0]


def mask_loss(mask_logits, labels, targets, positive) -> jax.Array:
  """torchvision's `maskrcnn_loss`. Args: mask_logits `[B, P, S, S, C + 1]`, labels int
  `[B, P]` (the matched classes), targets `[B, P, S, S]`, positive bool `[B, P]`."""
  logit = _class_channel(mask_logits, labels)
  bce = optax.sigmoid_binary_cross_entropy(logit, targets).sum((-2, -1))
  s = mask_logits.shape[-2] * mask_logits.shape[-3]
  count = jnp.maximum(positive.sum() * s, 1).astype(jnp.float32)
  return jnp.sum(jnp.where(positive, bce, 0.0)) / count


def mask_probs(mask_logits, classes) -> jax.Array:
  """torchvision's `maskrcnn_inference`: the sigmoid of each detection's class channel.
  Args: mask_logits `[B, D, S, S, C + 1]`, classes `[B, D]` (1..C). Returns `[B, D, S, S]`."""
  return jax.nn.sigmoid(_class_channel(mask_logits, classes))
