"""The YOLOv1 output coding and loss (Redmon et al. 2016, section 2.2, equation 3), static-shape
over padded ground truth and vmapped over images.

Outputs per cell of the S x S grid: `B` boxes `(x, y, w', h')` with a confidence each, and
`C` class probabilities (one set per cell). All are the network's linear outputs (the paper's
last layer has no activation). `x, y` are the box centre's offset within its cell (0..1);
`w', h'` code the width and height relative to the network input (the canvas):
- `wh_output="sqrt"` (default; darknet's `detection_layer` with `sqrt=1`): `w' = sqrt(w)`,
  the network predicts the square root itself, so `w = w'^2` and no square root of a
  prediction is ever taken (its gradient is finite everywhere, also at `w' = 0`).
- `wh_output="linear"`: `w' = w` (decoded as `max(w', 0)`), and the loss compares
  `w' / sqrt(|w'| + 1e-6)` with `sqrt(w)`: the signed square root `sign(w') * sqrt(|w'|)`
  smoothed by an eps, so its derivative is finite (1000 at 0, where sqrt's is infinite) and
  positive everywhere (also at exactly 0, where `sign(w') * sqrt(|w'| + eps)` has none), and
  a negative width is pushed up.

Ground truth (`boxes [M, 4]` xyxy canvas pixels, `classes [M]` 1..C, `box_valid [M]`; rows
with zero width or height, or not finite, never train): each object goes to the cell holding
its centre (`floor(c / W * S)`, a centre on the right / bottom edge to the last cell). When
several objects share a cell, the first valid one (lowest index) is the cell's object and the
others train nothing (darknet's `fill_truth_region` keeps the first; a cell predicts one set
of class probabilities, so it cannot hold two).

Responsible predictor (the paper's `1^obj_ij`): of the cell's B boxes, the one of highest
IoU with the cell's object (ties to the lowest index); when every one has IoU 0 (a fresh
network), the one of smallest squared distance in `(x, y, w, h)` relative to the image,
darknet's `box_rmse` fallback (ties to the lowest index).

Loss per image, summed (the paper's sum-squared error), then averaged over the batch:
- `loss_xy` = lambda_coord * sum_resp (x - x^)^2 + (y - y^)^2
- `loss_wh` = lambda_coord * sum_resp (sqrt(w) - sqrt(w^))^2 + (sqrt(h) - sqrt(h^))^2
- `loss_obj` = sum_resp (C - IoU(pred, truth))^2, the IoU (decoded boxes) a constant target
- `loss_noobj` = lambda_noobj * sum_(every other predictor, in every cell) C^2
- `loss_cls` = sum_(cells with an object) sum_c (p(c) - onehot(c))^2
Their sum is the paper's equation 3 (lambda_coord 5, lambda_noobj 0.5).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcv.ops.boxes import elementwise_box_iou

LOSS_NAMES = ("loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_cls")
WH_OUTPUTS = ("sqrt", "linear")
SQRT_EPS = 1e-6


def check_wh_output(wh_output: str, model: str = "YOLOv1") -> None:
  if wh_output not in WH_OUTPUTS:
    raise ValueError(f"{model}: wh_output must be one of {list(WH_OUTPUTS)}; got "
                     f"{wh_output!r}")


def decode_wh(raw_wh: jax.Array, wh_output: str) -> jax.Array:
  """Width and height relative to the canvas (>= 0) from the `w', h'` outputs."""
  return jnp.square(raw_wh) if wh_output == "sqrt" else jnp.maximum(raw_wh, 0.0)


def root_wh(raw_wh: jax.Array, wh_output: str) -> jax.Array:
  """The `sqrt(w^), sqrt(h^)` the loss compares with the truth's (module docstring)."""
  if wh_output == "sqrt":
    return raw_wh
  return raw_wh / jnp.sqrt(jnp.abs(raw_wh) + SQRT_EPS)


