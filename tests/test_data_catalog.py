"""jaxcv.data.catalog: tfds catalog records -> the example interface, and `source()`.

References: coordinates, panoptic ids and trimap classes are computed here by hand (analytic
values, per-pixel Python loops); the hand-made records are checked to have the same structure
as `tfds.testing.mock_data`'s records of the real builders; `source()` is tested through
`tfds.data_source` under `mock_data` and on small data sets written here in the prepared
ArrayRecord and TFRecord formats (the latter exercises the `tfds.load` fallback).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from jaxcv.data import catalog
from jaxcv.data.base import CorruptExampleError

tfds = pytest.importorskip("tensorflow_datasets")

NAMES = ["cifar10", "coco/2017", "coco/2017_panoptic", "mnist", "oxford_iiit_pet",
         "voc/2007", "voc/2012"]


def check_interface(ex: dict) -> None:
  """Asserts `ex` follows the example interface of docs/conventions.md."""
  img = ex["image"]
  assert img.dtype == np.float32 and img.ndim == 3 and img.shape[-1] == 3
  assert img.min() >= 0.0 and img.max() <= 1.0
  h, w = img.shape[:2]
  assert ex["image_id"].dtype == np.int32 and ex["image_id"].shape == ()
  if "boxes" in ex:
    n = ex["boxes"].shape[0]
    assert ex["boxes"].dtype == np.float32 and ex["boxes"].shape == (n, 4)
    assert ex["classes"].dtype == np.int32 and ex["classes"].shape == (n,)
    assert (ex["classes"] >= 1).all()
    for key in ("iscrowd", "difficult"):
      if key in ex:
        assert ex[key].dtype == bool and ex[key].shape == (n,)
    assert ex["area"].dtype == np.float32 and ex["area"].shape == (n,)
  if "semantic" in ex:
    s = ex["semantic"]
    assert s.dtype == np.int32 and s.shape == (h, w)
    assert set(np.unique(s).tolist()) <= set(range(255)) | {255}
  if "panoptic" in ex:
    assert ex["panoptic"].dtype == np.int32 and ex["panoptic"].shape == (h, w)
    s = ex["segment_ids"].shape[0]
    for key, dt in (("segment_ids", np.int32), ("segment_classes", np.int32),
                    ("segment_isthing", bool), ("segment_iscrowd", bool)):
      assert ex[key].dtype == dt and ex[key].shape == (s,)
  if "label" in ex:
    assert ex["label"].dtype == np.int32 and ex["label"].shape == ()
    assert ex["label"] >= 0


# ------------------------------------------------------------------- hand-made records

H, W = 6, 8


def _img(seed, h=H, w=W, c=3):
  return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def voc_record(seed=0, filename="2008_000123.jpg", n=2):
  rng = np.random.default_rng(seed)
  lo = rng.uniform(0, 0.5, (n, 2)).astype(np.float32)
  hi = (lo + rng.uniform(0.1, 0.5, (n, 2))).astype(np.float32)
  bbox = np.concatenate([lo, hi], axis=1).astype(np.float32)
  return {"image": _img(seed), "image/filename": filename,
          "labels": np.arange(n, dtype=np.int64), "labels_no_difficult": np.zeros(0, np.int64),
          "objects": {"bbox": bbox, "label": rng.integers(0, 20, n).astype(np.int64),
                      "pose": np.zeros(n, np.int64), "is_truncated": np.zeros(n, bool),
                      "is_difficult": rng.integers(0, 2, n).astype(bool)}}


def coco_record(seed=0, n=3, image_id=139):
  rng = np.random.default_rng(seed)
  lo = rng.uniform(0, 0.5, (n, 2)).astype(np.float32)
  bbox = np.concatenate([lo, lo + 0.25], axis=1).astype(np.float32)
  return {"image": _img(seed), "image/filename": "000000000139.jpg",
          "image/id": np.int64(image_id),
          "objects": {"id": np.arange(1, n + 1, dtype=np.int64),
                      "area": rng.integers(1, 1000, n).astype(np.int64), "bbox": bbox,
                      "label": rng.integers(0, 80, n).astype(np.int64),
                      "is_crowd": rng.integers(0, 2, n).astype(bool)}}


def panoptic_record(seed=0):
  rng = np.random.default_rng(seed)
  ids = np.array([1 + 256 * 2 + 65536 * 3, 200, 7 * 65536 + 255], np.int64)
  seg = rng.integers(0, 4, (H, W))  # 0 void, 1..3 -> ids[k - 1]
  rgb = np.zeros((H, W, 3), np.uint8)
  for y in range(H):
    for x in range(W):
      if seg[y, x]:
        v = int(ids[seg[y, x] - 1])
        rgb[y, x] = (v % 256, (v // 256) % 256, v // 65536)
  bbox = np.tile(np.array([[0.0, 0.0, 1.0, 1.0]], np.float32), (3, 1))
  return {"image": _img(seed), "image/filename": "000000000139.jpg", "image/id": np.int64(139),
          "panoptic_image": rgb, "panoptic_image/filename": "000000000139.png",
          "panoptic_objects": {"id": ids, "area": np.ones(3, np.int64), "bbox": bbox,
                               "label": np.array([0, 79, 80], np.int64),
                               "is_crowd": np.array([False, True, False])}}, seg, ids


def pet_record(seed=0, label=5, species=1):
  trimap = np.random.default_rng(seed).integers(1, 4, (H, W, 1)).astype(np.uint8)
  return {"image": _img(seed), "label": np.int64(label), "species": np.int64(species),
          "file_name": "Abyssinian_100.jpg", "segmentation_mask": trimap,
          "head_bbox": np.array([0.1, 0.2, 0.3, 0.4], np.float32)}


def mnist_record(seed=0, label=7):
  return {"image": _img(seed, 28, 28, 1), "label": np.int64(label)}


def cifar10_record(seed=0, label=3):
  return {"id": "train_00017", "image": _img(seed, 32, 32, 3), "label": np.int64(label)}


def hand_made(name, seed=0):
  return {"voc/2007": lambda: voc_record(seed, f"{seed + 1:06d}.jpg"),
          "voc/2012": lambda: voc_record(seed),
          "coco/2017": lambda: coco_record(seed, image_id=100 + seed),
          "coco/2017_panoptic": lambda: panoptic_record(seed)[0],
          "oxford_iiit_pet": lambda: pet_record(seed),
          "mnist": lambda: mnist_record(seed, seed % 10),
          "cifar10": lambda: cifar10_record(seed, seed % 10)}[name]()


# ------------------------------------------------------------------- mock_data records


@pytest.fixture(scope="module")
def mock_records():
  """One record per name from `tfds.data_source` under `tfds.testing.mock_data`."""
  out = {}
  for name in NAMES:
    with tfds.testing.mock_data(num_examples=2):
      out[name] = tfds.data_source(name, split="train")[1]
  return out


def _structure(tree, prefix=""):
  """{path: (kind, ndim)} of a record: kind 'u'/'i'/'f'/'b' for arrays, 'text' for text."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_structure(v, prefix + k + "/"))
    elif isinstance(v, (str, bytes)):
      out[prefix + k] = ("text", 0)
    else:
      v = np.asarray(v)
      out[prefix + k] = (v.dtype.kind, v.ndim)
  return out


