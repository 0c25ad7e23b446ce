"""Anchors and priors: torchvision's AnchorGenerator and SSD DefaultBoxGenerator grids, the
darknet YOLO priors, and k-means anchor clustering (YOLOv2).

Why: detection heads are trained against a fixed set of anchors; loading torchvision weights
only works when the anchors come out in torchvision's exact values and order. The grids depend
only on static Python arguments (image and feature-map sizes), so they are computed in NumPy
float32 at trace time, with torchvision's operation order, and returned as jnp float32
constants; nothing is traced. Boxes are `[N, 4]` `(x1, y1, x2, y2)` in pixels.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.ops.box_coder import wh_iou

# --------------------------------------------------------------------------------------------
# torchvision AnchorGenerator (Faster R-CNN, RetinaNet)


def _size_pair(size, name: str) -> tuple[int, int]:
  if len(size) != 2 or any(int(s) != s or s <= 0 for s in size):
    raise ValueError(f"{name} must be two positive integers (H, W), got {size!r}")
  return int(size[0]), int(size[1])


def _normalize_anchor_args(sizes, aspect_ratios):
  """torchvision's conveniences: flat `sizes` mean one size per level; flat `aspect_ratios`
  are shared by all levels."""
  if len(sizes) == 0:
    raise ValueError("sizes must name at least one level")
  if not isinstance(sizes[0], (list, tuple)):
    sizes = tuple((s,) for s in sizes)
  if len(aspect_ratios) == 0:
    raise ValueError("aspect_ratios must not be empty")
  if not isinstance(aspect_ratios[0], (list, tuple)):
    aspect_ratios = (tuple(aspect_ratios),) * len(sizes)
  if len(sizes) != len(aspect_ratios):
    raise ValueError(f"sizes has {len(sizes)} levels but aspect_ratios has "
                     f"{len(aspect_ratios)}")
  for s, a in zip(sizes, aspect_ratios):
    if len(s) == 0 or len(a) == 0 or min(s) <= 0 or min(a) <= 0:
      raise ValueError(f"sizes and aspect_ratios must be non-empty and positive, got {s!r} and "
                       f"{a!r}")
  return tuple(tuple(s) for s in sizes), tuple(tuple(a) for a in aspect_ratios)


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
  """Zero-centred anchors of one level, float32 `[len(aspect_ratios) * len(sizes), 4]`, as
  `AnchorGenerator.generate_anchors`: `h_ratio = sqrt(ar)` (ar = height / width),
  `w_ratio = 1 / h_ratio`, `ws = w_ratio * size` (ratio-major order), and
  `round([-ws, -hs, ws, hs] / 2)` (round half to even), all in float32."""
  scales = np.asarray(sizes, np.float32)
  ratios = np.asarray(aspect_ratios, np.float32)
  h_ratios = np.sqrt(ratios)
  w_ratios = np.float32(1) / h_ratios
  ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
  hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
  base = np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2)
  return np.round(base).astype(np.float32)


def num_anchors_per_location(sizes, aspect_ratios=((0.5, 1.0, 2.0),)) -> list[int]:
  """Anchors per feature-map cell for each level: `len(sizes[l]) * len(aspect_ratios[l])`."""
  sizes, aspect_ratios = _normalize_anchor_args(sizes, aspect_ratios)
  return [len(s) * len(a) for s, a in zip(sizes, aspect_ratios)]


def grid_anchors_per_level(image_size: tuple[int, int], feature_sizes,
                           sizes=((128, 256, 512),),
                           aspect_ratios=((0.5, 1.0, 2.0),)) -> list[jax.Array]:
  """Per-level anchors of `torchvision AnchorGenerator(sizes, aspect_ratios)`: a list of
  float32 `[h_l * w_l * A_l, 4]` arrays.

  Args:
    image_size: `(H, W)` of the (padded) input batch.
    feature_sizes: `[(h, w), ...]`, one per level.
    sizes, aspect_ratios: per level; flat tuples are expanded as torchvision does.

  The stride of a level is `(H // h, W // w)` (integer division, as torchvision); anchors are
  `cell_anchors` shifted by `(j * stride_w, i * stride_h)`, ordered by row `i`, then column
  `j`, then the cell's anchors (ratio-major, then size). A feature map larger than the image
  (stride 0) is a `ValueError`.
  """
  h_img, w_img = _size_pair(image_size, "image_size")
  sizes, aspect_ratios = _normalize_anchor_args(sizes, aspect_ratios)
  feature_sizes = [_size_pair(f, "each feature size") for f in feature_sizes]
  if len(feature_sizes) != len(sizes):
    raise ValueError(f"{len(feature_sizes)} feature sizes for {len(sizes)} levels of "
                     "sizes/aspect_ratios")
  out = []
  for (fh, fw), s, a in zip(feature_sizes, sizes, aspect_ratios):
    stride_h, stride_w = h_img // fh, w_img // fw
    if stride_h == 0 or stride_w == 0:
      raise ValueError(f"feature size {(fh, fw)} is larger than image size {(h_img, w_img)}")
    base = cell_anchors(s, a)
    shift_y, shift_x = np.meshgrid(np.arange(fh, dtype=np.int64) * stride_h,
                                   np.arange(fw, dtype=np.int64) * stride_w, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=1).astype(np.float32)
    out.append(jnp.asarray((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)))
  return out


def grid_anchors(image_size: tuple[int, int], feature_sizes, sizes=((128, 256, 512),),
                 aspect_ratios=((0.5, 1.0, 2.0),)) -> jax.Array:
  """All levels of `grid_anchors_per_level` concatenated: float32
  `[sum_l h_l * w_l * A_l, 4]`, the anchors torchvision's AnchorGenerator gives each image."""
  return jnp.concatenate(grid_anchors_per_level(image_size, feature_sizes, sizes,
                                                aspect_ratios), axis=0)


