"""Losses for detection and segmentation as pure jnp functions (jit, vmap and grad safe).

Why: detection heads (RetinaNet, FCOS, DETR-style box regression) and segmentation heads need
torchvision's loss semantics exactly, and training needs them free of NaN gradients: every
log is a log-sigmoid / log-softmax (no `log(0)`), every division is guarded, and masked-out
elements get a zero loss AND a zero gradient.

`reduction` is "none" | "mean" | "sum" as in torchvision. Per-element losses with an ignore
rule ("none") are 0 where ignored; their "mean" is over the valid elements only, and 0 (not
NaN) when there is none. Plain "mean" of an empty array is 0, as torchvision's box losses.

Box losses take PAIRED xyxy boxes `[..., 4]` and reuse `jaxcv.ops.boxes`' elementwise IoU
family with torchvision's loss-side eps. The per-pixel segmentation losses come in two forms
with names that say which: `one_pixel_*` for ONE pixel (logits `[C]`, returning the loss and
whether the pixel counts; what a task vmaps itself), and `pixel_*`, the same `jax.vmap`ped over
width, height and batch of `[B, H, W, ...]` maps with a reduction.

Labels outside `[0, C)` that are not the ignore label are treated as ignored under jit
(`valid` False, zero loss, zero gradient); call `check_labels` on host arrays to raise
instead.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.ops import boxes as box_ops

REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str) -> None:
  if reduction not in REDUCTIONS:
    raise ValueError(f"unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")


def _reduce(loss: jax.Array, reduction: str) -> jax.Array:
  """torchvision's reduction; the mean of an empty array is 0."""
  _check_reduction(reduction)
  if reduction == "none":
    return loss
  if reduction == "sum" or loss.size == 0:
    return loss.sum()
  return loss.mean()


def _reduce_valid(loss: jax.Array, valid: jax.Array, reduction: str) -> jax.Array:
  """Reduction over valid elements only (`loss` is already 0 where invalid)."""
  _check_reduction(reduction)
  if reduction == "none":
    return loss
  total = loss.sum()
  if reduction == "sum":
    return total
  return total / jnp.maximum(valid.sum(), 1).astype(loss.dtype)


def _same_shape(a: jax.Array, b: jax.Array, names: str) -> None:
  if a.shape != b.shape:
    raise ValueError(f"{names} must have the same shape; got {tuple(a.shape)} and "
                     f"{tuple(b.shape)}")


def _check_gamma(gamma) -> None:
  if gamma < 0:
    raise ValueError(f"gamma must be >= 0; got {gamma}")


def _focal_factor(m: jax.Array, gamma: float) -> jax.Array:
  """`m ** gamma` for `m >= 0`, with a finite gradient at `m = 0` for every gamma
  (`0 ** 0 = 1`; for `gamma > 0` the gradient at 0 is taken as 0)."""
  if gamma == 0:
    return jnp.ones_like(m)
  pos = m > 0
  return jnp.where(pos, jnp.where(pos, m, 1) ** gamma, 0)


def _as_float(x) -> jax.Array:
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _check_int_labels(labels: jax.Array, name: str = "labels") -> None:
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{name} must be an integer array; got dtype {labels.dtype}")


# ---------------------------------------------------------------------------------------------
# Regression and binary classification.


def smooth_l1_loss(pred: jax.Array, target: jax.Array, beta: float = 1.0,
                   reduction: str = "mean") -> jax.Array:
  """Huber-like loss of `x = pred - target` (torch.nn.functional.smooth_l1_loss):
  `0.5 x^2 / beta` where `|x| < beta`, else `|x| - 0.5 beta`. `beta = 0` is the L1 loss (and
  its gradient is finite). `pred`, `target`: same shape, float. Default reduction "mean"."""
  pred, target = _as_float(pred), _as_float(target)
  _same_shape(pred, target, "pred and target")
  if not isinstance(beta, jax.core.Tracer) and beta < 0:
    raise ValueError(f"beta must be >= 0; got {beta}")
  x = jnp.abs(pred - target)
  safe_beta = jnp.where(beta > 0, beta, 1.0)
  loss = jnp.where(x < beta, 0.5 * x * x / safe_beta, x - 0.5 * beta)
  return _reduce(loss, reduction)


def _bce_with_logits(x: jax.Array, t: jax.Array) -> jax.Array:
  """`-t log sigmoid(x) - (1 - t) log sigmoid(-x)`, stable for any x."""
  return jnp.maximum(x, 0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x)))