@pytest.mark.parametrize("name", NAMES)
def test_hand_made_records_have_the_builders_structure(mock_records, name):
  assert _structure(hand_made(name)) == _structure(mock_records[name])


@pytest.mark.parametrize("name", NAMES)
def test_mock_records_decode_or_are_rejected_by_name(mock_records, name):
  """mock_data draws every field independently (sequence lengths, mask sizes, file names
  differ): a consistent record decodes to the interface, an inconsistent one is a ValueError
  naming the inconsistency."""
  rec = mock_records[name]
  decode = catalog.reader(name)
  objs = rec.get("objects", rec.get("panoptic_objects"))
  lengths = {len(v) for v in objs.values()} if objs else {0}
  img_hw = rec["image"].shape[:2]
  other = rec.get("panoptic_image", rec.get("segmentation_mask"))
  if other is not None and other.shape[:2] != img_hw:
    with pytest.raises(ValueError, match="differ in size"):
      decode(rec, index=0)
  elif name.startswith("voc") and not any(c.isdigit() for c in str(rec["image/filename"])):
    with pytest.raises(ValueError, match="no digits"):
      decode(rec, index=0)
  elif len(lengths) > 1:
    with pytest.raises(ValueError, match="different lengths"):
      decode(rec, index=0)
  elif name == "oxford_iiit_pet" and not np.isin(other, [1, 2, 3]).all():
    with pytest.raises(ValueError, match="trimap values"):
      decode(rec, index=0)
  else:
    ex = decode(rec, index=0)
    check_interface(ex)
    np.testing.assert_array_equal(ex["image"], np.broadcast_to(
        rec["image"].astype(np.float32) / 255, ex["image"].shape))


