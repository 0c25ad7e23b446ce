"""Tests for jaxcv.data.augment: every label moves with the image.

The test example encodes where each pixel came from: `depth` = 1 + source pixel index (exact,
moved by nearest), `image` channels 0/1 = the source x / W and y / H of the pixel centre
(linear, so bilinear resampling gives the sampled source position itself). From the output's
depth we read each output pixel's source pixel and check that the image, normals, masks,
semantic and panoptic maps all show that source pixel's values; boxes are checked against the
extent of their (rectangle) masks and keypoints against marker pixels painted into the
semantic map at their positions. Deterministic transforms are also checked against the
analytic coordinate map.
"""
from __future__ import annotations

import numpy as np
import pytest

from jaxcv.data import augment as A

H, W = 48, 64
FLIP_PAIRS = [(0, 1)]  # keypoint 0 = left extreme point, 1 = right extreme point


def make_example(seed: int = 0, h: int = H, w: int = W, extra_boxes=()) -> dict:
  """Up to four non-overlapping rectangles (one per quadrant) with masks, 2 keypoints each
  on 3x3 markers (semantic label 100 + 2 * object + k), panoptic things + 2 stuff regions."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  image = np.stack([(xx + 0.5) / w, (yy + 0.5) / h, rng.random((h, w))], -1).astype(np.float32)
  depth = (1 + yy * w + xx).astype(np.float32)
  normals = np.stack([np.cos(xx * 0.3) * 0.5, np.sin(yy * 0.2) * 0.5, -np.ones((h, w))], -1)
  normals = (normals / np.linalg.norm(normals, axis=-1, keepdims=True)).astype(np.float32)
  boxes, masks, kps = [], [], []
  semantic = np.zeros((h, w), np.int32)
  panoptic = np.where(xx < w // 2, 50, 51).astype(np.int32)
  for qy in range(2):
    for qx in range(2):
      ch, cw = h // 2, w // 2
      bw, bh = int(rng.integers(8, cw - 1)), int(rng.integers(5, ch - 1))
      x1 = qx * cw + int(rng.integers(0, cw - bw + 1))
      y1 = qy * ch + int(rng.integers(0, ch - bh + 1))
      o = len(boxes)
      boxes.append([x1, y1, x1 + bw, y1 + bh])
      m = np.zeros((h, w), bool)
      m[y1:y1 + bh, x1:x1 + bw] = True
      masks.append(m)
      semantic[m] = 1 + o % 3
      panoptic[m] = 1 + o
      cy = y1 + bh // 2
      kx = [x1 + 2, x1 + bw - 3]
      kps.append([[kx[0] + 0.5, cy + 0.5, 2], [kx[1] + 0.5, cy + 0.5, 1]])
      for k in range(2):
        semantic[cy - 1:cy + 2, kx[k] - 1:kx[k] + 2] = 100 + 2 * o + k
  n = len(boxes)
  for b in extra_boxes:  # boxes without pixels (zero-area or out-of-image)
    boxes.append(list(b))
    masks.append(np.zeros((h, w), bool))
    kps.append([[b[0], b[1], 2], [b[2], b[3], 2]])
  total = len(boxes)
  masks = np.array(masks, bool)
  seg_ids = np.array([1 + i for i in range(n)] + [50, 51], np.int32)
  return {
      "image": image, "image_id": np.int32(7), "depth": depth, "normals": normals,
      "sketch": image[..., 2:3].copy(), "semantic": semantic, "panoptic": panoptic,
      "pixel_valid": np.ones((h, w), bool),
      "boxes": np.array(boxes, np.float32), "classes": np.arange(1, total + 1, dtype=np.int32),
      "iscrowd": np.arange(total) % 2 == 1, "difficult": np.arange(total) % 3 == 0,
      "area": masks.reshape(total, -1).sum(1).astype(np.float32), "masks": masks,
      "keypoints": np.array(kps, np.float32).reshape(total, 2, 3),
      "segment_ids": seg_ids, "segment_classes": np.where(seg_ids >= 50, 90, seg_ids % 3 + 1),
      "segment_isthing": seg_ids < 50, "segment_iscrowd": np.zeros(len(seg_ids), bool),
  }


def check_consistent(src: dict, out: dict, flipped: bool = False, kp_tol: float = 1.0) -> None:
  """Every key of `out` agrees with the source pixel that `out["depth"]` names."""
  h, w = src["image"].shape[:2]
  for k, v in src.items():
    assert k in out, k
    assert np.asarray(out[k]).dtype == np.asarray(v).dtype, k
  oh, ow = out["image"].shape[:2]
  valid = out["pixel_valid"]
  idx = np.rint(out["depth"]).astype(int) - 1
  si, sj = idx // w, idx % w
  assert np.all(out["depth"] > 0) and np.all((idx >= 0) & (idx < h * w))
  # image: the bilinearly sampled source position lies in the nearest-sampled source pixel
  xs, ys = out["image"][..., 0] * w, out["image"][..., 1] * h
  eps = 1e-3
  assert np.all((xs >= sj - eps) & (xs <= sj + 1 + eps) | ~valid)
  assert np.all((ys >= si - eps) & (ys <= si + 1 + eps) | ~valid)
  assert np.all(out["image"][~valid] == 0) and np.all(out["sketch"][~valid] == 0)
  assert out["image"].min() >= 0 and out["image"].max() <= 1
  sign = np.array([-1.0 if flipped else 1.0, 1, 1], np.float32)
  np.testing.assert_array_equal(out["normals"][valid], (src["normals"][si, sj] * sign)[valid])
  np.testing.assert_allclose(np.linalg.norm(out["normals"], axis=-1), 1, atol=1e-5)
  for key, fill in (("semantic", 255), ("panoptic", 0)):
    np.testing.assert_array_equal(out[key][valid], src[key][si, sj][valid])
    assert np.all(out[key][~valid] == fill)
  # objects: rows follow the source objects named by `classes`
  objs = out["classes"] - 1
  for key in ("iscrowd", "difficult"):
    np.testing.assert_array_equal(out[key], src[key][objs])
  assert out["masks"].shape == (len(objs), oh, ow)
  for r, o in enumerate(objs):
    m = out["masks"][r]
    np.testing.assert_array_equal(m[valid], src["masks"][o][si, sj][valid])
    assert not m[~valid].any()
    assert out["area"][r] == m.sum()
    b = out["boxes"][r]
    assert 0 <= b[0] <= b[2] <= ow and 0 <= b[1] <= b[3] <= oh
    if m.any():  # a box rasterised as a mask gives back the box, within a pixel
      rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
      extent = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
      assert np.abs(b - extent).max() <= 1.0, (r, b, extent)
    for k in range(2):
      x, y, v = out["keypoints"][r, k]
      marker = 100 + 2 * o + (1 - k if flipped else k)
      if v > 0:
        assert v == src["keypoints"][o, 1 - k if flipped else k, 2]
        assert 0 <= x <= ow and 0 <= y <= oh
        py, px = np.nonzero(out["semantic"] == marker)
        assert py.size, (r, k, "marker vanished although the keypoint is visible")
        dist = np.hypot(px + 0.5 - x, py + 0.5 - y).min()
        assert dist <= kp_tol, (r, k, x, y, dist)
      else:
        outside = x < 0 or x > ow or y < 0 or y > oh
        assert outside or src["keypoints"][o, 1 - k if flipped else k, 2] == 0
  # panoptic segments: exactly the ids on the map, with their source attributes
  ids = set(np.unique(out["panoptic"]).tolist()) - {0}
  assert set(out["segment_ids"].tolist()) == ids
  lookup = dict(zip(src["segment_ids"].tolist(), src["segment_classes"].tolist()))
  assert [lookup[i] for i in out["segment_ids"].tolist()] == out["segment_classes"].tolist()
  assert out["image_id"] == src["image_id"]


def source_pixels(out: dict, w: int = W) -> tuple[np.ndarray, np.ndarray]:
  idx = np.rint(out["depth"]).astype(int) - 1
  return idx // w, idx % w


# ------------------------------------------------------------------------------ hflip


def test_hflip_exact():
  ex = make_example(1)
  out = A.hflip(ex, FLIP_PAIRS)
  check_consistent(ex, out, flipped=True)
  np.testing.assert_array_equal(out["depth"], ex["depth"][:, ::-1])
  np.testing.assert_array_equal(out["masks"], ex["masks"][:, :, ::-1])
  np.testing.assert_array_equal(out["image"], ex["image"][:, ::-1])
  np.testing.assert_array_equal(out["normals"][..., 0], -ex["normals"][:, ::-1, 0])
  np.testing.assert_array_equal(out["boxes"][:, [0, 2]], W - ex["boxes"][:, [2, 0]])
  # the pair is swapped: slot 0 (left) holds the mirrored right point, still on the left
  np.testing.assert_allclose(out["keypoints"][:, 0, 0], W - ex["keypoints"][:, 1, 0])
  np.testing.assert_array_equal(out["keypoints"][:, 0, 2], ex["keypoints"][:, 1, 2])
  assert np.all(out["keypoints"][:, 0, 0] < out["keypoints"][:, 1, 0])
  # without pairs: no swap; twice = identity for every key
  plain = A.hflip(ex)
  np.testing.assert_allclose(plain["keypoints"][:, 0, 0], W - ex["keypoints"][:, 0, 0])
  back = A.hflip(out, FLIP_PAIRS)
  for k, v in ex.items():
    np.testing.assert_allclose(back[k], v, atol=1e-6, err_msg=k)
  # the input is not mutated
  np.testing.assert_array_equal(ex["masks"], make_example(1)["masks"])


def test_random_hflip_probability_and_determinism():
  ex = make_example(2)
  t = A.random_hflip(0.5, FLIP_PAIRS)
  flips = []
  for seed in range(40):
    out = t(ex, np.random.default_rng(seed))
    flipped = not np.array_equal(out["depth"], ex["depth"])
    check_consistent(ex, out, flipped=flipped)
    again = t(ex, np.random.default_rng(seed))
    np.testing.assert_array_equal(again["depth"], out["depth"])
    flips.append(flipped)
  assert 8 < sum(flips) < 32
  assert not any(A.random_hflip(0.0)(ex, np.random.default_rng(s))["depth"][0, 0] != 1
                 for s in range(5))


# ------------------------------------------------------------------------------ resizes


@pytest.mark.parametrize("min_size,max_size,divisor", [(40, 60, 32), (96, 200, 32),
                                                       (30, 33, 1), (72, 80, 16)])
def test_resize_keep_aspect(min_size, max_size, divisor):
  ex = make_example(3)
  out = A.resize_keep_aspect(min_size, max_size, divisor)(ex)
  check_consistent(ex, out)
  scale = min(min_size / min(H, W), max_size / max(H, W))
  nh, nw = int(np.floor(H * scale)), int(np.floor(W * scale))
  oh, ow = out["image"].shape[:2]
  assert oh % divisor == 0 and ow % divisor == 0 and nh <= oh < nh + divisor
  assert nw <= ow < nw + divisor
  # analytic map: real pixels exactly where expected, nearest source floor((j + .5) * W / nw)
  np.testing.assert_array_equal(out["pixel_valid"], (np.arange(oh)[:, None] < nh)
                                & (np.arange(ow)[None] < nw))
  si, sj = source_pixels(out)
  np.testing.assert_array_equal(sj[0, :nw], np.floor((np.arange(nw) + 0.5) * W / nw))
  np.testing.assert_array_equal(si[:nh, 0], np.floor((np.arange(nh) + 0.5) * H / nh))
  np.testing.assert_allclose(out["boxes"], ex["boxes"] * [nw / W, nh / H, nw / W, nh / H],
                             rtol=1e-6)
  # bilinear image: torch align_corners=False source x = (j + .5) * W / nw - .5, clamped
  xsrc = np.clip((np.arange(nw) + 0.5) * W / nw - 0.5, 0, W - 1) + 0.5
  np.testing.assert_allclose(out["image"][0, :nw, 0] * W, xsrc, atol=1e-4)
  # pixel_valid on request when absent
  ex2 = {k: v for k, v in ex.items() if k != "pixel_valid"}
  out2 = A.resize_keep_aspect(min_size, max_size, divisor, pixel_valid=True)(ex2)
  np.testing.assert_array_equal(out2["pixel_valid"], out["pixel_valid"])


@pytest.mark.parametrize("size", [32, 80, (40, 100)])
def test_resize_pad_to(size):
  ex = make_example(4)
  out = A.resize_pad_to(size)(ex)
  oh, ow = (size, size) if np.isscalar(size) else size
  assert out["image"].shape == (oh, ow, 3) and out["masks"].shape[1:] == (oh, ow)
  check_consistent(ex, out)
  nh, nw = out["pixel_valid"].any(1).sum(), out["pixel_valid"].any(0).sum()
  assert nh == oh or nw == ow  # the long side fills the output
  assert abs(nw / nh - W / H) < 2 / min(nh, nw)  # aspect kept to rounding
  np.testing.assert_allclose(out["boxes"], ex["boxes"] * [nw / W, nh / H, nw / W, nh / H],
                             rtol=1e-6)


# ------------------------------------------------------------------------------ random geometry


RANDOM_GEOMETRIC = {
    "scale_jitter": A.random_scale_jitter(0.3, 2.0, 56),
    "scale_jitter_rect": A.random_scale_jitter(0.5, 1.5, (40, 72), keep_fraction=0.3),
    "random_crop": A.random_crop(0.3, 1.0, keep_fraction=0.5),
    "random_iou_crop": A.random_iou_crop(),
    "random_zoom_out": A.random_zoom_out((1.0, 3.0), p=1.0),
    "elastic_unet": A.elastic_deform(alpha=4.0, grid=3),
    "elastic_simard": A.elastic_deform(alpha=30.0, sigma=6.0),
    "composed": A.build([("random_hflip", {"flip_pairs": FLIP_PAIRS}),
                         ("random_scale_jitter", {"min_scale": 0.5, "max_scale": 1.5,
                                                  "output_size": 48})]),
}


@pytest.mark.parametrize("name", sorted(RANDOM_GEOMETRIC))
def test_random_geometric_consistent_and_deterministic(name):
  t = RANDOM_GEOMETRIC[name]
  shapes, dropped = set(), 0
  for seed in range(8):
    ex = make_example(10 + seed)
    out = t(ex, np.random.default_rng(seed))
    flipped = _is_flipped(ex, out)
    check_consistent(ex, out, flipped=flipped, kp_tol=1.5 if "elastic" in name else 1.0)
    again = t(ex, np.random.default_rng(seed))
    for k in out:
      np.testing.assert_array_equal(again[k], out[k], err_msg=k)
    for k, v in make_example(10 + seed).items():  # the input is not mutated
      np.testing.assert_array_equal(ex[k], v, err_msg=k)
    shapes.add(out["image"].shape)
    dropped += len(ex["classes"]) - len(out["classes"])
  other = t(make_example(10), np.random.default_rng(1234))
  first = t(make_example(10), np.random.default_rng(0))
  assert not (other["image"].shape == first["image"].shape
              and np.array_equal(other["depth"], first["depth"]))
  if name.startswith("scale_jitter") or name == "composed":
    assert len(shapes) == 1  # static output shape
  if name in ("random_crop", "random_iou_crop"):
    assert dropped > 0  # crops did cut objects away in these 8 cases


def _is_flipped(src: dict, out: dict) -> bool:
  """Whether the source x decreases along output rows (read from depth)."""
  _, sj = source_pixels(out)
  valid = out["pixel_valid"]
  row = int(np.argmax(valid.sum(1)))
  cols = sj[row][valid[row]]
  return len(cols) > 1 and cols[0] > cols[-1]


def test_elastic_field_and_map():
  """The deformation samples the source at p + d(p), d from `elastic_field` with the same rng;
  U-Net field: the coarse grid's draws at the corners, smooth in between."""
  ex = make_example(5)
  t = A.elastic_deform(alpha=5.0, grid=3)
  out = t(ex, np.random.default_rng(3))
  rng = np.random.default_rng(3)
  rng.random()  # the p draw
  coarse = np.random.default_rng(3)
  coarse.random()
  dx, dy = A.elastic_field((H, W), rng, 5.0, None, 3)
  grid = coarse.normal(0.0, 5.0, size=(2, 3, 3))
  np.testing.assert_allclose([dx[0, 0], dx[-1, -1], dy[0, -1]],
                             [grid[0, 0, 0], grid[0, 2, 2], grid[1, 0, 2]], atol=1e-9)
  assert np.abs(np.diff(dx, axis=1)).max() < 1.0  # smooth: < 1 px per pixel
  ys, xs = np.mgrid[0:H, 0:W] + 0.5
  sx, sy = xs + dx, ys + dy
  inside = (sx >= 0) & (sx < W) & (sy >= 0) & (sy < H)
  np.testing.assert_array_equal(out["pixel_valid"], inside)
  si, sj = source_pixels(out)
  np.testing.assert_array_equal(sj[inside], np.floor(sx[inside]).astype(int))
  np.testing.assert_array_equal(si[inside], np.floor(sy[inside]).astype(int))
  # keypoints: forward map inverts the backward one, q + d(q) = x
  kp = out["keypoints"][..., :2].reshape(-1, 2)
  ok = (kp[:, 0] > 1) & (kp[:, 0] < W - 1) & (kp[:, 1] > 1) & (kp[:, 1] < H - 1)
  from scipy import ndimage
  back = np.stack([ndimage.map_coordinates(sx, [kp[ok, 1] - 0.5, kp[ok, 0] - 0.5], order=1),
                   ndimage.map_coordinates(sy, [kp[ok, 1] - 0.5, kp[ok, 0] - 0.5], order=1)], -1)
  src_kp = ex["keypoints"][out["classes"] - 1][..., :2].reshape(-1, 2)[ok]
  np.testing.assert_allclose(back, src_kp, atol=1e-3)
  # without masks, boxes come from the mapped outlines and still enclose the deformed rectangle
  no_masks = {k: v for k, v in ex.items() if k != "masks"}
  out2 = t(no_masks, np.random.default_rng(3))
  for r, o in enumerate(out2["classes"] - 1):
    m = out["masks"][list(out["classes"] - 1).index(o)]
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    extent = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    assert np.abs(out2["boxes"][r] - extent).max() <= 1.0


