"""The synthetic `shapes` data set (`jaxcv.data.shapes`, `jaxcv.data.shapes_tfds`).

Every label is checked against an independent NumPy recomputation from the other labels
(boxes and areas from the masks, semantic and panoptic maps from masks and classes, sketch
from the panoptic map, the ground's depth against its normal by back-projection, dome depth
slopes against their normals), plus determinism, the tfds round trip and that the dense
tasks are not solved by a constant.
"""
from __future__ import annotations

import numpy as np
import pytest

from jaxcv.data import base as data_lib_base
from jaxcv.data import shapes

KEYS = {
    "image": (np.float32, 3), "image_id": (np.int32, 0), "label": (np.int32, 0),
    "boxes": (np.float32, 2), "classes": (np.int32, 1), "iscrowd": (np.bool_, 1),
    "area": (np.float32, 1), "masks": (np.bool_, 3), "keypoints": (np.float32, 3),
    "semantic": (np.int32, 2), "depth": (np.float32, 2), "normals": (np.float32, 3),
    "sketch": (np.float32, 3), "panoptic": (np.int32, 2), "segment_ids": (np.int32, 1),
    "segment_classes": (np.int32, 1), "segment_isthing": (np.bool_, 1),
    "segment_iscrowd": (np.bool_, 1),
}


def assert_same(a, b):
  assert sorted(a) == sorted(b)
  for k in a:
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def examples():
  """40 examples at 64x64 and 12 at 128x128 (seed 1, train and validation)."""
  return ([shapes.generate_example(1, i, 64, "train") for i in range(40)]
          + [shapes.generate_example(1, i, 128, "validation") for i in range(12)])


def test_deterministic_and_seed_dependent():
  for i in range(5):
    assert_same(shapes.generate_example(7, i, 64), shapes.generate_example(7, i, 64))
    a, b = shapes.generate_example(7, i, 64), shapes.generate_example(8, i, 64)
    assert not np.array_equal(a["image"], b["image"])
  a, b = shapes.generate_example(7, 0, 64, "train"), shapes.generate_example(7, 0, 64, "test")
  assert not np.array_equal(a["image"], b["image"])
  assert a["image_id"] != b["image_id"]
  rng_a = shapes.generate_example(np.random.default_rng([7, 0, 3]), 3, 64)
  assert_same(rng_a, shapes.generate_example(7, 3, 64))
  split = shapes.load_split("validation", 64, num_examples=6, seed=4)
  again = shapes.load_split("validation", 64, num_examples=6, seed=4)
  assert len(split) == 6
  for i, (e, f) in enumerate(zip(split, again)):
    assert_same(e, f)
    assert_same(e, shapes.generate_example(4, i, 64, "validation"))
  other = shapes.load_split("validation", 64, num_examples=6, seed=5)
  assert not any(np.array_equal(e["image"], f["image"]) for e, f in zip(split, other))


def test_record_round_trip():
  for i in range(8):
    assert_same(shapes.decode(shapes.generate_record(2, i, 64, "test")),
                shapes.generate_example(2, i, 64, "test"))


def test_keys_dtypes_shapes(examples):
  for e in examples:
    assert sorted(e) == sorted(KEYS)
    s = e["image"].shape[0]
    for k, (dtype, ndim) in KEYS.items():
      assert e[k].dtype == dtype and e[k].ndim == ndim, (k, e[k].dtype, e[k].shape)
    n, m = len(e["classes"]), len(e["segment_ids"])
    assert e["image"].shape == (s, s, 3) and e["masks"].shape == (n, s, s)
    assert e["boxes"].shape == (n, 4) and e["keypoints"].shape == (n, 4, 3)
    assert e["iscrowd"].shape == e["area"].shape == (n,)
    assert e["normals"].shape == (s, s, 3) and e["sketch"].shape == (s, s, 1)
    for k in ("semantic", "depth", "panoptic"):
      assert e[k].shape == (s, s)
    for k in ("segment_classes", "segment_isthing", "segment_iscrowd"):
      assert e[k].shape == (m,)
    img = e["image"]
    assert img.min() >= 0 and img.max() <= 1
    np.testing.assert_array_equal(np.round(img * 255) / np.float32(255), img)