def yolov1_boxes(coords: jax.Array, canvas_hw: tuple[int, int], wh_output: str) -> jax.Array:
  """Decoded boxes, xyxy canvas pixels: coords `[..., Sy, Sx, B, 4]` (x, y, w', h') ->
  `[..., Sy, Sx, B, 4]`; the centre is `((col + x) / Sx * W, (row + y) / Sy * H)`."""
  sy, sx = coords.shape[-4], coords.shape[-3]
  h, w = canvas_hw
  col = jnp.arange(sx, dtype=jnp.float32)[None, :, None]
  row = jnp.arange(sy, dtype=jnp.float32)[:, None, None]
  cx = (col + coords[..., 0]) * (w / sx)
  cy = (row + coords[..., 1]) * (h / sy)
  wh = decode_wh(coords[..., 2:4], wh_output)
  bw, bh = wh[..., 0] * w, wh[..., 1] * h
  return jnp.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1)


def cell_targets(boxes: jax.Array, classes: jax.Array, valid: jax.Array,
                 grid_hw: tuple[int, int], canvas_hw: tuple[int, int], num_classes: int):
  """One image's ground truth per cell (module docstring): `has_obj [S*S]` bool, `coded
  [S*S, 4]` (x, y offsets in the cell; w, h relative to the canvas), `box [S*S, 4]` (xyxy
  pixels), `onehot [S*S, C]`; zeros in cells without an object."""
  sy, sx = grid_hw
  h, w = canvas_hw
  m = boxes.shape[0]
  bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  valid = valid & (bw > 0) & (bh > 0) & jnp.all(jnp.isfinite(boxes), axis=-1)
  safe = jnp.where(valid[:, None], boxes, jnp.array([0.0, 0.0, 1.0, 1.0], jnp.float32))
  cx = (safe[:, 0] + safe[:, 2]) / 2 / w * sx
  cy = (safe[:, 1] + safe[:, 3]) / 2 / h * sy
  col = jnp.clip(jnp.floor(cx), 0, sx - 1)
  row = jnp.clip(jnp.floor(cy), 0, sy - 1)
  cell = (row * sx + col).astype(jnp.int32)
  same = (cell[:, None] == cell[None, :]) & valid[:, None] & valid[None, :]
  earlier = jnp.arange(m)[None, :] < jnp.arange(m)[:, None]
  winner = valid & ~jnp.any(same & earlier, axis=1)
  idx = jnp.where(winner, cell, sx * sy)                     # out of range: dropped
  coded = jnp.stack([cx - col, cy - row, (safe[:, 2] - safe[:, 0]) / w,
                     (safe[:, 3] - safe[:, 1]) / h], axis=-1)
  onehot = jax.nn.one_hot(classes - 1, num_classes, dtype=jnp.float32)
  n = sx * sy

  def scatter(values):
    return jnp.zeros((n,) + values.shape[1:], values.dtype).at[idx].set(values, mode="drop")

  return scatter(winner), scatter(coded), scatter(safe), scatter(onehot)


def responsible(pred_boxes: jax.Array, pred_coded: jax.Array, true_box: jax.Array,
                true_coded: jax.Array, grid_hw: tuple[int, int]):
  """Per cell the responsible predictor's index and every predictor's IoU with the cell's
  object: pred_boxes `[S*S, B, 4]` pixels, pred_coded `[S*S, B, 4]` (x, y offsets, decoded
  w, h relative), true_box `[S*S, 4]`, true_coded `[S*S, 4]` -> `(index [S*S], iou [S*S, B])`."""
  sy, sx = grid_hw
  iou = elementwise_box_iou(pred_boxes, true_box[:, None, :])
  scale = jnp.array([1.0 / sx, 1.0 / sy, 1.0, 1.0], jnp.float32)   # offsets -> image-relative
  d2 = jnp.sum(jnp.square((pred_coded - true_coded[:, None, :]) * scale), axis=-1)
  index = jnp.where(jnp.any(iou > 0, axis=1), jnp.argmax(iou, axis=1), jnp.argmin(d2, axis=1))
  return index, iou


