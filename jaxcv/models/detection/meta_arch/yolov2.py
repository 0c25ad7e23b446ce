"""YOLOv2 (Redmon & Farhadi 2017, "YOLO9000: Better, Faster, Stronger"), built from darknet
cfg text as YOLOv3 (`meta_arch/yolo.py`): darknet's cfg/yolov2-voc.cfg for any number of
classes, its [region] layer's decode, darknet's region loss, and class-aware NMS.

    model = jaxcv.models.create("yolov2", num_classes=20)
    variables = jaxcv.weights.darknet.read_weights("yolov2-voc.weights", model.darknet)
    dets, aux = model.apply(variables, images, image_hw)                    # evaluation
    losses, aux = model.apply(variables, images, image_hw, targets, train=True,
                              mutable=["batch_stats"])[0]                   # training

The network (`yolov2_voc_cfg`): Darknet-19's 18 convolutions (3x3 and 1x1, BatchNorm and
leaky 0.1) with 5 max pools, then two 3x3x1024 convolutions, the passthrough (a [route] back
to the 26x26x512 layer 16, a 1x1x64 convolution, `[reorg] stride=2` to 13x13x256, a [route]
concatenating it with the 13x13x1024 map), a 3x3x1024 convolution and the 1x1 prediction of
`A * (5 + C)` channels; the [region] layer. Params and batch_stats `layer{i}` by cfg index
(the `.weights` order, `jaxcv.weights.darknet`). `width_mult` narrows every convolution but
the prediction; `darknet_cfg` takes any cfg text with one [region] layer instead (its
`classes` must be `num_classes`; its anchors are used, so `anchors` must then be None).
`reorg_order` "darknet" (default: darknet's element order, which its `.weights` need) or
"space_to_depth" (spatially local), see `backbone.darknet.reorg`.

Anchors: `anchors` (w, h) pairs in cells of the stride-32 grid (darknet's [region] unit; 32
pixels each at any input size), default yolov2-voc.cfg's (`jaxcv.ops.anchors.
YOLOV2_VOC_ANCHORS_CELLS`, k-means on VOC); `jaxcv.ops.anchors.kmeans_anchors` on the
training boxes' pixel sizes, divided by 32, gives a data set's own (configs/yolov2_shapes.py).
Any number of anchors: the prediction has `A * (5 + C)` filters.

Outputs (darknet's [region] layer): `bx = (sigmoid(tx) + cx) * stride`, `bw = anchor_w *
exp(tw)` (`jaxcv.ops.box_coder.yolo_decode`), objectness sigmoid, class softmax. Evaluation:
score = objectness * p(class) per (prediction, class); the pairs above `score_thresh`
(strictly, as darknet's `prob > thresh`), the best `topk_candidates`, class-aware NMS at
`nms_thresh` and the best `detections_per_img`: `dense_heads.postprocess.dense_detections`
with one level (boxes clipped to `image_hw` first; a box wholly in the padding beyond
`image_hw`, empty once clipped, is never a detection). Defaults: darknet's `valid` / mAP
settings (thresh .005, NMS .45), 100 detections. Output: the detection contract (`boxes`,
`scores`, `classes` 1..C, `valid`). Intermediates: `raw` `[B, H, W, A, 5 + C]`, `boxes`
(decoded, `[B, H, W, A, 4]`), `stride`, `anchors` (`[A, 2]` pixels).

Training: `dense_heads.region_loss.region_losses` (darknet's `forward_region_layer`; terms
`loss_xy`, `loss_wh`, `loss_obj`, `loss_noobj`, `loss_cls`); `thresh`, `rescore`,
`bias_match` and the four scales are the cfg's [region] values unless set here (yolov2-voc:
thresh .6, rescore 1, bias_match 1, object_scale 5, the others 1). `prior_images` (default 0:
off) turns on darknet's early prior term (`loss_prior`, scale `prior_scale` .01) while fewer
than `prior_images` images (darknet: 12800) have been seen, counting the current batch: the
count is kept in `batch_stats/seen` (int32; only with the option on, as darknet keeps `seen`
in its .weights header), updated in every training step.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.models.detection.backbone.darknet import (REORG_ORDERS, conv_layer_names,
                                                     darknet_outputs)
from jaxcv.models.detection.backbone.darknet_cfg import DarknetCfg, _conv, _num, parse_cfg
from jaxcv.models.detection.backbone.darknet_region import options_of
from jaxcv.models.detection.dense_heads.postprocess import dense_detections
from jaxcv.models.detection.dense_heads.region_loss import region_losses
from jaxcv.models.detection.meta_arch.inputs import (TARGET_KEYS, check_detector_inputs,
                                                     full_image_hw)
from jaxcv.models.registry import register
from jaxcv.ops.anchors import YOLOV2_VOC_ANCHORS_CELLS
from jaxcv.ops.box_coder import yolo_decode
from jaxcv.ops.boxes import clip_boxes

# the cfg's literals (1.3221, 1.73145, ...; the float32 constants rounded back)
YOLOV2_VOC_ANCHORS = tuple(tuple(round(v, 6) for v in a)
                           for a in YOLOV2_VOC_ANCHORS_CELLS.tolist())
_NET = """[net]
# Testing
batch=1
subdivisions=1
# Training
# batch=64
# subdivisions=8
height={height}
width={width}
channels=3
momentum=0.9
decay=0.0005
angle=0
saturation = 1.5
exposure = 1.5
hue=.1