def sigmoid_focal_loss(logits: jax.Array, targets: jax.Array, alpha: float = 0.25,
                       gamma: float = 2.0, reduction: str = "none") -> jax.Array:
  """RetinaNet's focal loss (torchvision.ops.sigmoid_focal_loss), elementwise:
  `alpha_t (1 - p_t)^gamma BCE(logits, targets)` with `p = sigmoid(logits)`,
  `p_t = p t + (1 - p)(1 - t)`, `alpha_t = alpha t + (1 - alpha)(1 - t)`.

  `logits`, `targets`: same shape, float, targets in [0, 1]. `alpha < 0` disables the
  weighting (torchvision's -1); `alpha > 1` raises. `gamma` is a Python number >= 0.
  `1 - p_t` is computed as `t sigmoid(-x) + (1 - t) sigmoid(x)` (no cancellation), BCE from
  log-sigmoids (no `log(0)`). Default reduction "none" as torchvision.
  """
  logits, targets = _as_float(logits), _as_float(targets)
  _same_shape(logits, targets, "logits and targets")
  if alpha > 1:
    raise ValueError(f"alpha must be in [0, 1], or < 0 to disable weighting; got {alpha}")
  _check_gamma(gamma)
  ce = _bce_with_logits(logits, targets)
  one_minus_pt = targets * jax.nn.sigmoid(-logits) + (1 - targets) * jax.nn.sigmoid(logits)
  loss = ce * _focal_factor(one_minus_pt, gamma)
  if alpha >= 0:
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
  return _reduce(loss, reduction)


# ---------------------------------------------------------------------------------------------
# Multi-class classification with labels.