# ------------------------------------------------------------------------------ dropping


def test_crop_drops_and_clips():
  ex = make_example(6)
  b = ex["boxes"]
  # a window over the left half (x < 32): the quadrant-0/2 objects stay, 1/3 go
  out = A.crop(ex, 0, 0, H, 32, keep_fraction=0.5)
  check_consistent(ex, out)
  keep = [o for o in range(4) if b[o, 0] < 32]
  assert out["classes"].tolist() == [o + 1 for o in keep]
  assert out["iscrowd"].tolist() == ex["iscrowd"][keep].tolist()
  # a window cutting one box: dropped below the visible fraction, clipped above
  x1, y1, x2, y2 = b[0]
  cut = int(x1 + 0.4 * (x2 - x1))  # 60% of box 0 visible when cropping at `cut`
  kept = A.crop(ex, 0, cut, H, W - cut, keep_fraction=0.5)
  gone = A.crop(ex, 0, cut, H, W - cut, keep_fraction=0.7)
  vis = (x2 - cut) / (x2 - x1)
  assert vis >= 0.5 and (1 in kept["classes"].tolist())
  assert vis < 0.7 and (1 not in gone["classes"].tolist())
  r = kept["classes"].tolist().index(1)
  np.testing.assert_allclose(kept["boxes"][r], [0, y1, x2 - cut, y2])
  assert kept["area"][r] == (x2 - cut) * (y2 - y1)
  check_consistent(ex, kept)
  check_consistent(ex, gone)