# ------------------------------------------------------------------- decoders, by hand


def test_unknown_name_lists_known_names():
  for fn in (catalog.reader, lambda n: catalog.source(n, "train")):
    with pytest.raises(ValueError, match="known") as e:
      fn("voc/2099")
    for name in NAMES:
      assert repr(name) in str(e.value)
  assert catalog.names() == sorted(NAMES) == sorted(catalog.READERS)


def test_voc_box_conversion_classes_area_and_id():
  rec = voc_record(1)
  rec["objects"]["bbox"][0] = [0.1, 0.25, 0.5, 0.75]  # ymin, xmin, ymax, xmax
  ex = catalog.decode_voc2007(rec)
  check_interface(ex)
  np.testing.assert_allclose(ex["boxes"][0], [0.25 * W, 0.1 * H, 0.75 * W, 0.5 * H],
                             rtol=1e-6)
  for i, (y1, x1, y2, x2) in enumerate(rec["objects"]["bbox"].astype(np.float64)):
    ref = [x1 * W, y1 * H, x2 * W, y2 * H]
    np.testing.assert_allclose(ex["boxes"][i], ref, rtol=1e-6)
    np.testing.assert_allclose(ex["area"][i], (ref[2] - ref[0]) * (ref[3] - ref[1]), rtol=1e-5)
  np.testing.assert_array_equal(ex["classes"], rec["objects"]["label"] + 1)
  np.testing.assert_array_equal(ex["difficult"], rec["objects"]["is_difficult"])
  assert not ex["iscrowd"].any()
  assert ex["image_id"] == 2008000123
  assert catalog.decode_voc2012(voc_record(0, b"000005.jpg"))["image_id"] == 5
  np.testing.assert_array_equal(ex["image"] * 255, rec["image"].astype(np.float32))


def test_voc_no_objects_and_bad_records():
  rec = voc_record(0, n=0)
  rec["objects"] = {k: [] for k in rec["objects"]}  # data_source's form of an empty list
  ex = catalog.decode_voc2012(rec)
  check_interface(ex)
  assert ex["boxes"].shape == (0, 4) and ex["classes"].shape == (0,)
  rec = voc_record(0)
  rec["objects"]["label"] = rec["objects"]["label"][:1]
  with pytest.raises(ValueError, match="different lengths"):
    catalog.decode_voc2007(rec)
  rec = voc_record(0)
  rec["objects"]["label"][0] = 20
  with pytest.raises(ValueError, match="labels span"):
    catalog.decode_voc2007(rec)
  with pytest.raises(ValueError, match=r"\[H, W, 1\] or \[H, W, 3\]"):
    catalog.decode_voc2007({**voc_record(0), "image": np.zeros((4, 4, 2), np.uint8)})


def test_coco_boxes_classes_area_crowd_and_category_ids():
  rec = coco_record(2, n=4, image_id=581929)
  rec["objects"]["label"][:2] = [11, 79]
  ex = catalog.decode_coco2017(rec)
  check_interface(ex)
  assert ex["image_id"] == 581929 and "masks" not in ex and "keypoints" not in ex
  for i, (y1, x1, y2, x2) in enumerate(rec["objects"]["bbox"].astype(np.float64)):
    np.testing.assert_allclose(ex["boxes"][i], [x1 * W, y1 * H, x2 * W, y2 * H], rtol=1e-6)
  np.testing.assert_array_equal(ex["area"], rec["objects"]["area"].astype(np.float32))
  np.testing.assert_array_equal(ex["iscrowd"], rec["objects"]["is_crowd"])
  np.testing.assert_array_equal(ex["classes"], rec["objects"]["label"] + 1)
  # label 11 is "stop sign" (COCO id 13, after the unused id 12); label 79 "toothbrush" (90).
  assert catalog.COCO_CATEGORY_IDS[ex["classes"][:2] - 1].tolist() == [13, 90]
  assert catalog.COCO_CATEGORY_NAMES[ex["classes"][0] - 1] == "stop sign"