def _label_log_prob(logits: jax.Array, labels: jax.Array,
                    ignore_label: int | None) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`(log p_label [...], valid [...], safe_labels [...])` for logits `[..., C]` and int
  labels `[...]`; invalid (ignored or out-of-range) labels read class 0 and are not valid."""
  num_classes = logits.shape[-1]
  valid = (labels >= 0) & (labels < num_classes)
  if ignore_label is not None:
    valid &= labels != ignore_label
  safe = jnp.where(valid, labels, 0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  log_p = jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
  return log_p, valid, safe


def softmax_focal_loss(logits: jax.Array, labels: jax.Array, gamma: float = 2.0,
                       alpha: jax.Array | None = None, ignore_label: int | None = None,
                       reduction: str = "mean") -> jax.Array:
  """Multi-class focal loss: `-alpha_y (1 - p_y)^gamma log p_y`, `p = softmax(logits)`.

  logits: float `[..., C]`; labels: int `[...]`; alpha: optional per-class weights `[C]`
  (None: 1). Elements whose label is `ignore_label` or outside `[0, C)` give 0 and no
  gradient. "mean" divides the sum by the number of valid elements (0 if none; NOT by the sum
  of their alpha weights as torch's weighted cross_entropy does). `gamma = 0`, `alpha = None`
  is the cross-entropy. `log p_y` is a log-softmax and `1 - p_y = -expm1(log p_y)`.
  """
  logits = _as_float(logits)
  labels = jnp.asarray(labels)
  _check_int_labels(labels)
  if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
    raise ValueError(f"logits [..., C] and labels [...] have mismatched shapes "
                     f"{tuple(logits.shape)} and {tuple(labels.shape)}")
  _check_gamma(gamma)
  log_p, valid, safe = _label_log_prob(logits, labels, ignore_label)
  loss = -_focal_factor(-jnp.expm1(log_p), gamma) * log_p
  if alpha is not None:
    alpha = _as_float(alpha)
    if alpha.shape != logits.shape[-1:]:
      raise ValueError(f"alpha must have shape [C] = {logits.shape[-1:]}; got {alpha.shape}")
    loss = alpha[safe] * loss
  loss = jnp.where(valid, loss, 0)
  return _reduce_valid(loss, valid, reduction)


def check_labels(labels, num_classes: int, ignore_label: int | None = 255) -> None:
  """Raises ValueError if concrete (host or device, not traced) int labels hold a value outside
  `[0, num_classes)` other than `ignore_label`. The losses themselves ignore such labels."""
  if isinstance(labels, jax.core.Tracer):
    raise TypeError("check_labels needs concrete labels; call it outside jit")
  labels = np.asarray(labels)
  bad = (labels < 0) | (labels >= num_classes)
  if ignore_label is not None:
    bad &= labels != ignore_label
  if bad.any():
    raise ValueError(f"labels outside [0, {num_classes}) (ignore label {ignore_label}): "
                     f"{sorted(set(labels[bad].tolist()))[:10]}")


# ---------------------------------------------------------------------------------------------
# Box regression (paired boxes).


def giou_loss(boxes1: jax.Array, boxes2: jax.Array, reduction: str = "none",
              eps: float = 1e-7) -> jax.Array:
  """`1 - GIoU` of PAIRED xyxy boxes `[..., 4]` -> `[...]`
  (torchvision.ops.generalized_box_iou_loss: `eps` in the IoU and enclosing-area
  denominators)."""
  return _reduce(1 - box_ops.elementwise_generalized_box_iou(boxes1, boxes2, eps=eps), reduction)


def diou_loss(boxes1: jax.Array, boxes2: jax.Array, reduction: str = "none",
              eps: float = 1e-7) -> jax.Array:
  """`1 - DIoU` of PAIRED xyxy boxes `[..., 4]` -> `[...]`
  (torchvision.ops.distance_box_iou_loss: `eps` in the IoU and diagonal denominators)."""
  diou = box_ops.elementwise_distance_box_iou(boxes1, boxes2, eps=eps, iou_eps=eps)
  return _reduce(1 - diou, reduction)


def ciou_loss(boxes1: jax.Array, boxes2: jax.Array, reduction: str = "none",
              eps: float = 1e-7) -> jax.Array:
  """`1 - CIoU` of PAIRED xyxy boxes `[..., 4]` -> `[...]`
  (torchvision.ops.complete_box_iou_loss). As torchvision, the IoU and DIoU parts always use
  eps 1e-7 and `eps` only enters `alpha = v / (1 - IoU + v + eps)`, which is not
  differentiated."""
  ciou = box_ops.elementwise_complete_box_iou(boxes1, boxes2, eps=eps, iou_eps=1e-7,
                                              distance_eps=1e-7)
  return _reduce(1 - ciou, reduction)


# ---------------------------------------------------------------------------------------------
# Segmentation.


def dice_loss(inputs: jax.Array, targets: jax.Array, mask: jax.Array | None = None,
              smooth: float = 1.0, activation: str | None = None,
              reduction: str = "mean") -> jax.Array:
  """Soft Dice loss per image and class.

  inputs: float `[B, *spatial, C]` probabilities (or logits with `activation` "sigmoid" or
  "softmax" over C); targets: float `[B, *spatial, C]` in [0, 1] (e.g.
  `jax.nn.one_hot(labels, C)`); mask: optional `[B, *spatial]` (bool or float weights;
  0 excludes a pixel). With sums over the spatial dims, for each image b and class c:

    loss[b, c] = 1 - (2 sum(m p t) + smooth) / (sum(m p) + sum(m t) + smooth)

  "none" gives `[B, C]`; "mean" / "sum" reduce over both. With `smooth = 0`, a class absent
  from both prediction and target (denominator 0) counts as a perfect match (loss 0).
  """
  inputs, targets = _as_float(inputs), _as_float(targets)
  _same_shape(inputs, targets, "inputs and targets")
  if inputs.ndim < 3:
    raise ValueError(f"inputs must be [B, *spatial, C] with at least one spatial dim; got "
                     f"shape {tuple(inputs.shape)}")
  if smooth < 0:
    raise ValueError(f"smooth must be >= 0; got {smooth}")
  if activation == "sigmoid":
    inputs = jax.nn.sigmoid(inputs)
  elif activation == "softmax":
    inputs = jax.nn.softmax(inputs, axis=-1)
  elif activation is not None:
    raise ValueError(f"unknown activation {activation!r}; known: None, 'sigmoid', 'softmax'")
  if mask is not None:
    mask = jnp.asarray(mask)
    if mask.shape != inputs.shape[:-1]:
      raise ValueError(f"mask must have shape [B, *spatial] = {tuple(inputs.shape[:-1])}; got "
                       f"{tuple(mask.shape)}")
    m = mask.astype(inputs.dtype)[..., None]
    inputs, targets = inputs * m, targets * m
  axes = tuple(range(1, inputs.ndim - 1))
  inter = jnp.sum(inputs * targets, axis=axes)
  den = jnp.sum(inputs, axis=axes) + jnp.sum(targets, axis=axes) + smooth
  safe = den != 0
  dice = jnp.where(safe, (2 * inter + smooth) / jnp.where(safe, den, 1), 1)
  return _reduce(1 - dice, reduction)


def one_pixel_softmax_cross_entropy(logits: jax.Array, label: jax.Array,
                                    ignore_label: int | None = 255
                                    ) -> tuple[jax.Array, jax.Array]:
  """Cross-entropy of ONE pixel: logits float `[C]`, label int `[]` -> `(loss [], valid [])`.
  `-log softmax(logits)[label]`; 0 (and a zero gradient) when the label is `ignore_label` or
  outside `[0, C)`, with `valid` False."""
  log_p, valid, _ = _label_log_prob(logits, label, ignore_label)
  return jnp.where(valid, -log_p, 0), valid


def one_pixel_binary_cross_entropy(logit: jax.Array, target: jax.Array,
                                   ignore: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Binary cross-entropy of ONE pixel from its logit: float `[]`, target float `[]` in
  [0, 1], ignore bool `[]` -> `(loss [], valid [])`; 0 and a zero gradient where ignored."""
  valid = jnp.logical_not(ignore)
  loss = _bce_with_logits(logit, jnp.where(valid, target, 0))
  return jnp.where(valid, loss, 0), valid


def _over_pixels(fn):
  """`fn` of one pixel, vmapped over width, height and batch (all arguments mapped)."""
  return jax.vmap(jax.vmap(jax.vmap(fn)))


def pixel_softmax_cross_entropy(logits: jax.Array, labels: jax.Array,
                                ignore_label: int | None = 255,
                                reduction: str = "mean") -> jax.Array:
  """Per-pixel softmax cross-entropy: logits float `[B, H, W, C]`, labels int `[B, H, W]`.

  `one_pixel_softmax_cross_entropy` vmapped over W, H and B. "none": `[B, H, W]` (0 at ignored
  pixels); "mean": over valid pixels only (torch cross_entropy with ignore_index), 0 where
  there is none; "sum".
  """
  logits = _as_float(logits)
  labels = jnp.asarray(labels)
  _check_int_labels(labels)
  if logits.ndim != 4 or labels.shape != logits.shape[:3]:
    raise ValueError(f"logits must be [B, H, W, C] and labels [B, H, W]; got shapes "
                     f"{tuple(logits.shape)} and {tuple(labels.shape)}")
  pixel = functools.partial(one_pixel_softmax_cross_entropy, ignore_label=ignore_label)
  loss, valid = _over_pixels(pixel)(logits, labels)
  return _reduce_valid(loss, valid, reduction)


def pixel_binary_cross_entropy(logits: jax.Array, targets: jax.Array,
                               ignore_mask: jax.Array | None = None,
                               ignore_value: float | None = None,
                               reduction: str = "mean") -> jax.Array:
  """Per-pixel binary cross-entropy from logits: logits float `[B, H, W]` or `[B, H, W, 1]`,
  targets `[B, H, W]` (or `[B, H, W, 1]`) in [0, 1].

  A pixel is ignored where `ignore_mask` (bool `[B, H, W]`) is True or its target equals
  `ignore_value` (e.g. 255). `one_pixel_binary_cross_entropy` vmapped over W, H and B. "none":
  `[B, H, W]`, 0 at ignored pixels; "mean": over valid pixels (0 if none); "sum".
  """
  logits, targets = _as_float(logits), _as_float(targets)
  if logits.ndim == 4 and logits.shape[-1] == 1:
    logits = logits[..., 0]
  if targets.ndim == 4 and targets.shape[-1] == 1:
    targets = targets[..., 0]
  if logits.ndim != 3 or targets.shape != logits.shape:
    raise ValueError(f"logits must be [B, H, W] or [B, H, W, 1] and targets the same; got "
                     f"shapes {tuple(logits.shape)} and {tuple(targets.shape)}")
  ignore = jnp.zeros(logits.shape, bool)
  if ignore_mask is not None:
    ignore_mask = jnp.asarray(ignore_mask)
    if ignore_mask.shape != logits.shape:
      raise ValueError(f"ignore_mask must have shape {tuple(logits.shape)}; got "
                       f"{tuple(ignore_mask.shape)}")
    ignore |= ignore_mask.astype(bool)
  if ignore_value is not None:
    ignore |= targets == ignore_value
  loss, valid = _over_pixels(one_pixel_binary_cross_entropy)(logits, targets, ignore)
  return _reduce_valid(loss, valid, reduction)

