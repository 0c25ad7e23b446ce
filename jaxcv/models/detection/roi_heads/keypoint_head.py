"""Keypoint R-CNN's keypoint branch as torchvision's `KeypointRCNNHeads`,
`KeypointRCNNPredictor`, `keypointrcnn_loss` and `keypointrcnn_inference`, static-shaped.

- `KeypointRCNNHeads`: eight 3x3 convs (512, with bias) + ReLU on the 14x14 RoI features.
- `KeypointRCNNPredictor`: `kps_score_lowres` (ConvTranspose 4x4, stride 2, padding 1: 14 ->
  28) then bilinear 2x upsampling (align_corners=False): heatmap logits `[K, 56, 56, P]`
  (NHWC; torchvision's `[K, P, 56, 56]`).
- `keypoint_loss`: each positive's matched ground-truth keypoints encoded in its proposal
  (`jaxcv.ops.keypoints_to_heatmap`), cross-entropy over the 56 * 56 positions of each
  labelled keypoint inside its RoI, mean over those (0 without any, as torchvision).
- `keypoint_inference`: `jaxcv.ops.heatmaps_to_keypoints` on each detection's heatmaps:
  keypoints `[B, D, P, 3]` (x, y, 1) in canvas pixels and their scores `[B, D, P]`.

Init as torchvision: kaiming normal (fan_out, ReLU gain), zero biases (the transposed conv's
fan_out is torch's `in_channels * k * k`, see `mask_head.transpose_fan_out`).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxcv.layers.conv_variants import ConvTranspose
from jaxcv.layers.upsample import resize
from jaxcv.models.detection.roi_heads.box_head import conv_norm_relu_stack
from jaxcv.models.detection.roi_heads.mask_head import transpose_fan_out
from jaxcv.ops.keypoints import heatmaps_to_keypoints, keypoints_to_heatmap


class KeypointRCNNHeads(nn.Module):
  layers: Sequence[int] = (512,) * 8
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None):
    return conv_norm_relu_stack(x, self.layers, None, 1, train, mask, self.dtype)


class KeypointRCNNPredictor(nn.Module):
  num_keypoints: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = ConvTranspose(self.num_keypoints, kernel_size=4, strides=2, padding=1,
                      dtype=self.dtype, kernel_init=transpose_fan_out,
                      name="kps_score_lowres")(x)
    h, w = x.shape[-3:-1]
    return resize(x.astype(jnp.float32), (2 * h, 2 * w), "bilinear", align_corners=False)


def keypoint_loss(heatmap_logits, rois, gt_keypoints, matched, positive) -> jax.Array:
  """torchvision's `keypointrcnn_loss`. Args: heatmap_logits `[B, R, S, S, P]`, rois
  `[B, R, 4]` (the sampled proposals), gt_keypoints `[B, M, P, 3]` (x, y, v) in canvas pixels,
  matched int `[B, R]` (ground-truth row), positive bool `[B, R]`."""
  b, r, s, _, p = heatmap_logits.shape
  kps = jnp.take_along_axis(gt_keypoints.astype(jnp.float32),
                            matched.astype(jnp.int32)[:, :, None, None], axis=1)  # [B, R, P, 3]
  unit = jnp.array([0.0, 0.0, 1.0, 1.0])  # off the positives: a box with no division by 0
  safe = jnp.where(positive[..., None], jax.lax.stop_gradient(rois), unit)
  index, valid = keypoints_to_heatmap(kps.reshape(b * r, p, 3), safe.reshape(b * r, 4), s)
  valid = valid.reshape(b, r, p) & positive[..., None]
  logits = jnp.moveaxis(heatmap_logits, -1, 2).reshape(b, r, p, s * s)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, index.reshape(b, r, p))
  return jnp.sum(jnp.where(valid, ce, 0.0)) / jnp.maximum(valid.sum(), 1).astype(jnp.float32)


def keypoint_inference(heatmap_logits, boxes, max_size: int, roi_batch: int = 8):
  """Args: heatmap_logits `[B, D, S, S, P]`, boxes `[B, D, 4]` (the detections), `max_size`
  the static bound of a box side (the canvas side makes it exact). Returns
  `(keypoints [B, D, P, 3], scores [B, D, P])`."""
  b, d, s, _, p = heatmap_logits.shape
  kps, scores = heatmaps_to_keypoints(heatmap_logits.reshape(b * d, s, s, p),
                                      boxes.reshape(b * d, 4), max_size=max_size,
                                      roi_batch=roi_batch)
  return kps.reshape(b, d, p, 3), scores.reshape(b, d, p)