def test_coco_category_tables():
  ids = catalog.COCO_CATEGORY_IDS
  assert ids.shape == (80,) and (np.diff(ids) > 0).all()
  # The 11 ids COCO defines but never uses.
  assert sorted(set(range(1, 92)) - set(ids.tolist())) == [12, 26, 29, 30, 45, 66, 68, 69, 71,
                                                           83, 91]
  pan = catalog.COCO_PANOPTIC_CATEGORY_IDS
  assert pan.shape == (133,) and (np.diff(pan) > 0).all() and pan[-1] == 200
  np.testing.assert_array_equal(pan[:80], ids)
  assert (pan[80:] > 91).all()
  np.testing.assert_array_equal(catalog.COCO_PANOPTIC_ISTHING, np.arange(133) < 80)
  assert len(set(catalog.COCO_PANOPTIC_CATEGORY_NAMES)) == 133
  assert catalog.COCO_PANOPTIC_CATEGORY_NAMES[:80] == catalog.COCO_CATEGORY_NAMES
  assert len(catalog.VOC_CLASS_NAMES) == 20


def test_panoptic_png_decoding_and_segments():
  rec, seg, ids = panoptic_record(3)
  ex = catalog.decode_coco2017_panoptic(rec)
  check_interface(ex)
  ref = np.zeros((H, W), np.int64)
  for y in range(H):
    for x in range(W):
      r, g, b = (int(c) for c in rec["panoptic_image"][y, x])
      ref[y, x] = r + 256 * g + 256 * 256 * b
  np.testing.assert_array_equal(ex["panoptic"], ref)
  np.testing.assert_array_equal(ex["panoptic"], np.where(seg > 0, ids[np.maximum(seg, 1) - 1], 0))
  np.testing.assert_array_equal(ex["segment_ids"], ids)
  np.testing.assert_array_equal(ex["segment_classes"], [1, 80, 81])
  np.testing.assert_array_equal(ex["segment_isthing"], [True, True, False])
  np.testing.assert_array_equal(ex["segment_iscrowd"], [False, True, False])
  assert catalog.COCO_PANOPTIC_CATEGORY_IDS[ex["segment_classes"] - 1].tolist() == [1, 90, 92]
  # Largest id: all channels 255.
  assert catalog.decode_panoptic_png(np.full((1, 1, 3), 255, np.uint8))[0, 0] == 256 ** 3 - 1
  bad = dict(rec, panoptic_image=rec["panoptic_image"][:-1])
  with pytest.raises(ValueError, match="differ in size"):
    catalog.decode_coco2017_panoptic(bad)


@pytest.mark.parametrize("foreground, pet", [("pet", 1), ("species", 2), ("breed", 6)])
def test_pet_trimap_to_semantic(foreground, pet):
  rec = pet_record(4, label=5, species=1)  # breed 5, a dog
  ex = catalog.decode_oxford_iiit_pet(rec, index=12, foreground=foreground)
  check_interface(ex)
  assert ex["label"] == 5 and ex["image_id"] == 12
  tri = rec["segmentation_mask"][..., 0]
  for y in range(H):
    for x in range(W):
      assert ex["semantic"][y, x] == {1: pet, 2: 0, 3: 255}[int(tri[y, x])]


def test_pet_bad_input():
  rec = pet_record(0)
  with pytest.raises(ValueError, match="foreground"):
    catalog.decode_oxford_iiit_pet(rec, index=0, foreground="cat")
  with pytest.raises(ValueError, match="pass index="):
    catalog.decode_oxford_iiit_pet(rec)
  rec["segmentation_mask"][0, 0] = 0
  with pytest.raises(ValueError, match="trimap values"):
    catalog.decode_oxford_iiit_pet(rec, index=0)


def test_mnist_gray_to_rgb_and_cifar10():
  rec = mnist_record(5, label=9)
  ex = catalog.decode_mnist(rec, index=3)
  check_interface(ex)
  assert ex["image"].shape == (28, 28, 3) and ex["label"] == 9 and ex["image_id"] == 3
  for c in range(3):
    np.testing.assert_array_equal(ex["image"][..., c] * 255, rec["image"][..., 0])
  rec = cifar10_record(6, label=4)
  ex = catalog.decode_cifar10(rec, index=40000)
  check_interface(ex)
  np.testing.assert_array_equal(ex["image"] * 255, rec["image"])
  assert ex["label"] == 4 and ex["image_id"] == 40000
  with pytest.raises(ValueError, match="labels span"):
    catalog.decode_cifar10(cifar10_record(0, label=10), index=0)