def _one_image(probs, conf, coords, boxes, classes, valid, canvas_hw, wh_output,
               lambda_coord, lambda_noobj) -> dict:
  sy, sx, nb = conf.shape
  n = sy * sx
  num_classes = probs.shape[-1]
  has_obj, coded, true_box, onehot = cell_targets(boxes, classes, valid, (sy, sx), canvas_hw,
                                                  num_classes)
  probs, conf, coords = probs.reshape(n, -1), conf.reshape(n, nb), coords.reshape(n, nb, 4)
  fixed = jax.lax.stop_gradient(coords)
  pred_boxes = yolov1_boxes(fixed.reshape(sy, sx, nb, 4), canvas_hw, wh_output).reshape(n, nb, 4)
  pred_coded = jnp.concatenate([fixed[..., :2], decode_wh(fixed[..., 2:], wh_output)], -1)
  index, iou = responsible(pred_boxes, pred_coded, true_box, coded, (sy, sx))
  resp = jax.nn.one_hot(index, nb, dtype=jnp.float32) * has_obj[:, None]     # [n, B]
  target_iou = jnp.sum(resp * iou, axis=1, keepdims=True)
  true_root = jnp.sqrt(jnp.where(has_obj[:, None], coded[:, 2:], 1.0))        # [n, 2]
  xy = jnp.sum(jnp.square(coords[..., :2] - coded[:, None, :2]), axis=-1)
  wh = jnp.sum(jnp.square(root_wh(coords[..., 2:], wh_output) - true_root[:, None]), axis=-1)
  cls = jnp.sum(jnp.square(probs - onehot), axis=-1)
  return {"loss_xy": lambda_coord * jnp.sum(resp * xy),
          "loss_wh": lambda_coord * jnp.sum(resp * wh),
          "loss_obj": jnp.sum(resp * jnp.square(conf - target_iou)),
          "loss_noobj": lambda_noobj * jnp.sum((1.0 - resp) * jnp.square(conf)),
          "loss_cls": jnp.sum(has_obj * cls)}


def yolov1_losses(class_probs: jax.Array, confidence: jax.Array, coords: jax.Array,
                  targets: dict, canvas_hw: tuple[int, int], *, wh_output: str = "sqrt",
                  lambda_coord: float = 5.0, lambda_noobj: float = 0.5) -> dict:
  """The paper's loss (module docstring) as the five terms `LOSS_NAMES`, each summed per image
  and averaged over the batch (their sum: equation 3 divided by the batch size).

  Args:
    class_probs: `[B, S, S, C]`; confidence: `[B, S, S, Bb]`; coords: `[B, S, S, Bb, 4]`
      (x, y, w', h'), the network's raw outputs.
    targets: `boxes [B, M, 4]` (canvas pixels, xyxy), `classes [B, M]` (1..C), `box_valid`.
    canvas_hw: `(H, W)` of the network input.
  """
  check_wh_output(wh_output, "yolov1_losses")
  b, sy, sx, nb = confidence.shape
  if class_probs.shape[:3] != (b, sy, sx) or coords.shape != (b, sy, sx, nb, 4):
    raise ValueError(f"yolov1_losses: class_probs [B, S, S, C], confidence [B, S, S, Bb] and "
                     f"coords [B, S, S, Bb, 4] must agree; got {tuple(class_probs.shape)}, "
                     f"{tuple(confidence.shape)}, {tuple(coords.shape)}")

  def one(p, c, x, bx, cl, v):
    return _one_image(p, c, x, bx, cl, v, tuple(canvas_hw), wh_output, lambda_coord,
                      lambda_noobj)

  per_image = jax.vmap(one)(class_probs.astype(jnp.float32), confidence.astype(jnp.float32),
                            coords.astype(jnp.float32),
                            jnp.asarray(targets["boxes"], jnp.float32),
                            jnp.asarray(targets["classes"], jnp.int32),
                            jnp.asarray(targets["box_valid"], bool))
  return {k: jnp.mean(per_image[k]) for k in LOSS_NAMES}