def test_zero_area_and_out_of_image_boxes():
  extra = [(20.0, 10.0, 20.0, 30.0), (5.0, 5.0, 5.0, 5.0), (70.0, 10.0, 90.0, 20.0),
           (-30.0, -9.0, -2.0, -1.0)]
  ex = make_example(7, extra_boxes=extra)
  n = 4
  no_masks = {k: v for k, v in ex.items() if k != "masks"}
  for t in [A.flip(FLIP_PAIRS), A.resize_keep_aspect(40, 60), A.resize_pad_to(50),
            A.random_scale_jitter(0.5, 1.5, 40), A.random_crop(), A.random_iou_crop(),
            A.elastic_deform()]:
    for example in (ex, no_masks):
      out = A.compose(t)(example, np.random.default_rng(0))
      cls = out["classes"].tolist()
      for key in ("boxes", "iscrowd", "difficult", "area", "keypoints"):
        assert len(out[key]) == len(cls), key
      # the boxes fully outside the image are gone (after any geometric transform)
      assert n + 3 not in cls and n + 4 not in cls
      assert np.all(np.isfinite(out["boxes"])) and np.all(out["area"] >= 0)
  # deterministic ones keep the in-image zero-area boxes, still of zero area
  out = A.resize_keep_aspect(96, 200)(no_masks)
  for j in (n + 1, n + 2):
    r = out["classes"].tolist().index(j)
    b = out["boxes"][r]
    assert (b[2] - b[0]) * (b[3] - b[1]) == 0
  np.testing.assert_allclose(out["boxes"][out["classes"].tolist().index(n + 1)],
                             np.array(extra[0]) * 2)
  # area without masks scales with the box: x2 per side
  np.testing.assert_allclose(out["area"][:n], ex["area"][:n] * 4, rtol=1e-6)
  # ... and with the visible part of a clipped box (crop away the left 30% of box 0)
  x1, _, x2, _ = ex["boxes"][0]
  cut = int(np.ceil(x1 + 0.3 * (x2 - x1)))
  out = A.crop(no_masks, 0, cut, H, W - cut)
  r = out["classes"].tolist().index(1)
  np.testing.assert_allclose(out["area"][r], ex["area"][0] * (x2 - cut) / (x2 - x1), rtol=1e-6)
  # an example with no objects at all
  empty = {k: (v[:0] if k in A._OBJECT_KEYS else v) for k, v in ex.items()}
  for t in [A.flip(), A.resize_pad_to(32), A.random_crop(), A.random_iou_crop(),
            A.elastic_deform(), A.random_scale_jitter(0.5, 1.5, 40)]:
    out = A.compose(t)(empty, np.random.default_rng(1))
    assert out["boxes"].shape == (0, 4) and out["masks"].shape[0] == 0
    assert out["keypoints"].shape == (0, 2, 3)