# ------------------------------------------------------------------- source()


@pytest.mark.parametrize("name", NAMES)
def test_source_through_tfds_data_source_mock(name):
  records = {"train": [hand_made(name, s) for s in range(20)],
             "test": [hand_made(name, 100 + s) for s in range(3)]}
  asked = []

  def as_data_source(self, split, **kwargs):
    asked.append(split)
    return records[str(split).split("[")[0].split("+")[0]]

  decode = catalog.reader(name)
  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    if name in ("mnist", "cifar10"):  # jaxcv's splits, as jaxcv.data.load
      for split, rows in (("train", range(18)), ("validation", range(18, 20)),
                          ("train+validation", range(20))):
        src = catalog.source(name, split)
        assert len(src) == len(rows) and src.backend == "data_source"
        for i, j in enumerate(rows):
          ex = src[i]
          assert ex["image_id"] == j
          np.testing.assert_array_equal(ex["image"], decode(records["train"][j], index=j)["image"])
      with pytest.raises(ValueError, match="validation"):
        catalog.source(name, "val")
    else:
      src = catalog.source(name, "train")
      assert len(src) == 20 and asked[-1] == "train"
      for i in (0, 7, 19):
        ex, ref = src[i], decode(records["train"][i], index=i)
        check_interface(ex)
        assert ex.keys() == ref.keys()
        for k in ex:
          np.testing.assert_array_equal(ex[k], ref[k])
    src = catalog.source(name, "test")
    assert len(src) == 3 and asked[-1] == "test"
    check_interface(src[2])
    with pytest.raises(IndexError):
      src[3]
  with pytest.raises(ValueError, match="decode option"):
    catalog.source(name, "train", nonsense=1)


@pytest.mark.parametrize("name", NAMES)
def test_example_keys_are_what_the_decoders_give(name):
  assert tuple(catalog.reader(name)(hand_made(name), index=0)) == catalog.EXAMPLE_KEYS[name]


def test_bad_records_are_corrupt_example_errors_and_bad_options_are_not():
  """The pipeline replaces (and counts) a CorruptExampleError; a plain ValueError stops."""
  rec = voc_record(0)
  rec["objects"]["label"] = rec["objects"]["label"][:1]
  with pytest.raises(CorruptExampleError, match="different lengths"):
    catalog.decode_voc2007(rec)
  with pytest.raises(CorruptExampleError, match="record has no 'segmentation_mask'"):
    catalog.decode_oxford_iiit_pet({"image": pet_record(0)["image"], "label": 3}, index=0)
  with pytest.raises(ValueError, match="foreground must be one of") as e:
    catalog.decode_oxford_iiit_pet(pet_record(0), index=0, foreground="cat")
  assert not isinstance(e.value, CorruptExampleError)
  # at source(), before tfds opens anything
  with pytest.raises(ValueError, match=r"oxford_iiit_pet: foreground must be one of "
                     r"\('pet', 'species', 'breed'\), got 'cat'"):
    catalog.source("oxford_iiit_pet", "train", foreground="cat")


def test_a_record_the_storage_layer_cannot_return_is_replaced_and_counted(caplog):
  from jaxcv.data import pipeline

  class Damaged(list):
    def __getitem__(self, i):
      if i == 1:  # what TensorStore / array_record raise for a damaged chunk
        raise Exception("DATA_LOSS: Error reading record 1")  # noqa: TRY002
      return super().__getitem__(i)

  records = Damaged([voc_record(s, filename=f"00000{s}.jpg") for s in range(4)])
  with tfds.testing.mock_data(as_data_source_fn=lambda self, split, **kw: records):
    src = catalog.source("voc/2007", "train")
  with pytest.raises(CorruptExampleError, match=r"voc/2007 train: record 1 cannot be read "
                     r"\(Exception: DATA_LOSS"):
    src[1]
  stats = pipeline.DataStats()
  ds = pipeline.ExampleDataset(src, 20, "voc/2007", "train", max_boxes=4, stats=stats)
  with caplog.at_level(logging.WARNING, logger="jaxcv.data"):
    ids = ds.get(np.arange(3))["image_id"]
  np.testing.assert_array_equal(ids, [0, 2, 2])  # record 1 replaced by record 2
  assert stats["unreadable examples replaced"] == 1 and "DATA_LOSS" in caplog.text


