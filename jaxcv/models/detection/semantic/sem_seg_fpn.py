"""Panoptic FPN's semantic branch (Kirillov et al. 2019) exactly as detectron2's
`SemSegFPNHead` (`detectron2/modeling/meta_arch/semantic_seg.py`), its loss, and its training
labels made from the panoptic batch keys.

Why: Panoptic FPN adds this light head to Mask R-CNN's FPN; the meta-architecture calls the
head, `sem_seg_loss` in training and `jaxcv.models.detection.semantic.panoptic_merge` at test
time. Written layer for layer as detectron2, so that its weights convert one to one.

Head, for input maps finest first with strides `feature_strides` (P2..P5: 4, 8, 16, 32):
- per level of stride s, `max(1, log2(s / common_stride))` blocks of 3x3 conv (`conv_dims`,
  bias only without a norm) + GroupNorm(32, eps 1e-5) + ReLU, each block followed by a 2x
  bilinear upsampling (align_corners=False) when s != common_stride: P2 one block, P3 one
  block + up, P4 two, P5 three; every level ends at stride `common_stride`;
- the levels' outputs summed, a 1x1 conv with bias (`predictor`) to `num_classes` logits;
- bilinear upsampling (align_corners=False) by `common_stride`: logits at the input size.
  detectron2 does this last step in both its loss and its inference, so the module does it.
Every conv is initialised as detectron2's `c2_msra_fill` (kaiming normal, fan_out, ReLU gain;
bias 0); GroupNorm scale 1, bias 0. Strides must be `common_stride * 2^k` (detectron2 would
build a head for others whose levels cannot be summed).

Params, with the map from detectron2's `sem_seg_head.*` (l = log2(stride): P2 for stride 4,
detectron2's feature names; k = the block):
- `p{l}_{k}/conv/kernel` <- `p{l}.{j}.weight` (OIHW -> HWIO), j = 2k on upsampled levels (the
  torch Sequential interleaves the nn.Upsample modules), j = k on the common-stride level;
  `p{l}_{k}/conv/bias` <- `p{l}.{j}.bias` only when `norm` is None;
- `p{l}_{k}/norm/scale`, `p{l}_{k}/norm/bias` <- `p{l}.{j}.norm.weight`, `.norm.bias`;
- `predictor/kernel`, `predictor/bias` <- `predictor.weight`, `predictor.bias`.

Semantic classes (detectron2's Panoptic FPN convention, `datasets/prepare_panoptic_fpn.py`):
label 0 is every thing pixel (crowd regions included), labels 1..S the stuff classes in the
order of `stuff_classes`, `ignore_value` (255) the void pixels; the head's `num_classes` is
S + 1. For `shapes`: wall (panoptic class NUM_CLASSES + 1 = 6) -> 1, ground (7) -> 2, things
-> 0, so num_classes = 3 (`SHAPES_STUFF_CLASSES`). The labels come from the `panoptic` map and
its segment arrays, not from `semantic`: shapes' `semantic` is 0 on both wall and ground, so
it cannot tell the two stuff classes apart.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.layers.conv_norm_act import ConvNormAct, torch_conv
from jaxcv.layers.norm import norm_layer
from jaxcv.layers.upsample import resize
from jaxcv.ops.common import is_concrete

# detectron2's c2_msra_fill: kaiming_normal_(mode="fan_out", nonlinearity="relu"), bias 0.
c2_msra_fill = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# The panoptic classes of shapes' stuff, wall and ground (jaxcv.data.shapes_scene WALL_CLASS,
# GROUND_CLASS = NUM_CLASSES + 1, + 2; written out so that models import no data module).
SHAPES_STUFF_CLASSES = (6, 7)
NORMS = ("GN", None)


def head_length(stride: int, common_stride: int = 4) -> int:
  """Conv blocks of a level: detectron2's `max(1, int(log2(stride) - log2(common_stride)))`."""
  return max(1, int(np.log2(stride) - np.log2(common_stride)))