def test_random_iou_crop_semantics():
  """Kept objects are exactly those whose centre lies strictly inside the window, and at least
  one of them overlaps the window by the chosen minimum IoU (checked via the options)."""
  ex = make_example(8)
  b = ex["boxes"]
  for seed in range(10):
    t = A.random_iou_crop(sampler_options=[0.3])
    out = t(ex, np.random.default_rng(seed))
    si, sj = source_pixels(out)
    top, left = si[0, 0], sj[0, 0]
    oh, ow = out["image"].shape[:2]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    within = (left < cx) & (cx < left + ow) & (top < cy) & (cy < top + oh)
    assert out["classes"].tolist() == (np.flatnonzero(within) + 1).tolist()
    iw = np.clip(np.minimum(b[:, 2], left + ow) - np.maximum(b[:, 0], left), 0, None)
    ih = np.clip(np.minimum(b[:, 3], top + oh) - np.maximum(b[:, 1], top), 0, None)
    iou = iw * ih / ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) + oh * ow - iw * ih)
    assert iou[within].max() >= 0.3
    assert 0.5 <= ow / oh <= 2.0 and ow >= int(0.3 * W) and oh >= int(0.3 * H)
    check_consistent(ex, out)
  assert A.random_iou_crop(sampler_options=[1.0])(ex, np.random.default_rng(0))["boxes"] is \
      ex["boxes"]