# --------------------------------------------------------------------------------------------
# torchvision DefaultBoxGenerator (SSD)


def ssd_scales(num_levels: int, min_ratio: float = 0.15, max_ratio: float = 0.9) -> list[float]:
  """DefaultBoxGenerator's scales when none are given: `num_levels + 1` values, linear from
  `min_ratio` to `max_ratio` plus a final 1.0 (or `[min_ratio, max_ratio]` for one level)."""
  if num_levels > 1:
    r = max_ratio - min_ratio
    return [min_ratio + r * k / (num_levels - 1.0) for k in range(num_levels)] + [1.0]
  return [min_ratio, max_ratio]


def ssd_wh_pairs(aspect_ratios, scales) -> list[np.ndarray]:
  """Per level float32 `[2 + 2 * len(aspect_ratios[k]), 2]` relative (w, h):
  `(s_k, s_k)`, `(s'_k, s'_k)` with `s'_k = sqrt(s_k * s_{k+1})`, then per ratio
  `(s_k sqrt(ar), s_k / sqrt(ar))` and its transpose (DefaultBoxGenerator._generate_wh_pairs,
  in float64 then cast)."""
  out = []
  for k, ratios in enumerate(aspect_ratios):
    s_k = scales[k]
    s_prime = math.sqrt(scales[k] * scales[k + 1])
    pairs = [[s_k, s_k], [s_prime, s_prime]]
    for ar in ratios:
      sq = math.sqrt(ar)
      w, h = s_k * sq, s_k / sq
      pairs.extend([[w, h], [h, w]])
    out.append(np.asarray(pairs, np.float32))
  return out


def ssd_num_anchors_per_location(aspect_ratios) -> list[int]:
  """`2 + 2 * len(aspect_ratios[k])` default boxes per cell for each level."""
  return [2 + 2 * len(r) for r in aspect_ratios]