def _check_strides(strides: Sequence[int], common_stride: int) -> None:
  if common_stride < 1 or len(strides) == 0:
    raise ValueError(f"SemSegFPNHead needs strides and common_stride >= 1; got "
                     f"feature_strides={tuple(strides)}, common_stride={common_stride}")
  for s in strides:
    ratio = s // common_stride if s % common_stride == 0 else 0
    if ratio < 1 or ratio & (ratio - 1):
      raise ValueError(f"SemSegFPNHead feature_strides must be common_stride * 2^k (k >= 0); "
                       f"got {s} with common_stride {common_stride}")


class SemSegFPNHead(nn.Module):
  """FPN maps `[B, H/s, W/s, C_l]` (finest first, strides `feature_strides`) -> logits
  float32 `[B, H, W, num_classes]`, H = the finest map's height times its stride. See the
  module docstring."""
  num_classes: int
  feature_strides: Sequence[int] = (4, 8, 16, 32)
  conv_dims: int = 128
  common_stride: int = 4
  norm: str | None = "GN"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[jax.Array]) -> jax.Array:
    strides = tuple(int(s) for s in self.feature_strides)
    _check_strides(strides, self.common_stride)
    if self.norm not in NORMS:
      raise ValueError(f"SemSegFPNHead norm must be one of {list(NORMS)}; got {self.norm!r}")
    if self.norm == "GN" and self.conv_dims % 32:
      raise ValueError(f"SemSegFPNHead: GroupNorm(32) needs conv_dims divisible by 32; got "
                       f"{self.conv_dims}")
    if self.num_classes < 1:
      raise ValueError(f"SemSegFPNHead num_classes must be >= 1; got {self.num_classes}")
    if not isinstance(features, (list, tuple)) or len(features) != len(strides):
      raise ValueError(f"SemSegFPNHead expects a list of {len(strides)} maps (strides "
                       f"{strides}); got {type(features).__name__} of "
                       f"{len(features) if isinstance(features, (list, tuple)) else '?'}")
    shapes = [tuple(f.shape) for f in features]
    if any(len(s) != 4 for s in shapes):
      raise ValueError(f"SemSegFPNHead maps must be NHWC [B, H, W, C]; got shapes {shapes}")
    # Each level ends at stride common_stride: H_l * s_l / common_stride rows, the same for all.
    ends = {(s[0], s[1] * st, s[2] * st) for s, st in zip(shapes, strides)}
    if len(ends) != 1:
      raise ValueError(f"SemSegFPNHead: maps {shapes} do not have the sizes of strides "
                       f"{strides} of one image batch (H_l * stride_l must agree)")

    norm = norm_layer("group" if self.norm == "GN" else None, False, self.dtype, num_groups=32)
    total = None
    for f, s in zip(features, strides):
      level = round(math.log2(s))
      upsample = s != self.common_stride
      x = f
      for k in range(head_length(s, self.common_stride)):
        x = ConvNormAct(self.conv_dims, 3, norm=norm, act=nn.relu, use_bias=norm is None,
                        kernel_init=c2_msra_fill, norm_name="norm", dtype=self.dtype,
                        name=f"p{level}_{k}")(x)
        if upsample:
          x = resize(x, (2 * x.shape[1], 2 * x.shape[2]), "bilinear", align_corners=False)
      total = x if total is None else total + x
    x = torch_conv(self.num_classes, 1, use_bias=True, dtype=self.dtype,
                   kernel_init=c2_msra_fill, name="predictor")(total)
    x = x.astype(jnp.float32)
    cs = self.common_stride
    return resize(x, (cs * x.shape[1], cs * x.shape[2]), "bilinear", align_corners=False)