# ------------------------------------------------------------------------------ photometric


def test_photometric_range_labels_and_determinism():
  ex = make_example(9)
  ex["image"] = np.random.default_rng(0).random((H, W, 3), dtype=np.float32)
  t = A.photometric_distort(p=0.5)
  changed = 0
  for seed in range(20):
    out = t(ex, np.random.default_rng(seed))
    assert out["image"].dtype == np.float32 and out["image"].shape == (H, W, 3)
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    for k in ex:
      if k != "image":
        assert out[k] is ex[k], k  # labels untouched
    np.testing.assert_array_equal(t(ex, np.random.default_rng(seed))["image"], out["image"])
    changed += not np.array_equal(out["image"], ex["image"])
  assert changed >= 15
  np.testing.assert_array_equal(A.photometric_distort(p=0.0)(ex, np.random.default_rng(0))
                                ["image"], ex["image"])
  # only the channel permutation: the output is a permutation of the input channels
  only_perm = A.photometric_distort((1, 1), (1, 1), (1, 1), (0, 0), p=1.0)
  out = only_perm(ex, np.random.default_rng(0))["image"]
  perms = [np.allclose(out, ex["image"][..., list(p)], atol=1e-6) for p in
           [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]]
  assert sum(perms) >= 1


def test_color_ops_analytic():
  img = np.random.default_rng(1).random((8, 9, 3), dtype=np.float32)
  np.testing.assert_allclose(A.adjust_brightness(img, 1.5), np.clip(img * 1.5, 0, 1))
  gray = img @ np.array([0.2989, 0.587, 0.114], np.float32)
  np.testing.assert_allclose(A.adjust_saturation(img, 0.0), np.repeat(gray[..., None], 3, -1),
                             atol=1e-6)
  np.testing.assert_allclose(A.adjust_contrast(img, 0.0), np.full_like(img, gray.mean()),
                             atol=1e-6)
  np.testing.assert_allclose(A.adjust_hue(img, 0.0), img, atol=1e-6)
  red = np.array([[[0.8, 0.1, 0.1]]], np.float32)
  np.testing.assert_allclose(A.adjust_hue(red, 1 / 3), [[[0.1, 0.8, 0.1]]], atol=1e-6)
  np.testing.assert_allclose(A.adjust_hue(red, -1 / 3), [[[0.1, 0.1, 0.8]]], atol=1e-6)
  # a hue shift keeps each pixel's max and min (HSV value and chroma)
  out = A.adjust_hue(img, 0.23)
  np.testing.assert_allclose(out.max(-1), img.max(-1), atol=1e-6)
  np.testing.assert_allclose(out.min(-1), img.min(-1), atol=1e-6)


