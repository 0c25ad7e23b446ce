"""The YOLOv2 training loss: darknet's `forward_region_layer` (pjreddie/darknet
src/region_layer.c) as a static-shape function of padded ground truth, vmapped over images.

Which variant, and why. Darknet writes a `delta` per output (the negative gradient) rather
than a loss. Its region layer's deltas are `scale * (target - output)` on the ACTIVATED
outputs (sigmoid of x, y and objectness, softmax of the classes, raw w, h), and
`backward_region_layer_gpu` then multiplies the x, y and objectness deltas by the logistic
derivative (the CPU `backward_region_layer` is commented out, so darknet trains YOLOv2 on
the GPU path only). The losses here are the functions whose gradient with respect to the raw
outputs is exactly minus that delta (tests/test_yolov2.py checks it against a NumPy
transcription of the C loops), i.e. squared errors in sigmoid space and a softmax
cross-entropy; the value of each term is `sum(delta^2 / (2 * scale))` over its entries
(darknet prints `sum(delta^2)` as its cost):
- `loss_xy`: `scale / 2 * (sigmoid(tx) - t)^2` (+ the same for y), `t` the offset of the
  box centre in its cell; `scale = coord_scale * (2 - w * h / (W * H))` (darknet's truths are
  relative to the network input: small boxes weigh up to twice).
- `loss_wh`: `scale / 2 * (tw - log(w / anchor_w))^2` (+ the same for h).
- `loss_obj`: `object_scale / 2 * (sigmoid(to) - target)^2` at each responsible prediction,
  target 1, or with `rescore` the IoU of the prediction's decoded box with its ground truth
  (a constant: no gradient flows through it, as in darknet).
- `loss_noobj`: `noobject_scale / 2 * sigmoid(to)^2` at every other prediction whose decoded
  box has IoU <= `thresh` with every ground-truth box of the image.
- `loss_cls`: `class_scale * CE(softmax(classes), class)` at each responsible prediction
  (darknet's delta `scale * (onehot - p)` on the softmax: no logistic derivative).
- `loss_prior` (only when `prior_scale` is given): darknet's early-training term, which
  pulls every prediction that is not responsible for a ground truth toward its anchor, centred
  in its cell: `prior_scale / 2 * ((sigmoid(tx) - .5)^2 + (sigmoid(ty) - .5)^2 + tw^2 +
  th^2)`. Darknet applies it with scale .01 while `seen < 12800` (images, counting the
  current batch); the caller passes that scale, or 0 after (see `YOLOv2.prior_images`).
Each term is summed over an image's predictions and averaged over the images (darknet sums
the deltas of a batch and divides the learning rate by the batch size).

Assignment (darknet's): every ground-truth box goes to ONE prediction: in the cell holding its
centre (`jaxcv.ops.box_coder.yolo_encode`; darknet truncates `x * W`, which leaves a centre
on the far edge outside the grid, clipped to the last cell here), the anchor of best IoU with
its (w, h) when both are centred at the origin (`bias_match`, yolov2-voc.cfg's; without it
the predicted (w, h) of the cell's anchors are compared instead); ties to the lowest index.
When two boxes land on one prediction, the later box (higher index) sets every target of it:
box, objectness (its IoU with rescore) and class (darknet overwrites the deltas; with the
softmax the whole class delta).

Shapes: raw outputs `[B, H, W, A, 5 + C]` (no activation applied), anchors `[A, 2]` (w, h) in
canvas pixels (darknet's cells times the stride); targets `boxes [B, M, 4]` (canvas pixels,
xyxy), `classes [B, M]` 1..C, `box_valid [B, M]` (padding rows, and boxes of zero width or
height, never train; they may hold NaN).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcv.ops.box_coder import wh_iou, yolo_decode, yolo_encode
from jaxcv.ops.boxes import box_iou

LOSS_NAMES = ("loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_cls")
PRIOR_LOSS = "loss_prior"
DEFAULTS = {"thresh": 0.6, "object_scale": 5.0, "noobject_scale": 1.0, "class_scale": 1.0,
            "coord_scale": 1.0, "rescore": True, "bias_match": True}   # yolov2-voc.cfg


def _one_image(r: jax.Array, boxes: jax.Array, classes: jax.Array, valid: jax.Array,
               stride: float, anchors: jax.Array, canvas_hw: tuple[int, int], opts: dict,
               prior_scale) -> dict:
  gh, gw, a, k = r.shape
  n, m = gh * gw * a, boxes.shape[0]
  num_classes = k - 5
  w = boxes[:, 2] - boxes[:, 0]
  h = boxes[:, 3] - boxes[:, 1]
  valid = valid & (w > 0) & (h > 0) & jnp.all(jnp.isfinite(boxes), axis=-1)
  # padding rows may hold anything: give them a harmless box so no NaN reaches a gradient
  safe = jnp.where(valid[:, None], boxes, jnp.array([0.0, 0.0, 1.0, 1.0]))
  t = yolo_encode(safe, (gh, gw), stride, anchors)
  flat = r.reshape(n, k)
  pred = jax.lax.stop_gradient(yolo_decode(r[..., :4], stride, anchors)).reshape(n, 4)
  iou = box_iou(pred, safe)                                       # [n, m]
  # responsible prediction of each ground truth
  if opts["bias_match"]:
    anchor = t.best_anchor
  else:  # the cell's predicted shapes
    cell_raw = jax.lax.stop_gradient(r[t.cell[:, 0], t.cell[:, 1], :, 2:4])   # [m, a, 2]
    pred_wh = anchors * jnp.exp(cell_raw)
    gt_wh = jnp.stack([safe[:, 2] - safe[:, 0], safe[:, 3] - safe[:, 1]], -1)
    anchor = jnp.argmax(wh_iou(gt_wh[:, None, :], pred_wh), axis=1).astype(jnp.int32)
  loc = (t.cell[:, 0] * gw + t.cell[:, 1]) * a + anchor           # [m]
  same = (loc[:, None] == loc[None, :]) & valid[:, None] & valid[None, :]
  later = jnp.arange(m)[None, :] > jnp.arange(m)[:, None]         # [m, m']: m' after m
  winner = (valid & ~jnp.any(same & later, axis=1)).astype(jnp.float32)
  safe_loc = jnp.where(valid, loc, 0)
  p = flat[safe_loc]                                              # [m, 5 + C]
  scale = opts["coord_scale"] * (2.0 - (w * h) / float(canvas_hw[0] * canvas_hw[1]))
  scale = jnp.where(valid, scale, 0.0)
  off = jnp.where(valid[:, None], t.offset, 0.5)
  xy = 0.5 * jnp.sum((jax.nn.sigmoid(p[:, :2]) - off) ** 2, axis=1)
  twh = jnp.take_along_axis(t.log_wh, anchor[:, None, None], axis=1)[:, 0]
  twh = jnp.where(valid[:, None], twh, 0.0)
  wh = 0.5 * jnp.sum((p[:, 2:4] - twh) ** 2, axis=1)
  if opts["rescore"]:
    obj_target = iou[safe_loc, jnp.arange(m)]                     # no gradient (pred stopped)
  else:
    obj_target = jnp.ones((m,), jnp.float32)
  obj = 0.5 * opts["object_scale"] * (jax.nn.sigmoid(p[:, 4]) - obj_target) ** 2
  logp = jax.nn.log_softmax(p[:, 5:], axis=-1)
  cls = -jnp.take_along_axis(logp, jnp.clip(classes - 1, 0, num_classes - 1)[:, None],
                             axis=1)[:, 0]
  out = {"loss_xy": jnp.sum(winner * scale * xy), "loss_wh": jnp.sum(winner * scale * wh),
         "loss_obj": jnp.sum(winner * obj),
         "loss_cls": opts["class_scale"] * jnp.sum(winner * cls)}
  # every prediction that is not responsible: background unless it overlaps a ground truth
  positive = jnp.zeros((n,), bool).at[jnp.where(valid, loc, n)].set(True, mode="drop")
  best_iou = jnp.max(jnp.where(valid[None, :], iou, 0.0), axis=1)
  background = ~positive & (best_iou <= opts["thresh"])
  noobj = 0.5 * opts["noobject_scale"] * jax.nn.sigmoid(flat[:, 4]) ** 2
  out["loss_noobj"] = jnp.sum(jnp.where(background, noobj, 0.0))
  if prior_scale is not None:
    toward = 0.5 * (jnp.sum((jax.nn.sigmoid(flat[:, :2]) - 0.5) ** 2, axis=1)
                    + jnp.sum(flat[:, 2:4] ** 2, axis=1))
    out[PRIOR_LOSS] = prior_scale * jnp.sum(jnp.where(positive, 0.0, toward))
  return out


def region_losses(raw: jax.Array, stride: float, anchors, targets: dict,
                  canvas_hw: tuple[int, int], *, prior_scale=None, **options) -> dict:
  """Darknet's YOLOv2 loss (module docstring) as a dict of scalar terms (`LOSS_NAMES`, plus
  `loss_prior` when `prior_scale` is not None), each summed per image and averaged over the
  batch.

  Args:
    raw: `[B, H, W, A, 5 + C]` raw outputs (float32).
    stride: canvas pixels per cell.
    anchors: `[A, 2]` (w, h) in canvas pixels.
    targets: `boxes [B, M, 4]`, `classes [B, M]` (1..C), `box_valid [B, M]`.
    canvas_hw: `(H, W)` of the network input (the scale's area).
    prior_scale: None (no prior term), or its scale (a number or a traced scalar: darknet's
      .01 while fewer than 12800 images were seen, else 0).
    **options: the [region] options `DEFAULTS` names (yolov2-voc.cfg's values by default):
      `thresh`, `object_scale`, `noobject_scale`, `class_scale`, `coord_scale`, `rescore`,
      `bias_match`.
  """
  unknown = sorted(set(options) - set(DEFAULTS))
  if unknown:
    raise ValueError(f"region_losses: unknown options {unknown}; known: {sorted(DEFAULTS)}")
  opts = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
  if not 0.0 <= float(opts["thresh"]) <= 1.0:
    raise ValueError(f"region_losses: thresh must be in [0, 1]; got {opts['thresh']!r}")
  anchors = jnp.asarray(anchors, jnp.float32)
  if raw.ndim != 5 or raw.shape[-1] < 6:
    raise ValueError(f"raw outputs must be [B, H, W, A, 5 + C] with C >= 1; got shape "
                     f"{tuple(raw.shape)}")
  if anchors.shape != (raw.shape[3], 2):
    raise ValueError(f"anchors must be [A, 2] with A = {raw.shape[3]} (the outputs' anchors "
                     f"per cell); got shape {tuple(anchors.shape)}")
  if not hasattr(targets, "keys") or not {"boxes", "classes", "box_valid"} <= set(targets):
    raise ValueError(f"targets need 'boxes', 'classes' and 'box_valid'; got "
                     f"{sorted(targets) if hasattr(targets, 'keys') else type(targets)}")
  b, shape = raw.shape[0], tuple(jnp.shape(targets["boxes"]))
  m = shape[1] if len(shape) == 3 else -1
  for key, want in (("boxes", (b, m, 4)), ("classes", (b, m)), ("box_valid", (b, m))):
    if tuple(jnp.shape(targets[key])) != want:
      raise ValueError(f"targets[{key!r}] must have shape {want} ([B, M, ...] for the B = {b} "
                       f"images of raw); got {tuple(jnp.shape(targets[key]))}")

  def one(r, bx, c, v):
    return _one_image(r, bx, c, v, float(stride), anchors, tuple(canvas_hw), opts, prior_scale)

  per_image = jax.vmap(one)(raw.astype(jnp.float32),
                            jnp.asarray(targets["boxes"], jnp.float32),
                            jnp.asarray(targets["classes"], jnp.int32),
                            jnp.asarray(targets["box_valid"], bool))
  return {k: jnp.mean(v) for k, v in per_image.items()}