def test_pet_source_passes_decode_options():
  with tfds.testing.mock_data(as_data_source_fn=lambda self, split, **kw: [pet_record(0)]):
    ex = catalog.source("oxford_iiit_pet", "train", foreground="breed")[0]
  assert set(np.unique(ex["semantic"]).tolist()) <= {0, 6, 255}
  assert (ex["semantic"] == 6).any()


def _write_prepared(name, split_records, data_dir, file_format):
  """A prepared tfds data set `name` in `data_dir`, as `tfds build` writes it, holding
  `split_records` encoded with the real builder's features."""
  from tensorflow_datasets.core import splits as splits_lib
  builder = tfds.builder(name, data_dir=data_dir, file_format=file_format)
  os.makedirs(builder.data_dir, exist_ok=True)
  infos = []
  for split, recs in split_records.items():
    ser = [builder.info.features.serialize_example(r) for r in recs]
    path = os.path.join(builder.data_dir,
                        f"{builder.name}-{split}.{file_format}-00000-of-00001")
    if file_format == "array_record":
      from array_record.python.array_record_module import ArrayRecordWriter
      writer = ArrayRecordWriter(path, "group_size:1")
      for s in ser:
        writer.write(s)
      writer.close()
    else:
      import tensorflow as tf
      with tf.io.TFRecordWriter(path) as writer:
        for s in ser:
          writer.write(s)
    infos.append(splits_lib.SplitInfo(name=split, shard_lengths=[len(recs)],
                                      num_bytes=sum(map(len, ser)), filename_template=None))
  builder.info.set_splits(splits_lib.SplitDict(infos))
  builder.info.write_to_directory(builder.data_dir)


def _encodable(name, rec):
  """A hand-made record as the builder's `encode_example` takes it."""
  rec = dict(rec)
  for key in ("objects", "panoptic_objects"):
    if key in rec:
      objs = rec[key]
      rec[key] = {k: (v if k != "bbox" else [tfds.features.BBox(*b) for b in v.tolist()])
                  for k, v in objs.items()}
  if name == "oxford_iiit_pet":
    rec["head_bbox"] = tfds.features.BBox(*rec["head_bbox"].tolist())
  return rec


@pytest.mark.parametrize("name", ["voc/2007", "coco/2017_panoptic", "oxford_iiit_pet"])
def test_source_on_prepared_array_record_and_tfrecord_fallback(tmp_path, name):
  """Real files: ArrayRecord is read by tfds.data_source; TFRecord (tfds.load's default
  format) makes source() fall back to tfds.load, with the same examples. Images are
  constant per channel, so JPEG encoding is lossless and the image can be compared."""
  recs = []
  for s in range(3):
    rec = hand_made(name, s)
    rec["image"] = np.broadcast_to(np.array([30 * s, 100, 200], np.uint8),
                                   rec["image"].shape).copy()
    recs.append(_encodable(name, rec))
  hand = [hand_made(name, s) for s in range(3)]
  results = {}
  for fmt in ("array_record", "tfrecord"):
    data_dir = str(tmp_path / fmt)
    _write_prepared(name, {"train": recs}, data_dir, fmt)
    src = catalog.source(name, "train", data_dir=data_dir)
    assert src.backend == {"array_record": "data_source", "tfrecord": "load"}[fmt]
    assert len(src) == 3
    results[fmt] = [src[i] for i in range(3)]
  decode = catalog.reader(name)
  for i in range(3):
    ref = decode(hand[i], index=i)
    for fmt in results:
      ex = results[fmt][i]
      check_interface(ex)
      assert ex.keys() == ref.keys()
      np.testing.assert_allclose(ex["image"][0, 0] * 255, recs[i]["image"][0, 0], atol=1)
      for k in ex:
        if k != "image":
          np.testing.assert_allclose(ex[k], ref[k], rtol=1e-6, err_msg=f"{fmt} {k}")