# ------------------------------------------------------------------------------ build, errors


def test_build_by_name():
  spec = [("random_hflip", {"p": 1.0, "flip_pairs": FLIP_PAIRS}), "photometric_distort",
          {"name": "resize_pad_to", "size": 32}]
  t = A.build(spec)
  ex = make_example(11)
  out = t(ex, np.random.default_rng(0))
  assert out["image"].shape == (32, 32, 3)
  manual = A.resize_pad_to(32)(A.hflip(ex, FLIP_PAIRS))
  np.testing.assert_array_equal(out["masks"], manual["masks"])
  np.testing.assert_allclose(out["keypoints"], manual["keypoints"])
  assert A.make is A.build
  assert set(A.names()) >= {"hflip", "random_hflip", "resize_keep_aspect", "resize_pad_to",
                            "random_scale_jitter", "random_crop", "random_iou_crop",
                            "photometric_distort", "elastic_deform"}
  with pytest.raises(ValueError, match="unknown augmentation 'vflip'.*random_hflip"):
    A.build([("vflip", {})])
  with pytest.raises(ValueError, match="bad arguments for augmentation 'random_hflip'"):
    A.build([("random_hflip", {"prob": 0.5})])
  with pytest.raises(ValueError, match="pass an np.random.Generator"):
    t(ex)
  det = A.compose(A.resize_pad_to(16), A.flip())
  assert det(ex)["image"].shape == (16, 16, 3)