def test_boxes_area_masks_semantic(examples):
  for e in examples:
    masks, classes = e["masks"], e["classes"]
    assert ((classes >= 1) & (classes <= shapes.NUM_CLASSES)).all()
    assert (masks.sum(0) <= 1).all()  # visible parts are disjoint
    sem = np.zeros(masks.shape[1:], np.int32)
    for i, m in enumerate(masks):
      rows, cols = np.any(m, 1), np.any(m, 0)
      assert rows.any()
      y1, y2 = np.argmax(rows), len(rows) - np.argmax(rows[::-1])
      x1, x2 = np.argmax(cols), len(cols) - np.argmax(cols[::-1])
      np.testing.assert_array_equal(e["boxes"][i], [x1, y1, x2, y2])
      assert e["area"][i] == m.sum()
      assert m.sum() >= shapes.MIN_VISIBLE_PIXELS
      sem[m] = classes[i]
    np.testing.assert_array_equal(e["semantic"], sem)


def test_panoptic_and_sketch(examples):
  for e in examples:
    pan, masks, n = e["panoptic"], e["masks"], len(e["classes"])
    ids, cls = e["segment_ids"], e["segment_classes"]
    assert len(np.unique(ids)) == len(ids) and (ids > 0).all()
    np.testing.assert_array_equal(ids[:n], np.arange(1, n + 1))
    np.testing.assert_array_equal(cls[:n], e["classes"])
    np.testing.assert_array_equal(e["segment_isthing"], cls <= shapes.NUM_CLASSES)
    np.testing.assert_array_equal(e["segment_iscrowd"][:n], e["iscrowd"])
    assert not e["segment_iscrowd"][n:].any()
    assert set(cls[n:]) <= {shapes.WALL_CLASS, shapes.GROUND_CLASS} and len(cls[n:]) >= 1
    for i in range(n):  # things: exactly their masks
      np.testing.assert_array_equal(pan == ids[i], masks[i])
    stuff = ~masks.any(0)
    assert np.isin(pan[stuff], ids[n:]).all()  # everything else is stuff, no void
    assert set(np.unique(pan)) == set(ids)  # every segment has pixels
    rows = {c: np.nonzero(pan == i)[0] for i, c in zip(ids[n:], cls[n:])}
    if len(rows) == 2:  # wall above the ground
      assert rows[shapes.WALL_CLASS].max() < rows[shapes.GROUND_CLASS].min()
    # Sketch: pixels with a 4-neighbour in another segment.
    p = np.pad(pan, 1, mode="edge")
    s = pan.shape[0]
    edge = np.zeros(pan.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
      edge |= p[dy:dy + s, dx:dx + s] != pan
    np.testing.assert_array_equal(e["sketch"][..., 0], edge.astype(np.float32))


def test_label(examples):
  for e in examples:
    solid = np.where(e["iscrowd"], -1.0, e["area"])
    want = shapes.EMPTY_LABEL if not (solid > 0).any() else e["classes"][np.argmax(solid)] - 1
    assert e["label"] == want


def test_keypoints(examples):
  checked = {1: 0, 2: 0}
  for e in examples:
    masks, boxes = e["masks"], e["boxes"]
    for i, kp in enumerate(e["keypoints"]):
      if e["iscrowd"][i]:
        np.testing.assert_array_equal(kp, 0)
        continue
      assert set(kp[:, 2]) <= {1.0, 2.0}
      x1, y1, x2, y2 = boxes[i]
      (tx, ty, tv), (bx, by, bv), (lx, ly, lv), (rx, ry, rv) = kp
      # Extreme points of the silhouette bound the visible mask, and equal its extent where
      # they are visible.
      assert ty - 0.5 <= y1 and by + 0.5 >= y2 and lx - 0.5 <= x1 and rx + 0.5 >= x2
      for v, got, want in ((tv, ty - 0.5, y1), (bv, by + 0.5, y2), (lv, lx - 0.5, x1),
                           (rv, rx + 0.5, x2)):
        if v == 2:
          assert got == want
      for x, y, v in kp:
        px, py = int(x), int(y)
        checked[int(v)] += 1
        if v == 2:
          assert masks[i, py, px]
        else:  # covered by a later instance
          assert masks[i + 1:, py, px].any()
      assert ty <= ly <= by and ty <= ry <= by and lx <= tx <= rx and lx <= bx <= rx
  assert checked[1] > 0 and checked[2] > 0


def test_depth_normals_geometry(examples):
  checked = 0
  for e in examples:
    depth, nrm, pan = e["depth"], e["normals"], e["panoptic"]
    s = depth.shape[0]
    assert np.isfinite(depth).all() and (depth > 0).all()
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=-1), 1.0, atol=1e-5)
    assert (nrm[..., 2] < 0).all()
    n = len(e["classes"])
    for seg, c in zip(e["segment_ids"][n:], e["segment_classes"][n:]):
      region = pan == seg
      if c == shapes.WALL_CLASS:
        np.testing.assert_allclose(nrm[region], [[0, 0, -1]] * region.sum(), atol=1e-4)
        assert np.ptp(depth[region]) == 0
      else:  # ground: a plane at distance 1 from the camera: n . (Z * ray) = -1
        rows, cols = np.nonzero(region)
        ray = np.stack([(cols + 0.5) / s - 0.5, (rows + 0.5) / s - 0.5, np.ones(len(rows))],
                       -1)
        g = nrm[region]
        assert np.ptp(g, axis=0).max() < 1e-4 and g[0, 0] == 0 and g[0, 1] < 0
        np.testing.assert_allclose((g * ray).sum(-1) * depth[region], -1.0, rtol=2e-3)
    # Depth slopes of domes and cylinders follow their normals: with Z = Zb (1 - h / S) and
    # n ~ (-dh/du, -dh/dv, -1), dZ/du = -(Zb / S) nx / nz, Zb the object's base depth (at
    # least its largest depth, since it is raised toward the camera).
    for i, m in enumerate(e["masks"]):
      if e["classes"][i] not in (1, 4) or e["iscrowd"][i]:
        continue
      inner = m.copy()
      inner[:, 1:-1] &= m[:, :-2] & m[:, 2:]
      inner[:, [0, -1]] = False
      ratio = nrm[..., 0] / nrm[..., 2]
      ok = inner & (np.abs(ratio) < 1.5)
      if ok.sum() < 20:
        continue
      rows, cols = np.nonzero(ok)
      slope = (depth[rows, cols + 1] - depth[rows, cols - 1]) / 2
      pred = ratio[rows, cols]
      c = (slope * pred).sum() / (pred * pred).sum()
      zb = -c * s
      assert 0.99 * depth[m].max() <= zb <= 1.3 * depth[m].max(), (zb, depth[m].max())
      resid = slope - c * pred
      step = 1 / shapes.DEPTH_SCALE  # depth quantisation
      rms = lambda a: np.sqrt(np.mean(a ** 2))
      assert rms(resid) < 0.1 * rms(slope) + 0.3 * step, (i, e["image_id"])
      checked += rms(slope) > 3 * step
  assert checked >= 5


