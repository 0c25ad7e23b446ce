"""Instance-mask ops: `paste_masks_in_image` (Mask R-CNN inference) and `masks_to_boxes`.

What: torchvision's `models.detection.roi_heads.paste_masks_in_image` and
`ops.masks_to_boxes` with the same numbers, as pure `jnp` functions with static shapes.
Why a reformulation: torchvision resizes each RoI's mask to its own integer box size
(data-dependent shapes) and copies it into the image. Here every image pixel inside the
integer box evaluates the same `F.interpolate(bilinear, align_corners=False)` formula
directly (a gather of the 2 x 2 neighbouring mask cells), so the output is `[K, H, W]`
whatever the boxes are, and the op works under `jit`/`vmap`.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxcv.ops.boxes import check_boxes
from jaxcv.ops.common import true_divide

__all__ = ["masks_to_boxes", "paste_masks_in_image"]


def _linear_taps(dst, in_size, out_size):
  """PyTorch's bilinear align_corners=False source taps for output positions `dst` (float32
  ints) of a resize in_size -> out_size (out_size may be an array): (i0, i1, w0, w1)."""
  scale = true_divide(jnp.asarray(in_size, jnp.float32), out_size.astype(jnp.float32))
  src = jnp.maximum(scale * (dst + 0.5) - 0.5, 0.0)
  i0 = jnp.floor(src).astype(jnp.int32)
  i1 = i0 + (i0 < in_size - 1).astype(jnp.int32)
  w1 = src - i0.astype(jnp.float32)
  return i0, i1, 1.0 - w1, w1


def _paste_one(mask, box, image_shape):
  """mask [Mp, Mp] (padded), box int32 [4] (expanded, truncated); returns [H, W]."""
  im_h, im_w = image_shape
  mp = mask.shape[0]
  x1, y1, x2, y2 = box[0], box[1], box[2], box[3]
  w = jnp.maximum(x2 - x1 + 1, 1)
  h = jnp.maximum(y2 - y1 + 1, 1)
  px = jnp.arange(im_w, dtype=jnp.int32)
  py = jnp.arange(im_h, dtype=jnp.int32)
  cx = px - x1  # column of the resized mask
  cy = py - y1
  in_x = (cx >= 0) & (cx < x2 - x1 + 1)
  in_y = (cy >= 0) & (cy < y2 - y1 + 1)
  x0i, x1i, wx0, wx1 = _linear_taps(cx.astype(jnp.float32), mp, w)
  y0i, y1i, wy0, wy1 = _linear_taps(cy.astype(jnp.float32), mp, h)
  x0i, x1i = jnp.clip(x0i, 0, mp - 1), jnp.clip(x1i, 0, mp - 1)
  y0i, y1i = jnp.clip(y0i, 0, mp - 1), jnp.clip(y1i, 0, mp - 1)
  # width first, then height, as PyTorch's CPU kernel combines them
  rows = mask[:, x0i] * wx0 + mask[:, x1i] * wx1  # [Mp, W]
  out = rows[y0i] * wy0[:, None] + rows[y1i] * wy1[:, None]  # [H, W]
  inside = in_y[:, None] & in_x[None, :]
  return jnp.where(inside, out, jnp.zeros_like(out))


def paste_masks_in_image(masks, boxes, image_shape: Sequence[int], padding: int = 1):
  """Pastes per-RoI mask probabilities into full images, as torchvision's
  `paste_masks_in_image` (Mask R-CNN postprocessing).

  Args:
    masks: float `[K, M, M]` mask probabilities of each RoI (torchvision's `[K, 1, M, M]`
      without the channel).
    boxes: float32 `[K, 4]` `(x1, y1, x2, y2)` image pixels.
    image_shape: static `(H, W)` of the image.
    padding: static; masks are zero-padded by `padding` cells and boxes scaled by
      `(M + 2 padding) / M` about their centres, then truncated toward zero to integers.

  Returns:
    float32 `[K, H, W]`: inside the integer box `[x1, x2] x [y1, y2]` (inclusive, clipped to
    the image) the padded mask resized bilinearly (align_corners=False) to the box's
    `(y2 - y1 + 1, x2 - x1 + 1)` size; 0 elsewhere. Boxes with x2 < x1 or y2 < y1 paste
    nothing (torchvision fails on some of them).
  """
  masks = jnp.asarray(masks)
  if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
    raise ValueError(f"masks must have shape [K, M, M], got {masks.shape}")
  boxes = check_boxes(boxes, ranks=(2,), dtype=jnp.float32)  # inverted boxes paste nothing
  if boxes.shape[0] != masks.shape[0]:
    raise ValueError(f"masks and boxes must have the same K, got {masks.shape[0]} masks and "
                     f"{boxes.shape[0]} boxes")
  if len(image_shape) != 2 or min(int(s) for s in image_shape) < 1:
    raise ValueError(f"image_shape must be a positive (H, W), got {image_shape!r}")
  padding = int(padding)
  if padding < 0:
    raise ValueError(f"padding must be >= 0, got {padding}")
  image_shape = (int(image_shape[0]), int(image_shape[1]))
  m = masks.shape[-1]
  masks = jnp.pad(masks.astype(jnp.float32), ((0, 0), (padding, padding), (padding, padding)))
  scale = jnp.float32(float(m + 2 * padding) / m)
  w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
  h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
  x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
  y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
  expanded = jnp.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], axis=1)
  int_boxes = jnp.trunc(expanded).astype(jnp.int32)  # torch's .to(int64): toward zero
  return jax.vmap(lambda mk, bx: _paste_one(mk, bx, image_shape))(masks, int_boxes)


def masks_to_boxes(masks):
  """Tight boxes around masks, as `torchvision.ops.masks_to_boxes`.

  Args:
    masks: `[K, H, W]`, nonzero = inside.

  Returns:
    float32 `[K, 4]` `(x1, y1, x2, y2)` with x2/y2 the LAST inside column/row (inclusive,
    not + 1). An empty mask gives `(0, 0, 0, 0)` (torchvision's convention); tell it from a
    one-pixel mask at the origin with `masks.any((1, 2))`.
  """
  masks = jnp.asarray(masks)
  if masks.ndim != 3:
    raise ValueError(f"masks must have shape [K, H, W], got {masks.shape}")
  _, h, w = masks.shape
  inside = masks != 0
  rows = jnp.any(inside, axis=2)
  cols = jnp.any(inside, axis=1)
  y1 = jnp.argmax(rows, axis=1)
  x1 = jnp.argmax(cols, axis=1)
  y2 = (h - 1) - jnp.argmax(rows[:, ::-1], axis=1)
  x2 = (w - 1) - jnp.argmax(cols[:, ::-1], axis=1)
  boxes = jnp.stack([x1, y1, x2, y2], axis=1).astype(jnp.float32)
  return jnp.where(jnp.any(rows, axis=1)[:, None], boxes, 0.0)
