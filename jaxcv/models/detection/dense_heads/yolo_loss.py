"""The YOLOv3 training loss: darknet's `forward_yolo_layer` (pjreddie/darknet
src/yolo_layer.c) as a static-shape function of padded ground truth, vmapped over images.

Which variant, and why. Darknet does not compute a loss: it writes a `delta` per output
(the negative gradient) and back-propagates it unchanged (`backward_yolo_layer` copies
`l.delta`; no logistic derivative is applied although x, y, objectness and classes went
through a logistic). The losses here are the functions whose gradient with respect to the
raw outputs is exactly minus darknet's delta, so that training follows darknet's updates
(tests/test_yolo.py checks the gradient against a NumPy transcription of the C loops):
- `loss_xy`: darknet's delta `scale * (t - sigmoid(x))` on the raw `x` is the gradient of
  `scale * BCE(sigmoid(x), t)`, binary cross-entropy with logits against the offset of the
  centre in its cell `t` in [0, 1] (the form ultralytics' YOLOv3 calls darknet's). With
  `xy_loss="mse"` it is `scale / 2 * (sigmoid(x) - t)^2` instead, the squared error darknet
  prints as its cost (its gradient carries an extra `sigmoid'` factor that darknet's does not).
- `loss_wh`: `scale / 2 * (tw - log(w / anchor_w))^2` (+ the same for h) on the raw `tw, th`.
  `scale = 2 - w * h / (W * H)`, the box's share of the canvas (darknet's truths are
  relative to the network input), which weighs small boxes up to twice.
- `loss_obj`: `BCE(objectness, 1)` at every responsible prediction.
- `loss_noobj`: `BCE(objectness, 0)` at every other prediction, except those whose decoded
  box has IoU > `ignore_thresh` (the [yolo] layer's; 0.7 in the official cfgs) with some
  ground-truth box of the image: those are not penalised as background.
- `loss_cls`: `BCE(class logits, one-hot)` summed over the classes at every responsible
  prediction.
Each term is summed over an image's predictions and averaged over the images (darknet sums
the deltas of a batch and divides the learning rate by the batch size).

Assignment (darknet's): every ground-truth box goes to ONE prediction: the anchor of best
IoU with its (w, h) among ALL the cfg's anchors (both centred at the origin; ties to the
lowest index), in the [yolo] layer whose mask holds that anchor, in the cell holding the
box's centre (`jaxcv.ops.box_coder.yolo_encode`). Boxes whose best anchor no layer holds
train nothing. When two boxes land on one prediction, the later box (higher index) sets its
box targets (darknet overwrites the delta) and the class target is the union of both
boxes' classes (darknet's `delta_yolo_class` adds the second class). pytorchyolo's own
`compute_loss` (v1.8) is a different loss (ultralytics-style CIoU box loss, objectness
target = IoU, anchors by w/h ratio < 4, several anchors per box): not this one.

Shapes: raw outputs per [yolo] layer `[B, H, W, A, 5 + C]`; targets `boxes [B, M, 4]`
(canvas pixels, xyxy), `classes [B, M]` 1..C, `box_valid [B, M]` (padding rows, and boxes of
zero width or height, never train).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxcv.ops.box_coder import yolo_decode, yolo_encode
from jaxcv.ops.boxes import box_iou

LOSS_NAMES = ("loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_cls")
XY_LOSSES = ("bce", "mse")


def _bce(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Elementwise binary cross-entropy with logits (stable)."""
  return jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def _one_image(raw: Sequence[jax.Array], strides: Sequence[float], anchors: jax.Array,
               masks: Sequence[Sequence[int]], ignore_thresh: Sequence[float],
               boxes: jax.Array, classes: jax.Array, valid: jax.Array,
               canvas_hw: tuple[int, int], xy_loss: str) -> dict:
  num_classes = raw[0].shape[-1] - 5
  m = boxes.shape[0]
  w = boxes[:, 2] - boxes[:, 0]
  h = boxes[:, 3] - boxes[:, 1]
  valid = valid & (w > 0) & (h > 0) & jnp.all(jnp.isfinite(boxes), axis=-1)
  # padding rows may hold anything: give them a harmless box so no NaN reaches a gradient
  safe = jnp.where(valid[:, None], boxes, jnp.array([0.0, 0.0, 1.0, 1.0]))
  scale = 2.0 - (w * h) / float(canvas_hw[0] * canvas_hw[1])
  scale = jnp.where(valid, scale, 0.0)
  onehot = jax.nn.one_hot(classes - 1, num_classes, dtype=jnp.float32) * valid[:, None]
  later = jnp.arange(m)[None, :] > jnp.arange(m)[:, None]   # [m, m']: m' after m
  out = {k: jnp.float32(0.0) for k in LOSS_NAMES}
  for r, stride, mask, thresh in zip(raw, strides, masks, ignore_thresh):
    gh, gw, a = r.shape[0], r.shape[1], r.shape[2]
    mask = jnp.asarray(mask, jnp.int32)
    t = yolo_encode(safe, (gh, gw), stride, anchors)
    hit = t.best_anchor[:, None] == mask[None, :]             # [m, a]
    assigned = valid & jnp.any(hit, axis=1)
    a_local = jnp.argmax(hit, axis=1)
    loc = (t.cell[:, 0] * gw + t.cell[:, 1]) * a + a_local    # [m]
    same = (loc[:, None] == loc[None, :]) & assigned[:, None] & assigned[None, :]
    winner = assigned & ~jnp.any(same & later, axis=1)
    flat = r.reshape(gh * gw * a, -1)
    p = flat[jnp.where(assigned, loc, 0)]                      # [m, 5 + C]
    wf = winner.astype(jnp.float32)
    # box terms
    off = jnp.where(assigned[:, None], t.offset, 0.5)
    if xy_loss == "bce":
      xy = jnp.sum(_bce(p[:, :2], off), axis=1)
    else:
      xy = 0.5 * jnp.sum((jax.nn.sigmoid(p[:, :2]) - off) ** 2, axis=1)
    best = jnp.take_along_axis(t.log_wh, t.best_anchor[:, None, None], axis=1)[:, 0]
    best = jnp.where(assigned[:, None], best, 0.0)
    wh = 0.5 * jnp.sum((p[:, 2:4] - best) ** 2, axis=1)
    out["loss_xy"] += jnp.sum(wf * scale * xy)
    out["loss_wh"] += jnp.sum(wf * scale * wh)
    out["loss_obj"] += jnp.sum(wf * _bce(p[:, 4], 1.0))
    cls_target = jnp.minimum(same.astype(jnp.float32) @ onehot, 1.0)  # union per location
    out["loss_cls"] += jnp.sum(wf * jnp.sum(_bce(p[:, 5:], cls_target), axis=1))
    # background: every prediction that is not responsible and not ignored
    positive = jnp.zeros((gh * gw * a,), bool).at[jnp.where(assigned, loc, gh * gw * a)].set(
        True, mode="drop")
    pred = jax.lax.stop_gradient(yolo_decode(r[..., :4], stride, anchors[mask]))
    iou = box_iou(pred.reshape(-1, 4), safe)                   # [gh*gw*a, m]
    best_iou = jnp.max(jnp.where(valid[None, :], iou, 0.0), axis=1)
    background = ~positive & ~(best_iou > thresh)
    out["loss_noobj"] += jnp.sum(jnp.where(background, _bce(flat[:, 4], 0.0), 0.0))
  return out