def test_curved_objects_have_varied_normals(examples):
  spans = []
  for e in examples:
    for i, m in enumerate(e["masks"]):
      if e["classes"][i] == 1 and not e["iscrowd"][i] and m.sum() > 150:
        v = e["normals"][m]
        mean = v.mean(0) / np.linalg.norm(v.mean(0))
        spans.append(np.degrees(np.arccos(np.clip(v @ mean, -1, 1))).max())
  assert len(spans) >= 3
  assert min(spans) > 45, spans


def test_dense_tasks_not_solved_by_a_constant(examples):
  for size in (64, 128):
    group = [e for e in examples if e["image"].shape[0] == size]
    nrm = np.stack([e["normals"] for e in group]).reshape(-1, 3)
    mean = nrm.mean(0) / np.linalg.norm(nrm.mean(0))
    angle = np.degrees(np.arccos(np.clip(nrm @ mean, -1, 1))).mean()
    depth = np.stack([e["depth"] for e in group]).ravel()
    abs_rel = (np.abs(depth.mean() - depth) / depth).mean()
    print(f"S={size}: constant-normal angle_mean {angle:.1f} deg, mean-depth abs_rel "
          f"{abs_rel:.3f}")
    assert angle > 15 and abs_rel > 0.2


def test_statistics_over_many_examples():
  """Every class, crowds and empty images occur (300 examples at 64x64)."""
  ex = [shapes.generate_example(0, i, 64) for i in range(300)]
  classes = np.concatenate([e["classes"] for e in ex])
  assert set(classes) == set(range(1, shapes.NUM_CLASSES + 1))
  assert sum(e["iscrowd"].any() for e in ex) >= 10
  assert sum(len(e["classes"]) == 0 for e in ex) >= 1
  empty = [e for e in ex if len(e["classes"]) == 0]
  assert all(e["label"] == shapes.EMPTY_LABEL and e["masks"].shape == (0, 64, 64)
             for e in empty)
  assert len({int(e["image_id"]) for e in ex}) == 300
  counts = np.bincount([e["label"] for e in ex], minlength=6)
  assert (counts[:5] >= 20).all(), counts