learning_rate=0.001
burn_in=1000
max_batches = 80200
policy=steps
steps=40000,60000
scales=.1,.1
"""
_REGION = """[region]
anchors = {anchors}
bias_match=1
classes={classes}
coords=4
num={num}
softmax=1
jitter=.3
rescore=1

object_scale=5
noobject_scale=1
class_scale=1
coord_scale=1

absolute=1
thresh = .6
random=1
"""


def yolov2_voc_cfg(num_classes: int = 20, width: int = 416, height: int | None = None,
                   width_mult: float = 1.0, anchors=YOLOV2_VOC_ANCHORS) -> str:
  """The text of darknet's cfg/yolov2-voc.cfg for `num_classes` (the last convolution has
  `len(anchors) * (5 + num_classes)` filters; 125 for VOC). `width_mult` scales every other
  convolution's filters (`max(1, round(f * width_mult))`; the passthrough's 64 must stay
  divisible by 4 for darknet's reorg); `anchors` (w, h) pairs in grid cells. 32 layers:
  convolutions 0-24, 26, 29, 30, max pools 1, 3, 7, 11, 17, routes 25 (-> 16) and 28
  (-> 27, 24), reorg 27, region 31."""
  if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) \
      or num_classes < 1:
    raise ValueError(f"yolov2_voc_cfg: num_classes must be a positive int; got {num_classes!r}")
  if not float(width_mult) > 0:
    raise ValueError(f"yolov2_voc_cfg: width_mult must be > 0; got {width_mult!r}")
  a = np.asarray(anchors, np.float64)
  if a.ndim != 2 or a.shape[1] != 2 or len(a) < 1 or not np.all(np.isfinite(a)) \
      or not np.all(a > 0):
    raise ValueError(f"yolov2_voc_cfg: anchors must be positive (w, h) pairs in grid cells; "
                     f"got shape {a.shape}")
  f = lambda c: max(1, int(round(c * width_mult)))  # noqa: E731
  parts = [_NET.format(width=width, height=height or width)]
  for k, block in enumerate(((32,), (64,), (128, 64, 128), (256, 128, 256),
                             (512, 256, 512, 256, 512), (1024, 512, 1024, 512, 1024))):
    if k:
      parts.append("[maxpool]\nsize=2\nstride=2\n")
    parts += [_conv(f(c), 3 if i % 2 == 0 else 1) for i, c in enumerate(block)]
  parts += ["\n#######\n", _conv(f(1024), 3), _conv(f(1024), 3), "[route]\nlayers=-9\n",
            _conv(f(64), 1), "[reorg]\nstride=2\n", "[route]\nlayers=-1,-4\n",
            _conv(f(1024), 3), _conv(len(a) * (5 + num_classes), 1, bn=False,
                                     activation="linear"),
            _REGION.format(anchors=", ".join(f"{_num(w)},{_num(h)}" for w, h in a.tolist()),
                           classes=num_classes, num=len(a))]
  return "\n".join(parts)


YOLOV2_VOC_CFG = yolov2_voc_cfg()   # 416x416, 20 classes (cfg/yolov2-voc.cfg)
REGION_OPTIONS = ("thresh", "object_scale", "noobject_scale", "class_scale", "coord_scale",
                  "rescore", "bias_match")


class YOLOv2(nn.Module):
  """YOLOv2 from a darknet cfg (module docstring)."""
  num_classes: int
  darknet_cfg: str | None = None
  width_mult: float = 1.0
  anchors: Sequence[Sequence[float]] | None = None
  reorg_order: str = "darknet"
  # test (darknet's validation settings)
  score_thresh: float = 0.005
  nms_thresh: float = 0.45
  topk_candidates: int = 1000
  detections_per_img: int = 100
  # training: None takes the cfg's [region] value
  thresh: float | None = None
  object_scale: float | None = None
  noobject_scale: float | None = None
  class_scale: float | None = None
  coord_scale: float | None = None
  rescore: bool | None = None
  bias_match: bool | None = None
  prior_images: int = 0
  prior_scale: float = 0.01
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  @property
  def cfg_text(self) -> str:
    name = type(self).__name__
    if self.darknet_cfg is None:
      kwargs = {} if self.anchors is None else {"anchors": self.anchors}
      try:
        return yolov2_voc_cfg(self.num_classes, width_mult=self.width_mult, **kwargs)
      except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    if not isinstance(self.darknet_cfg, str):
      raise ValueError(f"{name}: darknet_cfg must be cfg text (str); got "
                       f"{type(self.darknet_cfg).__name__}")
    if self.width_mult != 1.0 or self.anchors is not None:
      raise ValueError(f"{name}: width_mult and anchors apply to the built-in cfg; with "
                       "darknet_cfg set them in its text ([region] anchors, num, and the "
                       "filters before it)")
    return self.darknet_cfg

  @property
  def darknet(self) -> DarknetCfg:
    """The parsed cfg of this model (what `jaxcv.weights.darknet` reads and writes for)."""
    return parse_cfg(self.cfg_text)

  @property
  def region(self) -> dict:
    """The cfg's [region] layer (exactly one, and no [yolo] layer)."""
    cfg, name = self.darknet, type(self).__name__
    regions = [l for l in cfg.layers if l["type"] == "region"]
    if len(regions) != 1 or cfg.yolo_layers:
      raise ValueError(f"{name}: the cfg must have exactly one [region] layer and no [yolo] "
                       f"layer; it has {len(regions)} and {len(cfg.yolo_layers)}")
    if regions[0]["classes"] != self.num_classes:
      raise ValueError(f"{name}: the cfg's [region] has classes={regions[0]['classes']} but "
                       f"num_classes={self.num_classes}")
    return regions[0]

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
    """Nothing beyond boxes and classes (the region loss checks their shapes again)."""

  def _check_config(self) -> None:
    name = type(self).__name__
    if self.reorg_order not in REORG_ORDERS:
      raise ValueError(f"{name}: reorg_order must be one of {list(REORG_ORDERS)}; got "
                       f"{self.reorg_order!r}")
    for field in ("score_thresh", "nms_thresh"):
      v = getattr(self, field)
      if not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{name}: {field} must be in [0, 1]; got {v!r}")
    for field in ("topk_candidates", "detections_per_img"):
      v = getattr(self, field)
      if not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: {field} must be a positive int; got {v!r}")
    if not isinstance(self.prior_images, (int, np.integer)) or self.prior_images < 0:
      raise ValueError(f"{name}: prior_images must be an int >= 0 (0: no prior loss; "
                       f"darknet: 12800); got {self.prior_images!r}")

  def region_options(self) -> dict:
    """The loss options: the cfg's [region] values, overridden by the fields set."""
    opts = options_of(self.region)
    opts.update({k: getattr(self, k) for k in REGION_OPTIONS if getattr(self, k) is not None})
    return opts

  @nn.compact
  def __call__(self, images: jax.Array, image_hw: jax.Array | None = None,
               targets: dict | None = None, train: bool = False):
    self._check_config()
    cfg, region = self.darknet, self.region
    check_detector_inputs(self, images, image_hw, targets, train, multiple=32)
    image_hw = full_image_hw(images, image_hw)
    (raw,), _ = darknet_outputs(cfg, images, train=train, frozen_stages=self.frozen_stages,
                                dtype=self.dtype, model=type(self).__name__,
                                reorg_order=self.reorg_order)
    b, h, w = images.shape[:3]
    gh, gw = raw.shape[1:3]
    if h / gh != w / gw:
      raise ValueError(f"{type(self).__name__}: the [region] grid {gh}x{gw} has different "
                       f"strides along H and W for a {h}x{w} input")
    stride = h / gh
    anchors = jnp.asarray(region["anchors"], jnp.float32) * stride
    boxes = yolo_decode(raw[..., :4], stride, anchors)
    aux = {"raw": raw, "boxes": boxes, "stride": stride, "anchors": anchors}
    seen = (self.variable("batch_stats", "seen", lambda: jnp.zeros((), jnp.int32))
            if self.prior_images > 0 else None)
    if train:
      prior = None
      if seen is not None:   # darknet counts the current batch before its forward pass
        now = seen.value + b
        if not self.is_initializing():
          seen.value = now
        prior = jnp.where(now < self.prior_images, jnp.float32(self.prior_scale), 0.0)
      losses = region_losses(raw, stride, anchors, targets, (h, w), prior_scale=prior,
                             **self.region_options())
      return losses, aux
    obj = jax.nn.sigmoid(raw[..., 4])
    probs = jax.nn.softmax(raw[..., 5:], axis=-1)
    flat = boxes.reshape(b, -1, 4)
    hw = image_hw.astype(jnp.float32)
    clipped = clip_boxes(flat, hw[:, :1], hw[:, 1:])
    inside = (clipped[..., 2] > clipped[..., 0]) & (clipped[..., 3] > clipped[..., 1])
    scores = (obj[..., None] * probs).reshape(b, -1, self.num_classes)
    scores = jnp.where(inside[..., None], scores, 0.0)   # wholly in the padding: never kept
    dets = dense_detections(scores, flat, (scores.shape[1],), image_hw,
                            score_thresh=self.score_thresh, topk_candidates=self.topk_candidates,
                            nms_thresh=self.nms_thresh,
                            detections_per_img=self.detections_per_img)
    return dets, aux


register("yolov2", YOLOv2)
# Narrow variant for tests and small data (every convolution but the prediction at 1/8 of the
# width: 4..128 channels, the passthrough 8).
register("yolov2_w8", functools.partial(YOLOv2, width_mult=0.125))