def ssd_default_boxes(image_size: tuple[int, int], feature_sizes, aspect_ratios,
                      min_ratio: float = 0.15, max_ratio: float = 0.9,
                      scales: Sequence[float] | None = None,
                      steps: Sequence[int] | None = None, clip: bool = True) -> jax.Array:
  """SSD default boxes in pixels, float32 `[sum_k h_k * w_k * (2 + 2 * len(ar_k)), 4]` xyxy,
  equal to `torchvision DefaultBoxGenerator(aspect_ratios, min_ratio, max_ratio, scales,
  steps, clip)` applied to an image batch of `image_size = (H, W)` and feature maps of
  `feature_sizes = [(h, w), ...]`.

  Order: level, then cell row, column, then the level's (w, h) pairs (`ssd_wh_pairs`).
  Centres are `(j + 0.5) / (W / steps[k])` (or `/ w_k` without steps), relative sizes are
  clamped to [0, 1] when `clip` (in cxcywh form, before conversion), and the xyxy box is
  `(c - 0.5 * wh) * (W, H)`, all in float32 like torchvision. torchvision's ssd300_vgg16:
  `aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]`,
  `scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]`, `steps=[8, 16, 32, 64, 100, 300]`,
  feature sizes 38, 19, 10, 5, 3, 1.
  """
  h_img, w_img = _size_pair(image_size, "image_size")
  feature_sizes = [_size_pair(f, "each feature size") for f in feature_sizes]
  num = len(aspect_ratios)
  if len(feature_sizes) != num:
    raise ValueError(f"{len(feature_sizes)} feature sizes for {num} levels of aspect_ratios")
  if steps is not None and len(steps) != num:
    raise ValueError("aspect_ratios and steps should have the same length")
  if steps is not None and min(steps) <= 0:
    raise ValueError(f"steps must be positive, got {steps!r}")
  if any(ar <= 0 for r in aspect_ratios for ar in r):
    raise ValueError(f"aspect ratios must be positive, got {aspect_ratios!r}")
  scales = list(scales) if scales is not None else ssd_scales(num, min_ratio, max_ratio)
  if len(scales) < num + 1:
    raise ValueError(f"need {num + 1} scales for {num} levels, got {len(scales)}")
  wh_pairs = ssd_wh_pairs(aspect_ratios, scales)
  boxes = []
  for k, (fh, fw) in enumerate(feature_sizes):
    if steps is not None:
      x_f, y_f = w_img / steps[k], h_img / steps[k]
    else:
      y_f, x_f = fh, fw
    shifts_x = (np.arange(fw).astype(np.float32) + np.float32(0.5)) / np.float32(x_f)
    shifts_y = (np.arange(fh).astype(np.float32) + np.float32(0.5)) / np.float32(y_f)
    shift_y, shift_x = np.meshgrid(shifts_y, shifts_x, indexing="ij")
    centres = np.stack([shift_x.reshape(-1), shift_y.reshape(-1)], axis=-1)
    wh = np.clip(wh_pairs[k], 0, 1) if clip else wh_pairs[k]
    n = wh.shape[0]
    centres = np.repeat(centres, n, axis=0)
    wh = np.tile(wh, (fh * fw, 1))
    boxes.append(np.concatenate([centres, wh], axis=1))
  d = np.concatenate(boxes, axis=0).astype(np.float32)
  xy_size = np.asarray([w_img, h_img], np.float32)
  half = np.float32(0.5) * d[:, 2:]
  out = np.concatenate([(d[:, :2] - half) * xy_size, (d[:, :2] + half) * xy_size], axis=-1)
  return jnp.asarray(out)


# --------------------------------------------------------------------------------------------
# YOLO priors (darknet cfg files)

# YOLOv2 anchors (w, h) in grid cells of the 13x13 (stride 32) output, as the `[region]`
# `anchors=` line of darknet's cfg/yolov2-voc.cfg and cfg/yolov2.cfg (COCO).
YOLOV2_VOC_ANCHORS_CELLS = np.asarray(
    [[1.3221, 1.73145], [3.19275, 4.00944], [5.05587, 8.09892], [9.47112, 4.84053],
     [11.2364, 10.0071]], np.float32)
YOLOV2_COCO_ANCHORS_CELLS = np.asarray(
    [[0.57273, 0.677385], [1.87446, 2.06253], [3.33843, 5.47434], [7.88282, 3.52778],
     [9.77052, 9.16828]], np.float32)
YOLOV2_STRIDE = 32
# YOLOv3 anchors (w, h) in pixels of the 416x416 input, darknet cfg/yolov3.cfg; the `[yolo]`
# layers use mask 6,7,8 at stride 32, 3,4,5 at stride 16 and 0,1,2 at stride 8.
YOLOV3_COCO_ANCHORS = np.asarray(
    [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198],
     [373, 326]], np.float32)
YOLOV3_MASKS = ((6, 7, 8), (3, 4, 5), (0, 1, 2))
YOLOV3_STRIDES = (32, 16, 8)

YOLO_PRIOR_NAMES = ("yolov2_voc", "yolov2_coco", "yolov3_coco")