def yolo_losses(raw: Sequence[jax.Array], strides: Sequence[float], anchors,
                masks: Sequence[Sequence[int]], ignore_thresh: Sequence[float],
                targets: dict, canvas_hw: tuple[int, int], xy_loss: str = "bce") -> dict:
  """Darknet's YOLOv3 loss (module docstring) as a dict of the five scalar terms
  `LOSS_NAMES`, each summed per image and averaged over the batch.

  Args:
    raw: per [yolo] layer the raw outputs `[B, H, W, A_l, 5 + C]` (float32).
    strides: canvas pixels per cell of each layer.
    anchors: `[T, 2]` every anchor of the cfg (w, h) in canvas pixels.
    masks: per layer, the indices into `anchors` of its `A_l` anchors.
    ignore_thresh: per layer, the IoU above which a prediction is not background.
    targets: `boxes [B, M, 4]`, `classes [B, M]` (1..C), `box_valid [B, M]`.
    canvas_hw: `(H, W)` of the network input (the scale's area).
    xy_loss: "bce" (darknet's gradient) or "mse".
  """
  if xy_loss not in XY_LOSSES:
    raise ValueError(f"xy_loss must be one of {list(XY_LOSSES)}; got {xy_loss!r}")
  if not (len(raw) == len(strides) == len(masks) == len(ignore_thresh)):
    raise ValueError(f"one stride, mask and ignore_thresh per [yolo] output: got {len(raw)} "
                     f"outputs, {len(strides)} strides, {len(masks)} masks, "
                     f"{len(ignore_thresh)} thresholds")
  anchors = jnp.asarray(anchors, jnp.float32)
  for r, mask in zip(raw, masks):
    if r.ndim != 5 or r.shape[3] != len(mask):
      raise ValueError(f"raw outputs must be [B, H, W, A, 5 + C] with A = len(mask) = "
                       f"{len(mask)}; got shape {tuple(r.shape)}")

  def one(r, b, c, v):
    return _one_image(r, strides, anchors, masks, ignore_thresh, b, c, v,
                      tuple(canvas_hw), xy_loss)

  per_image = jax.vmap(one)([x.astype(jnp.float32) for x in raw],
                            jnp.asarray(targets["boxes"], jnp.float32),
                            jnp.asarray(targets["classes"], jnp.int32),
                            jnp.asarray(targets["box_valid"], bool))
  return {k: jnp.mean(v) for k, v in per_image.items()}