def test_bad_input():
  ex = make_example(12)
  f = A.flip()
  bad = [
      ({**ex, "image": ex["image"][..., 0]}, "'image' must be"),
      ({**ex, "boxes": ex["boxes"][:, :3]}, "'boxes' must be"),
      ({**ex, "classes": ex["classes"][:2]}, "mismatched lengths"),
      ({**ex, "masks": ex["masks"][:, :10]}, "'masks' must be"),
      ({**ex, "semantic": ex["semantic"][:10]}, "'semantic' must have shape"),
      ({**ex, "keypoints": ex["keypoints"][..., :2]}, "'keypoints' must be"),
      ({**ex, "boxes": ex["boxes"][:, [2, 1, 0, 3]]}, "inverted"),
      ({**ex, "boxes": ex["boxes"] * np.nan}, "non-finite"),
      ({**ex, "optical_flow": np.zeros((H, W, 2))}, "unknown key 'optical_flow'"),
      ({k: v for k, v in ex.items() if k != "image"}, "no 'image'"),
      ({**ex, "segment_ids": ex["segment_ids"][:1]}, "per-segment"),
  ]
  for example, msg in bad:
    with pytest.raises(ValueError, match=msg):
      f(example)
  for make, msg in [(lambda: A.resize_pad_to(-4), "size"),
                    (lambda: A.resize_keep_aspect(0, 10), "min_size"),
                    (lambda: A.random_hflip(1.5), "probability"),
                    (lambda: A.random_scale_jitter(2.0, 1.0, 32), "max_scale"),
                    (lambda: A.random_crop(max_scale=1.5), "max_scale"),
                    (lambda: A.photometric_distort(hue=(-0.7, 0.1)), "hue"),
                    (lambda: A.flip([(0, 1), (1, 2)]), "flip_pairs"),
                    (lambda: A.crop(ex, 0, 0, 0, 5), "crop size")]:
    with pytest.raises(ValueError, match=msg):
      make()
  with pytest.raises(ValueError, match="flip_pairs"):
    A.hflip(ex, [(0, 5)])