def sem_seg_loss(logits: jax.Array, labels: jax.Array, ignore_value: int = 255,
                 loss_weight: float = 1.0) -> jax.Array:
  """detectron2's `loss_sem_seg`: `F.cross_entropy(reduction="mean", ignore_index)` times
  `loss_weight`, i.e. the mean over the non-ignored pixels of -log softmax(logits)[label].

  logits: float `[B, H, W, K]` (the head's output); labels: int `[B, H, W]`, 0..K-1 or
  `ignore_value`. An all-ignored batch gives 0 with zero gradients (torch gives NaN, 0 / 0).
  Labels outside 0..K-1 other than `ignore_value` (torch raises) are a ValueError for concrete
  labels; under jit they are ignored like `ignore_value`. Returns a float32 scalar.
  """
  logits = jnp.asarray(logits)
  raw_labels, labels = labels, jnp.asarray(labels)
  if logits.ndim != 4 or labels.shape != logits.shape[:3]:
    raise ValueError(f"sem_seg_loss expects logits [B, H, W, K] and labels [B, H, W]; got "
                     f"{tuple(logits.shape)} and {tuple(labels.shape)}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"sem_seg_loss labels must be integers; got {labels.dtype}")
  k = logits.shape[-1]
  if is_concrete(raw_labels):  # checked in NumPy: inside a jit trace jnp ops give tracers
    lab = np.asarray(raw_labels)
    bad = lab[(lab != ignore_value) & ((lab < 0) | (lab >= k))]
    if bad.size:
      raise ValueError(f"sem_seg_loss: labels {np.unique(bad)[:10].tolist()} are outside "
                       f"0..{k - 1} and not ignore_value {ignore_value}")
  keep = (labels != ignore_value) & (labels >= 0) & (labels < k)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, jnp.where(keep, labels, 0)[..., None], axis=-1)[..., 0]
  total = jnp.sum(jnp.where(keep, nll, 0.0))
  return loss_weight * total / jnp.maximum(jnp.sum(keep), 1).astype(jnp.float32)


def _image_labels(panoptic, ids, classes, isthing, valid, stuff, ignore_value):
  """One image: `[H, W]` semantic labels (see `semantic_labels`)."""
  if stuff.shape[0]:
    is_stuff = classes[:, None] == stuff[None, :]
    stuff_label = jnp.where(is_stuff.any(1), jnp.argmax(is_stuff, 1) + 1, ignore_value)
  else:  # no stuff classes: every stuff segment is ignored
    stuff_label = jnp.full(classes.shape, ignore_value)
  seg_label = jnp.where(isthing, 0, stuff_label)
  # Segment lookup by sorted ids (the `_slots` rule of jaxcv.metrics.panoptic).
  big = jnp.iinfo(jnp.int32).max
  key = jnp.where(valid & (ids > 0), ids, big)
  order = jnp.argsort(key)
  sorted_key = key[order]
  pos = jnp.clip(jnp.searchsorted(sorted_key, panoptic), 0, ids.shape[0] - 1)
  hit = (sorted_key[pos] == panoptic) & (sorted_key[pos] != big) & (panoptic != 0)
  return jnp.where(hit, seg_label[order[pos]], ignore_value).astype(jnp.int32)