def yolo_priors(name: str) -> list[tuple[int, jax.Array]]:
  """The darknet priors of `name` (one of `YOLO_PRIOR_NAMES`) as a list of
  `(stride, anchors_wh float32 [A, 2] in pixels)`, one per output scale, coarsest first, ready
  for `jaxcv.ops.box_coder.yolo_decode`. YOLOv2's cell-unit anchors are multiplied by 32."""
  if name == "yolov2_voc":
    return [(YOLOV2_STRIDE, jnp.asarray(YOLOV2_VOC_ANCHORS_CELLS * YOLOV2_STRIDE))]
  if name == "yolov2_coco":
    return [(YOLOV2_STRIDE, jnp.asarray(YOLOV2_COCO_ANCHORS_CELLS * YOLOV2_STRIDE))]
  if name == "yolov3_coco":
    return [(s, jnp.asarray(YOLOV3_COCO_ANCHORS[list(m)]))
            for s, m in zip(YOLOV3_STRIDES, YOLOV3_MASKS)]
  raise ValueError(f"unknown YOLO priors {name!r}; known: {', '.join(YOLO_PRIOR_NAMES)}")


# --------------------------------------------------------------------------------------------
# k-means anchors (YOLOv2)


def kmeans_anchors(wh: jax.Array, k: int, key: jax.Array | None = None, num_iters: int = 30,
                   valid: jax.Array | None = None,
                   init: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """k-means over box sizes with distance `1 - IoU` of boxes centred at the origin (YOLOv2).

  Args:
    wh: float `[N, 2]` box (w, h), > 0 where valid.
    k: number of anchors (static), `1 <= k <= N`.
    key: PRNG key choosing the initial centroids: `k` distinct valid boxes, uniformly (needed
      unless `init` is given).
    num_iters: Lloyd iterations (static, fixed: no early stop, so shapes and work are static).
    valid: optional bool `[N]`; False rows (padding) are ignored. Needs >= k valid rows.
    init: optional float `[k, 2]` initial centroids instead of the key's draw.

  Each iteration assigns every box to the centroid of highest IoU (ties: lowest index) and
  moves each centroid to the mean (w, h) of its boxes; a centroid with no boxes stays put.

  Returns:
    `(centroids float32 [k, 2] sorted by area w * h ascending, mean_iou float32 scalar)`, the
    mean over valid boxes of the IoU with their best final centroid. Deterministic for a key.
  """
  wh = jnp.asarray(wh, jnp.float32)
  if wh.ndim != 2 or wh.shape[-1] != 2:
    raise ValueError(f"wh must be [N, 2], got shape {tuple(wh.shape)}")
  n = wh.shape[0]
  if not 1 <= k <= n:
    raise ValueError(f"k must be in [1, N={n}], got {k}")
  if num_iters < 0:
    raise ValueError(f"num_iters must be >= 0, got {num_iters}")
  valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
  if valid.shape != (n,):
    raise ValueError(f"valid must be [N={n}], got shape {valid.shape}")
  if init is None:
    if key is None:
      raise ValueError("kmeans_anchors needs a key or init centroids")
    # k distinct valid rows, uniformly: valid rows get the highest random priorities.
    priority = jnp.where(valid, jax.random.uniform(key, (n,)), -1.0)
    centroids = wh[jax.lax.top_k(priority, k)[1]]
  else:
    centroids = jnp.asarray(init, jnp.float32)
    if centroids.shape != (k, 2):
      raise ValueError(f"init must be [k={k}, 2], got shape {centroids.shape}")
  weight = valid.astype(jnp.float32)

  def assign(c):
    return jnp.argmax(wh_iou(wh[:, None, :], c[None, :, :]), axis=1)

  def step(_, c):
    onehot = jax.nn.one_hot(assign(c), k, dtype=jnp.float32) * weight[:, None]
    count = onehot.sum(0)
    total = jnp.einsum("nk,nd->kd", onehot, wh, precision=jax.lax.Precision.HIGHEST)
    return jnp.where(count[:, None] > 0, total / jnp.maximum(count, 1.0)[:, None], c)

  centroids = jax.lax.fori_loop(0, num_iters, step, centroids)
  best = wh_iou(wh[:, None, :], centroids[None, :, :]).max(axis=1)
  mean_iou = jnp.sum(jnp.where(valid, best, 0.0)) / jnp.maximum(weight.sum(), 1.0)
  order = jnp.argsort(centroids[:, 0] * centroids[:, 1], stable=True)
  return centroids[order], mean_iou
