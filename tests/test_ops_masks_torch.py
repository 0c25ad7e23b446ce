"""jaxcv.ops.masks and jaxcv.ops.keypoints against torchvision's own functions
(`models.detection.roi_heads.paste_masks_in_image`, `keypoints_to_heatmap`,
`heatmaps_to_keypoints`, `ops.masks_to_boxes`). Skipped without torch.
"""
from __future__ import annotations

import jax
import numpy as np
from torch_reference import import_torchvision

from jaxcv.ops import keypoints as kp
from jaxcv.ops import masks as mk

torch, torchvision = import_torchvision()
from torchvision.models.detection import roi_heads

F32 = np.float32
K, M, IMG_H, IMG_W = 24, 14, 40, 50
P, S = 5, 14

paste = jax.jit(lambda m, b: mk.paste_masks_in_image(m, b, (IMG_H, IMG_W)))
decode = jax.jit(lambda m, r: kp.heatmaps_to_keypoints(m, r, max_size=72))


def overlapping_boxes(rng, k):
  """Boxes overlapping the image (torchvision fails on boxes wholly outside it), some partly
  outside, some tiny (< 1 px)."""
  x1 = rng.uniform(-15, IMG_W - 4, k)
  y1 = rng.uniform(-15, IMG_H - 4, k)
  w = rng.uniform(0, 45, k)
  h = rng.uniform(0, 35, k)
  w[:4], h[:4] = rng.uniform(0, 2, 4), rng.uniform(0, 2, 4)
  w, h = np.maximum(w, 2 - x1), np.maximum(h, 2 - y1)
  return np.stack([x1, y1, np.minimum(x1 + w, IMG_W + 10), np.minimum(y1 + h, IMG_H + 10)],
                  1).astype(F32)


def test_paste_masks_in_image_matches_torchvision():
  rng = np.random.default_rng(0)
  worst = 0.0
  for _ in range(3):
    masks = rng.uniform(size=(K, M, M)).astype(F32)
    boxes = overlapping_boxes(rng, K)
    got = np.asarray(paste(masks, boxes))
    want = roi_heads.paste_masks_in_image(torch.tensor(masks)[:, None], torch.tensor(boxes),
                                          (IMG_H, IMG_W)).numpy()[:, 0]
    assert (want > 0).sum() > 1000
    worst = max(worst, float(np.abs(got - want).max()))
  for padding in (0, 2):
    got = mk.paste_masks_in_image(masks, boxes, (IMG_H, IMG_W), padding=padding)
    want = roi_heads.paste_masks_in_image(torch.tensor(masks)[:, None], torch.tensor(boxes),
                                          (IMG_H, IMG_W), padding=padding).numpy()[:, 0]
    worst = max(worst, float(np.abs(np.asarray(got) - want).max()))
  print(f"paste_masks_in_image max abs err {worst:.2e}")
  assert worst <= 1e-5


def test_masks_to_boxes_matches_torchvision():
  rng = np.random.default_rng(1)
  masks = rng.uniform(size=(8, 9, 11)) > 0.93
  masks[2] = False  # empty
  masks[3] = False
  masks[3, 4, 5] = True  # one pixel
  got = np.asarray(mk.masks_to_boxes(masks))
  want = torchvision.ops.masks_to_boxes(torch.tensor(masks)).numpy()
  np.testing.assert_array_equal(got, want)


def test_keypoints_to_heatmap_matches_torchvision():
  rng = np.random.default_rng(2)
  rois = overlapping_boxes(rng, K)
  rois[:, 2:] = np.maximum(rois[:, 2:], rois[:, :2] + 0.5)
  span = rois[:, None, 2:] - rois[:, None, :2]
  xy = rois[:, None, :2] + rng.uniform(-0.2, 1.2, (K, P, 2)) * span
  kps = np.concatenate([xy, rng.integers(0, 3, (K, P, 1))], -1).astype(F32)
  kps[:, 0, 0] = rois[:, 2]  # exactly on x2 / y2: the boundary rule
  kps[:, 1, 1] = rois[:, 3]
  kps[:, :2, 2] = 2
  index, valid = kp.keypoints_to_heatmap(kps, rois, 56)
  want_index, want_valid = roi_heads.keypoints_to_heatmap(torch.tensor(kps),
                                                          torch.tensor(rois), 56)
  assert 0 < int(want_valid.sum()) < K * P
  np.testing.assert_array_equal(np.asarray(index), want_index.numpy())
  np.testing.assert_array_equal(np.asarray(valid), want_valid.numpy().astype(bool))


def test_heatmaps_to_keypoints_matches_torchvision():
  rng = np.random.default_rng(3)
  worst_xy = worst_score = 0.0
  for _ in range(3):
    maps = rng.normal(size=(K, P, S, S)).astype(F32)
    x1y1 = rng.uniform(-10, 100, (K, 2))
    wh = rng.uniform(0.2, 64, (K, 2))
    wh[0], wh[1], wh[2] = S, (0.3, 0.6), (64, 63.5)  # identity resize, tiny, largest
    rois = np.concatenate([x1y1, x1y1 + wh], 1).astype(F32)
    got_xy, got_score = decode(maps.transpose(0, 2, 3, 1), rois)
    want_xy, want_score = roi_heads.heatmaps_to_keypoints(torch.tensor(maps), torch.tensor(rois))
    worst_xy = max(worst_xy, float(np.abs(np.asarray(got_xy) - want_xy.numpy()).max()))
    worst_score = max(worst_score,
                      float(np.abs(np.asarray(got_score) - want_score.numpy()).max()))
  print(f"heatmaps_to_keypoints max abs err: xy {worst_xy:.2e}, score {worst_score:.2e}")
  # xy up to ~170 px in float32: 1e-4 absolute is a few ulp; an argmax off by one cell would
  # move a keypoint by >= 0.2 px
  assert worst_xy <= 1e-4
  assert worst_score <= 1e-4