def test_array_dataset_loader():
  ds = shapes.load("test", image_size=64, num_examples=5, seed=3)
  assert len(ds) == 5 and ds.num_classes == 6 and ds.image_shape == (64, 64, 3)
  for i, e in enumerate(shapes.load_split("test", 64, 5, 3)):
    for k in shapes.DENSE_KEYS:
      np.testing.assert_array_equal(ds.arrays[k][i], e[k])


def test_bad_input():
  with pytest.raises(ValueError, match="minimum"):
    shapes.generate_example(0, 0, 16)
  with pytest.raises(ValueError, match="known splits"):
    shapes.generate_example(0, 0, 64, "val")
  with pytest.raises(ValueError, match="non-negative"):
    shapes.generate_example(-1, 0, 64)
  with pytest.raises(ValueError, match="index"):
    shapes.generate_example(0, -1, 64)
  with pytest.raises(ValueError, match="num_examples"):
    shapes.load_split("train", 64, -2)
  rec = shapes.generate_record(0, 0, 64)
  del rec["depth"]
  # a ValueError the pipeline counts as an unreadable example and replaces
  with pytest.raises(data_lib_base.CorruptExampleError, match="depth"):
    shapes.decode(rec)


def test_example_keys_are_the_generators():
  assert tuple(shapes.generate_example(0, 0, 32)) == shapes.EXAMPLE_KEYS


def test_tfds_builder_matches_generator(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  pytest.importorskip("array_record")
  from jaxcv.data import shapes_tfds
  sizes = {"train": 12, "validation": 4, "test": 4}
  builder = shapes_tfds.build(tmp_path, image_size=64, split_sizes=sizes, seed=9)
  for split, n in sizes.items():
    source = builder.as_data_source(split)
    assert len(source) == n
    for i in range(n):
      assert_same(shapes.decode(source[i]), shapes.generate_example(9, i, 64, split))
  again = shapes_tfds.build(tmp_path, image_size=64, split_sizes=sizes, seed=9)  # reuses
  assert_same(shapes.decode(again.as_data_source("test")[3]),
              shapes.generate_example(9, 3, 64, "test"))
  with pytest.raises(ValueError, match="at least 1"):
    shapes_tfds.make_config(64, {"test": 0})
  assert {c.name for c in shapes_tfds.Shapes.BUILDER_CONFIGS} == {"64", "128", "256"}
