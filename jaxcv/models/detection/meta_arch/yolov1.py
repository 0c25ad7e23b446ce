"""YOLOv1 (Redmon, Divvala, Girshick & Farhadi 2016, "You Only Look Once: Unified, Real-Time
Object Detection"): the 24-convolution network, two fully connected layers, an S x S grid
with B boxes and one set of C class probabilities per cell, the sum-squared-error loss.

    model = jaxcv.models.create("yolov1", num_classes=20)        # 448x448 input, S=7, B=2
    dets, aux = model.apply(variables, images)                    # evaluation
    losses, aux = model.apply(variables, images, None, targets, train=True,
                              rngs={"dropout": key})              # training (norm=None)

Network (`backbone.yolov1_net`): the paper's Figure 3, `width` scaling every convolution
(64: the paper's), `norm` None (the paper) or "batch"; then `head`: `fc1` (`hidden` units,
4096 in the paper, leaky ReLU 0.1), dropout (`dropout`, 0.5; the `dropout` rng in training),
`fc2` to `S * S * (5 B + C)` linear outputs, read in darknet's `detection_layer` order: the
`S*S*C` class probabilities (cell-major), the `S*S*B` confidences, the `S*S*B*4` boxes
`(x, y, w', h')` (`dense_heads.yolov1_loss` for their coding and the loss).

Input size and grid. The fully connected layers fix the input: the canvas must be exactly
`image_size` x `image_size` (default 448), any other size is a ValueError naming it. The grid
is `grid_size` (S, default 7) and the network's total stride is `image_size / grid_size`,
which must be a power of two from 2 to 64: 64 is the paper's network; a smaller stride drops
the last downsampling steps (conv22's stride first, then pool 4, pool 3, ...; see
`yolov1_net`), so a small input keeps a fine grid (128 px, S=8: stride 16). Box widths and
heights are relative to the canvas (the network input, the image the paper's resize makes).

Evaluation: class-specific scores `p(class | object) * confidence` per (cell, box, class),
boxes from the cell offsets, clipped to `image_hw`; those above `score_thresh`, the best
`topk_candidates`, class-aware NMS at `nms_thresh` and the best `detections_per_img`
(`dense_heads.postprocess.dense_detections` on one level). Output: the detection contract
(`boxes`, `scores`, `classes` 1..C, `valid`). Intermediates: `features` (the last conv map),
`class_probs [B, S, S, C]`, `confidence [B, S, S, B]`, `coords [B, S, S, B, 4]`, `boxes`
(decoded, canvas pixels, `[B, S, S, B, 4]`).

Training: `yolov1_losses` (`loss_xy`, `loss_wh`, `loss_obj`, `loss_noobj`, `loss_cls`; their
sum is the paper's loss divided by the batch size), `lambda_coord` 5, `lambda_noobj` 0.5.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.models.detection.backbone.yolov1_net import (MAX_DOWNSAMPLINGS, STAGE_NAMES, leaky,
                                                        yolov1_features)
from jaxcv.models.detection.dense_heads.postprocess import dense_detections
from jaxcv.models.detection.dense_heads.yolov1_loss import (check_wh_output, yolov1_boxes,
                                                            yolov1_losses)
from jaxcv.models.detection.meta_arch.inputs import (TARGET_KEYS, check_detector_inputs,
                                                     full_image_hw)
from jaxcv.models.registry import register


def split_outputs(out: jax.Array, grid: int, boxes_per_cell: int, num_classes: int):
  """`fc2`'s `[B, S*S*(5 Bb + C)]` in darknet's order -> class_probs `[B, S, S, C]`,
  confidence `[B, S, S, Bb]`, coords `[B, S, S, Bb, 4]`."""
  b, n, nb = out.shape[0], grid * grid, boxes_per_cell
  probs = out[:, :n * num_classes].reshape(b, grid, grid, num_classes)
  conf = out[:, n * num_classes:n * (num_classes + nb)].reshape(b, grid, grid, nb)
  coords = out[:, n * (num_classes + nb):].reshape(b, grid, grid, nb, 4)
  return probs, conf, coords


def yolov1_detections(class_probs: jax.Array, confidence: jax.Array, boxes: jax.Array,
                      image_hw: jax.Array, *, score_thresh: float, nms_thresh: float,
                      topk_candidates: int, detections_per_img: int) -> dict:
  """Test-time selection (module docstring): class_probs `[B, S, S, C]`, confidence
  `[B, S, S, Bb]`, boxes `[B, S, S, Bb, 4]` decoded (canvas pixels), image_hw `[B, 2]`."""
  b, c = class_probs.shape[0], class_probs.shape[-1]
  scores = confidence[..., None] * class_probs[:, :, :, None, :]   # [B, S, S, Bb, C]
  scores = scores.reshape(b, -1, c)
  return dense_detections(scores, boxes.reshape(b, -1, 4), [scores.shape[1]], image_hw,
                          score_thresh=score_thresh, topk_candidates=topk_candidates,
                          nms_thresh=nms_thresh, detections_per_img=detections_per_img)


class YOLOv1Head(nn.Module):
  """`fc1` (leaky ReLU 0.1), dropout, `fc2` (linear) on the flattened last map."""
  hidden: int
  outputs: int
  dropout: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    x = leaky(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x))
    if self.dropout > 0:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.outputs, dtype=self.dtype, name="fc2")(x).astype(jnp.float32)


class YOLOv1(nn.Module):
  """YOLOv1 (module docstring)."""
  num_classes: int
  image_size: int = 448
  grid_size: int = 7
  boxes_per_cell: int = 2
  width: int = 64
  hidden: int = 4096
  dropout: float = 0.5
  norm: str | None = None
  wh_output: str = "sqrt"
  lambda_coord: float = 5.0
  lambda_noobj: float = 0.5
  # test
  score_thresh: float = 0.005
  nms_thresh: float = 0.5
  topk_candidates: int = 1000
  detections_per_img: int = 100
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
    return STAGE_NAMES + ("head",)

  @property
  def stride(self) -> int:
    return self.image_size // self.grid_size

  @property
  def num_downsamplings(self) -> int:
    return int(self.stride).bit_length() - 1

  def check_targets(self, targets: dict, b: int, m: int, hw: tuple[int, int]) -> None:
    """Nothing beyond boxes and classes."""

  def _check_config(self) -> None:
    name = type(self).__name__
    for field in ("num_classes", "image_size", "grid_size", "boxes_per_cell", "width",
                  "hidden", "topk_candidates", "detections_per_img"):
      v = getattr(self, field)
      if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}: {field} must be a positive int; got {v!r}")
    s = self.stride
    if (self.image_size % self.grid_size or s & (s - 1) or not 2 <= s <= 2 ** MAX_DOWNSAMPLINGS):
      raise ValueError(f"{name}: image_size / grid_size is the network's stride and must be a "
                       f"power of two from 2 to {2 ** MAX_DOWNSAMPLINGS} (448 / 7 = 64, the "
                       f"paper's); got {self.image_size} / {self.grid_size}")
    check_wh_output(self.wh_output, name)
    for field in ("score_thresh", "nms_thresh"):
      v = getattr(self, field)
      if not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{name}: {field} must be in [0, 1]; got {v!r}")
    for field in ("lambda_coord", "lambda_noobj"):
      v = getattr(self, field)
      if not float(v) >= 0.0:
        raise ValueError(f"{name}: {field} must be >= 0; got {v!r}")

  @nn.compact
  def __call__(self, images: jax.Array, image_hw: jax.Array | None = None,
               targets: dict | None = None, train: bool = False):
    self._check_config()
    name = type(self).__name__
    check_detector_inputs(self, images, image_hw, targets, train, multiple=1)
    h, w = images.shape[1:3]
    if (h, w) != (self.image_size, self.image_size):
      raise ValueError(f"{name} needs {self.image_size}x{self.image_size} input (its "
                       f"{self.grid_size}x{self.grid_size} grid at stride {self.stride}, and "
                       f"its fully connected layers are sized for it); got {h}x{w}")
    image_hw = full_image_hw(images, image_hw)
    s, nb, c = self.grid_size, self.boxes_per_cell, self.num_classes
    features = yolov1_features(images.astype(self.dtype), width=self.width, norm=self.norm,
                               num_downsamplings=self.num_downsamplings, train=train,
                               frozen_stages=self.frozen_stages, dtype=self.dtype, model=name)
    if features.shape[1:3] != (s, s):   # the stride check above makes this hold
      raise ValueError(f"{name}: the network's output is {features.shape[1:3]}, not the "
                       f"{s}x{s} grid")
    out = YOLOv1Head(self.hidden, s * s * (5 * nb + c), self.dropout, self.dtype,
                     name="head")(features, train)
    probs, conf, coords = split_outputs(out, s, nb, c)
    boxes = yolov1_boxes(coords, (h, w), self.wh_output)
    aux = {"features": features, "class_probs": probs, "confidence": conf, "coords": coords,
           "boxes": boxes}
    if train:
      losses = yolov1_losses(probs, conf, coords, targets, (h, w), wh_output=self.wh_output,
                             lambda_coord=self.lambda_coord, lambda_noobj=self.lambda_noobj)
      return losses, aux
    dets = yolov1_detections(probs, conf, boxes, image_hw, score_thresh=self.score_thresh,
                             nms_thresh=self.nms_thresh, topk_candidates=self.topk_candidates,
                             detections_per_img=self.detections_per_img)
    return dets, aux


register("yolov1", YOLOv1)
# Narrow, with BatchNorm, for CPU training on small data (1/8 of the widths: 8..128 channels;
# 512 fully connected units): pass image_size and grid_size for a small input.
register("yolov1_w8", functools.partial(YOLOv1, width=8, hidden=512, norm="batch"))