def semantic_labels(panoptic, segment_ids, segment_classes, segment_isthing,
                    segment_valid=None, *, stuff_classes: Sequence[int],
                    ignore_value: int = 255) -> jax.Array:
  """Panoptic FPN's semantic training labels from a panoptic map and its segments.

  Per pixel, for the valid segment whose id it holds: 0 for a thing segment (crowd ones
  included, as detectron2's `prepare_panoptic_fpn.py`), `k + 1` for a stuff segment of class
  `stuff_classes[k]`; `ignore_value` for void (id 0) and ids without a valid segment.

  panoptic: int `[H, W]` or `[B, H, W]`; segment_*: `[S]` or `[B, S]` (the batch keys;
  `segment_valid` default all True); stuff_classes: the panoptic class of each stuff label,
  in label order (`SHAPES_STUFF_CLASSES` for shapes). A valid stuff segment whose class is not
  in `stuff_classes` is a ValueError for concrete inputs; under jit its pixels are ignored.
  Jit-able; returns int32 of `panoptic`'s shape.
  """
  pan = jnp.asarray(panoptic)
  ids, cls = jnp.asarray(segment_ids), jnp.asarray(segment_classes)
  thing = jnp.asarray(segment_isthing).astype(bool)
  valid = (jnp.ones(ids.shape, bool) if segment_valid is None
           else jnp.asarray(segment_valid).astype(bool))
  if pan.ndim not in (2, 3) or ids.ndim != pan.ndim - 1 or ids.shape[:-1] != pan.shape[:-2]:
    raise ValueError(f"semantic_labels expects panoptic [H, W] with segments [S], or "
                     f"[B, H, W] with [B, S]; got {tuple(pan.shape)} and {tuple(ids.shape)}")
  for name, x in (("segment_classes", cls), ("segment_isthing", thing),
                  ("segment_valid", valid)):
    if x.shape != ids.shape:
      raise ValueError(f"semantic_labels: {name} has shape {tuple(x.shape)}, segment_ids "
                       f"{tuple(ids.shape)}")
  if not (jnp.issubdtype(pan.dtype, jnp.integer) and jnp.issubdtype(ids.dtype, jnp.integer)
          and jnp.issubdtype(cls.dtype, jnp.integer)):
    raise ValueError(f"semantic_labels: panoptic, segment_ids and segment_classes must be "
                     f"integers; got {pan.dtype}, {ids.dtype}, {cls.dtype}")
  stuff = np.asarray(stuff_classes, np.int64).reshape(-1)
  if len(set(stuff.tolist())) != len(stuff):
    raise ValueError(f"semantic_labels: stuff_classes must be distinct; got {stuff.tolist()}")
  if is_concrete(segment_classes, segment_isthing, segment_valid):  # NumPy, as in a trace
    c, t = np.asarray(segment_classes), np.asarray(segment_isthing).astype(bool)
    v = np.ones(c.shape, bool) if segment_valid is None else np.asarray(segment_valid, bool)
    unknown = c[v & ~t & ~np.isin(c, stuff)]
    if unknown.size:
      raise ValueError(f"semantic_labels: stuff segments of classes "
                       f"{np.unique(unknown)[:10].tolist()} not in stuff_classes "
                       f"{stuff.tolist()}")
  fn = lambda p, i, c, t, v: _image_labels(p.astype(jnp.int32), i.astype(jnp.int32),
                                           c.astype(jnp.int32), t, v,
                                           jnp.asarray(stuff, jnp.int32), ignore_value)
  if pan.ndim == 3:
    fn = jax.vmap(fn)
  return fn(pan, ids, cls, thing, valid)


def semantic_targets(batch: Mapping[str, Any], stuff_classes: Sequence[int] =
                     SHAPES_STUFF_CLASSES, ignore_value: int = 255) -> jax.Array:
  """`semantic_labels` of a batch or example dict with the keys `panoptic`, `segment_ids`,
  `segment_classes`, `segment_isthing` (and optionally `segment_valid`); by default with
  shapes' stuff classes (wall -> 1, ground -> 2, things -> 0)."""
  need = ("panoptic", "segment_ids", "segment_classes", "segment_isthing")
  missing = [k for k in need if k not in batch]
  if missing:
    raise ValueError(f"semantic_targets needs the keys {list(need)}; missing {missing} (load "
                     f"the data with keys=(..., 'panoptic', 'segment_ids', ...))")
  return semantic_labels(batch["panoptic"], batch["segment_ids"], batch["segment_classes"],
                         batch["segment_isthing"], batch.get("segment_valid"),
                         stuff_classes=stuff_classes, ignore_value=ignore_value)
