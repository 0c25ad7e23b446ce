"""YOLOv3 (Redmon & Farhadi 2018, "YOLOv3: An Incremental Improvement") and YOLOv3-tiny,
built from darknet cfg text, with pytorchyolo's (eriklindernoren's PyTorch-YOLOv3) test-time
selection and darknet's training loss.

    model = jaxcv.models.create("yolov3", num_classes=80)
    variables = jaxcv.weights.darknet.read_weights("yolov3.weights", model.darknet)
    dets, aux = model.apply(variables, images, image_hw)                    # evaluation
    losses, aux = model.apply(variables, images, image_hw, targets, train=True,
                              mutable=["batch_stats"])[0]                   # training

The network is the cfg's (`arch` "yolov3" / "yolov3_tiny": darknet's cfg/yolov3.cfg and
cfg/yolov3-tiny.cfg for `num_classes`, `width_mult` narrower; or any cfg text in
`darknet_cfg`, whose [yolo] classes must be `num_classes`), see
`jaxcv.models.detection.backbone.darknet`. Params and batch_stats `layer{i}` by cfg index
(the `.weights` order, `jaxcv.weights.darknet`); `frozen_stages` names such layers. Input:
the normalised canvas `[B, H, W, 3]`, H and W multiples of 32 (pytorchyolo feeds RGB in
[0, 1]: mean 0, std 1); the cfg's [net] width / height are its training size, not a
constraint. `anchors` (pixels of the input, as darknet and pytorchyolo use them at any
input size) replaces the cfg's (9 pairs for yolov3, 6 for tiny; e.g. from
`jaxcv.ops.anchors.kmeans_anchors`).

Evaluation (pytorchyolo's `YOLOLayer` in eval mode + `utils.non_max_suppression`):
boxes `jaxcv.ops.box_coder.yolo_decode` (`(sigmoid(tx) + j) * stride`, `anchor_w *
exp(tw)`), objectness and class probabilities sigmoids; a (prediction, class) pair is a
candidate when `objectness > score_thresh` and `objectness * p(class) > score_thresh`
(every such class when `multi_label`, which defaults to pytorchyolo's `num_classes > 1`;
else only the best class); score = objectness * p(class); the best `topk_candidates`
(pytorchyolo's max_nms 30000); class-aware NMS at `nms_thresh`; the best
`detections_per_img` (pytorchyolo's max_det 300). Defaults `score_thresh=0.01`,
`nms_thresh=0.4`: pytorchyolo's evaluation (test.py's conf_thres / nms_thres; its detect.py
uses 0.5 / 0.4). Boxes are clipped to `image_hw` after NMS (pytorchyolo never clips; NMS
sees its unclipped boxes), and candidates whose clipped box is empty (wholly in the
padding beyond `image_hw`) are dropped first. Output: the detection contract (`boxes`,
`scores`, `classes` 1..C, `valid`). Intermediates: `raw` (per [yolo] layer `[B, H, W, A,
5 + C]`), `boxes` (decoded, per layer `[B, H, W, A, 4]`), `strides`, `anchors` (per layer
`[A, 2]`).

Training: `dense_heads.yolo_loss.yolo_losses` (darknet's loss; `loss_xy`, `loss_wh`,
`loss_obj`, `loss_noobj`, `loss_cls`), `ignore_thresh` the cfg's unless set, `xy_loss`
"bce" (darknet's gradient) or "mse".
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.models.detection.backbone.darknet import conv_layer_names, darknet_outputs
from jaxcv.models.detection.backbone.darknet_cfg import (DarknetCfg, parse_cfg, rewrite_cfg,
                                                         yolov3_cfg, yolov3_tiny_cfg)
from jaxcv.models.detection.dense_heads.yolo_loss import XY_LOSSES, yolo_losses
from jaxcv.models.detection.meta_arch.inputs import (TARGET_KEYS, check_detector_inputs,
                                                     full_image_hw)
from jaxcv.models.registry import register
from jaxcv.ops.box_coder import yolo_decode
from jaxcv.ops.boxes import clip_boxes
from jaxcv.ops.nms import batched_nms

ARCHS = {"yolov3": yolov3_cfg, "yolov3_tiny": yolov3_tiny_cfg}


def yolo_detections(objectness: jax.Array, class_probs: jax.Array, boxes: jax.Array,
                    image_hw: jax.Array, *, score_thresh: float, nms_thresh: float,
                    topk_candidates: int, detections_per_img: int,
                    multi_label: bool) -> dict:
  """pytorchyolo's `non_max_suppression` with static shapes, per image (vmapped).

  Args: objectness `[B, N]` and class_probs `[B, N, C]` (after the sigmoid), boxes
  `[B, N, 4]` (canvas pixels, unclipped), image_hw int `[B, 2]`. Returns the detection
  dict (`boxes` clipped to image_hw, `scores` descending, `classes` 1..C, `valid`)."""
  c = class_probs.shape[-1]
  hw = image_hw.astype(jnp.float32)

  def one(obj, cls, bx, size):
    scores = obj[:, None] * cls                               # [N, C]
    if multi_label:
      cand = (obj[:, None] > score_thresh) & (scores > score_thresh)
    else:
      best = jnp.argmax(scores, axis=1)
      cand = jax.nn.one_hot(best, c, dtype=bool) & (obj > score_thresh)[:, None] & (
          scores > score_thresh)
    clipped = clip_boxes(bx, size[0], size[1])
    nonempty = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    cand = cand & nonempty[:, None]
    flat = jnp.where(cand, scores, -jnp.inf).reshape(-1)
    vals, idx = jax.lax.top_k(flat, min(topk_candidates, flat.shape[0]))
    ok = vals > -jnp.inf
    cb, cc = bx[idx // c], (idx % c + 1).astype(jnp.int32)
    cv = jnp.where(ok, vals, 0.0)
    keep, kept = batched_nms(cb, cv, cc, nms_thresh, detections_per_img, valid=ok)
    keep = jnp.maximum(keep, 0)
    return {"boxes": jnp.where(kept[:, None], clip_boxes(cb[keep], size[0], size[1]), 0.0),
            "scores": jnp.where(kept, cv[keep], 0.0),
            "classes": jnp.where(kept, cc[keep], 0), "valid": kept}

  return jax.vmap(one)(objectness, class_probs, boxes, hw)


class YOLOv3(nn.Module):
  """YOLOv3 / YOLOv3-tiny from a darknet cfg (module docstring)."""
  num_classes: int
  arch: str = "yolov3"
  darknet_cfg: str | None = None
  width_mult: float = 1.0
  anchors: Sequence[Sequence[float]] | None = None
  maxpool_pad_value: float = 0.0
  # test (pytorchyolo's evaluation settings)
  score_thresh: float = 0.01
  nms_thresh: float = 0.4
  topk_candidates: int = 30000
  detections_per_img: int = 300
  multi_label: bool | None = None
  # training
  ignore_thresh: float | None = None
  xy_loss: str = "bce"
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  @property
  def darknet(self) -> DarknetCfg:
    """The parsed cfg of this model (what `jaxcv.weights.darknet` reads and writes for)."""
    return parse_cfg(self.cfg_text)

  @property
  def cfg_text(self) -> str:
    name = type(self).__name__
    if self.darknet_cfg is not None:
      if not isinstance(self.darknet_cfg, str):
        raise ValueError(f"{name}: darknet_cfg must be cfg text (str); got "
                         f"{type(self.darknet_cfg).__name__}")
      text = self.darknet_cfg
      if self.width_mult != 1.0:
        raise ValueError(f"{name}: width_mult applies to arch's cfg, not to darknet_cfg")
      if self.anchors is not None:
        text = rewrite_cfg(text, anchors=self.anchors)
      classes = {y["classes"] for y in parse_cfg(text).yolo_layers}
      if classes != {self.num_classes}:
        raise ValueError(f"{name}: darknet_cfg's [yolo] layers have classes={sorted(classes)} "
                         f"but num_classes={self.num_classes} (rewrite it with "
                         "darknet_cfg.rewrite_cfg(text, num_classes))")
      return text
    if self.arch not in ARCHS:
      raise ValueError(f"{name}: arch must be one of {list(ARCHS)} (or give darknet_cfg); got "
                       f"{self.arch!r}")
    kwargs = {} if self.anchors is None else {"anchors": self.anchors}
    try:
      return ARCHS[self.arch](self.num_classes, width_mult=self.width_mult, **kwargs)
    except ValueError as e:
      raise ValueError(f"{name}: {e}") from None

  @property
  def max_detections(self) -> int:
    return self.detections_per_img

  @property
  def target_keys(self) -> tuple[str, ...]:
    return TARGET_KEYS

  @property
  def module_names(self) -> tuple[str, ...]:
    return conv_layer_names(self.darknet)

  def check_targets(self, targets: dict, b: int, m: int, hw: tuple[int, int]) -> None:
    """Nothing beyond boxes and classes."""

  def _check_config(self) -> None:
    name = type(self).__name__
    if self.xy_loss not in XY_LOSSES:
      raise ValueError(f"{name}: xy_loss must be one of {list(XY_LOSSES)}; got "
                       f"{self.xy_loss!r}")
    for field in ("score_thresh", "nms_thresh"):
      v = getattr(self, field)
      if not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{name}: {field} must be in [0, 1]; got {v!r}")
    if self.ignore_thresh is not None and not 0.0 <= float(self.ignore_thresh) <= 1.0:
      raise ValueError(f"{name}: ignore_thresh must be in [0, 1] or None; got "
                       f"{self.ignore_thresh!r}")
    for field in ("topk_candidates", "detections_per_img"):
      v = getattr(self, field)
      if not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: {field} must be a positive int; got {v!r}")

  @nn.compact
  def __call__(self, images: jax.Array, image_hw: jax.Array | None = None,
               targets: dict | None = None, train: bool = False):
    self._check_config()
    cfg = self.darknet
    check_detector_inputs(self, images, image_hw, targets, train, multiple=32)
    image_hw = full_image_hw(images, image_hw)
    raw, _ = darknet_outputs(cfg, images, train=train, frozen_stages=self.frozen_stages,
                             dtype=self.dtype, maxpool_pad_value=self.maxpool_pad_value,
                             model=type(self).__name__)
    h, w = images.shape[1:3]
    yolos = cfg.yolo_layers
    strides = [h / r.shape[1] for r in raw]
    layer_anchors = [jnp.asarray([y["anchors"][k] for k in y["mask"]], jnp.float32)
                     for y in yolos]
    boxes = [yolo_decode(r[..., :4], s, a) for r, s, a in zip(raw, strides, layer_anchors)]
    aux = {"raw": raw, "boxes": boxes, "strides": strides, "anchors": layer_anchors}
    if train:
      all_anchors = [tuple(y["anchors"]) for y in yolos]
      if len(set(all_anchors)) != 1:
        raise ValueError(f"{type(self).__name__}: the [yolo] layers list different anchors; "
                         "the assignment over all anchors needs one list")
      thresh = [y["ignore_thresh"] if self.ignore_thresh is None else self.ignore_thresh
                for y in yolos]
      losses = yolo_losses(raw, strides, jnp.asarray(all_anchors[0], jnp.float32),
                           [y["mask"] for y in yolos], thresh, targets, (h, w),
                           xy_loss=self.xy_loss)
      return losses, aux
    b = images.shape[0]
    flat = [r.reshape(b, -1, r.shape[-1]) for r in raw]
    flat_boxes = jnp.concatenate([x.reshape(b, -1, 4) for x in boxes], axis=1)
    out = jax.nn.sigmoid(jnp.concatenate(flat, axis=1))
    multi = self.num_classes > 1 if self.multi_label is None else bool(self.multi_label)
    dets = yolo_detections(out[..., 4], out[..., 5:], flat_boxes, image_hw,
                           score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
                           topk_candidates=self.topk_candidates,
                           detections_per_img=self.detections_per_img, multi_label=multi)
    return dets, aux


register("yolov3", YOLOv3)
register("yolov3_tiny", functools.partial(YOLOv3, arch="yolov3_tiny"))
# Narrow variants for tests and small data (every convolution but the predictions at 1/8
# and 1/4 of the width).
register("yolov3_w8", functools.partial(YOLOv3, width_mult=0.125))
register("yolov3_tiny_w4", functools.partial(YOLOv3, arch="yolov3_tiny", width_mult=0.25))
