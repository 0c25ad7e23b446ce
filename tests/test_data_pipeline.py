"""The per-example pipeline: sanitising, padding, bad input, determinism, export, configs."""
import json
import logging

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

import jaxcv.data as data_lib
from conftest import load_config
from jaxcv.data import augment, export, pipeline, set_transforms, shapes
from jaxcv.train import input_pipeline

S = 64  # image size of every example here (one compiled shape, fast generation)


def _example(boxes, h=16, w=20):
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  n = len(boxes)
  return {"image": np.zeros((h, w, 3), np.float32), "image_id": np.int32(3),
          "boxes": boxes, "classes": np.arange(1, n + 1, dtype=np.int32),
          "iscrowd": np.zeros(n, bool), "area": np.ones(n, np.float32),
          "masks": np.zeros((n, h, w), bool)}


def test_sanitize_drops_bad_boxes_with_their_rows_and_counts_them(caplog):
  stats = pipeline.DataStats()
  ex = _example([[1, 1, 5, 5],            # fine
                 [np.nan, 0, 3, 3],       # not finite
                 [6, 2, 4, 8],            # inverted
                 [3, 3, 3, 9],            # zero width
                 [30, 1, 40, 5],          # wholly right of the 20-pixel-wide image
                 [-5, -5, 4, 30]])        # partly outside: clipped, kept
  with caplog.at_level(logging.WARNING, logger="jaxcv.data"):
    out = pipeline.sanitize(ex, "ex3", stats)
  np.testing.assert_array_equal(out["classes"], [1, 6])
  np.testing.assert_array_equal(out["boxes"], [[1, 1, 5, 5], [0, 0, 4, 16]])
  assert out["masks"].shape == (2, 16, 20)
  assert stats["non-finite boxes dropped"] == 1
  assert stats["inverted boxes dropped"] == 1
  assert stats["zero-area or out-of-image boxes dropped"] == 2
  assert "inverted boxes dropped" in caplog.text and "ex3" in caplog.text
  np.testing.assert_array_equal(ex["classes"], np.arange(1, 7))  # input untouched


def test_pad_truncates_beyond_max_boxes_and_logs_the_count(caplog):
  stats = pipeline.DataStats()
  ex = _example(np.tile([[1, 1, 5, 5]], (7, 1)))
  with caplog.at_level(logging.WARNING, logger="jaxcv.data"):
    out = pipeline.pad_example(ex, 4, where="ex", stats=stats)
  assert out["boxes"].shape == (4, 4) and out["masks"].shape == (4, 16, 20)
  assert out["box_valid"].all()
  assert stats["objects beyond the maximum truncated"] == 3
  assert "keeping the first 4" in caplog.text
  short = pipeline.pad_example(_example([[1, 1, 5, 5]]), 4, stats=stats)
  np.testing.assert_array_equal(short["box_valid"], [True, False, False, False])
  np.testing.assert_array_equal(short["classes"], [1, 0, 0, 0])
  assert short["classes"].dtype == np.int32 and short["iscrowd"].dtype == bool
  with pytest.raises(ValueError, match="max_boxes"):
    pipeline.pad_example(ex, None)


def test_examples_without_objects_pad_to_all_invalid():
  out = pipeline.pad_example(pipeline.sanitize(_example(np.zeros((0, 4)))), 3)
  assert out["boxes"].shape == (3, 4) and not out["box_valid"].any()


class Corrupt:
  """A source whose example 2 raises `error` (by default as a corrupt image's bytes)."""

  def __init__(self, n=5, error=None):
    self.n = n
    self.error = error or data_lib.CorruptExampleError("image bytes do not decode")

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if i == 2:
      raise self.error
    ex = _example([[1, 1, 5, 5]])
    ex["image_id"] = np.int32(i)
    return ex


@pytest.mark.parametrize("error", [
    data_lib.CorruptExampleError("image bytes do not decode"),
    OSError("input/output error: image bytes do not decode"),
    EOFError("compressed file ended before the end-of-stream marker: do not decode"),
], ids=["corrupt_record", "io_error", "truncated"])
def test_unreadable_examples_are_replaced_logged_and_counted(caplog, error):
  stats = pipeline.DataStats()
  ds = pipeline.ExampleDataset(Corrupt(error=error), 3, "corrupt", "train", max_boxes=2,
                               stats=stats)
  with caplog.at_level(logging.WARNING, logger="jaxcv.data"):
    batch = ds.get(np.array([1, 2, 3]))
  np.testing.assert_array_equal(batch["image_id"], [1, 3, 3])  # 2 replaced by the next one
  assert stats["unreadable examples replaced"] == 1
  assert "example 2" in caplog.text and "do not decode" in caplog.text
  assert type(error).__name__ in caplog.text


@pytest.mark.parametrize("error, match", [
    (ValueError("image_size 0 is below the minimum 32"), "image_size 0 is below the minimum"),
    (KeyError("example 2 has no ['dpeth']"), "has no \\['dpeth'\\]"),
    (TypeError("unsupported operand type(s)"), "unsupported operand"),
], ids=["ValueError", "KeyError", "TypeError"])
def test_configuration_and_programming_errors_are_not_unreadable_examples(error, match):
  """They would fail the same way on every example: replacing them only hid the message
  behind "examples 0..16 could not be read"."""
  stats = pipeline.DataStats()
  ds = pipeline.ExampleDataset(Corrupt(error=error), 3, "cfg", "train", max_boxes=2,
                               stats=stats)
  with pytest.raises(type(error), match=match):
    ds.get(np.array([1, 2]))
  assert stats["unreadable examples replaced"] == 0


def test_a_source_that_lacks_a_selected_key_is_a_key_error_naming_it():
  from jaxcv.data.example_sets import KeySelect
  ds = pipeline.ExampleDataset(KeySelect(Corrupt(), ("depth",)), 3, "nodepth", "train",
                               max_boxes=2)
  with pytest.raises(KeyError, match=r"example 0 has no \['depth'\].*it has \["):
    ds.get(np.array([0]))


def test_storage_failures_of_one_record_count_as_unreadable(caplog):
  from jaxcv.data.base import read_record
  from jaxcv.data.example_sets import DecodedSource

  class Records:
    def __len__(self):
      return 4

    def __getitem__(self, i):
      if i == 1:  # TensorStore and tfds raise bare Exceptions, RuntimeErrors, tf errors
        raise RuntimeError("DATA_LOSS: checksum mismatch in chunk 7")
      if i >= 4:
        raise IndexError(i)
      return {"i": i}

  with pytest.raises(data_lib.CorruptExampleError, match=r"record 1 cannot be read "
                     r"\(RuntimeError: DATA_LOSS"):
    read_record(Records(), 1, "records")
  with pytest.raises(IndexError):  # a bad index is the caller's bug, not a corrupt record
    read_record(Records(), 9, "records")

  def decode(record):
    ex = _example([[1, 1, 5, 5]])
    ex["image_id"] = np.int32(record["i"])
    return ex

  stats = pipeline.DataStats()
  ds = pipeline.ExampleDataset(DecodedSource(Records(), decode), 3, "damaged", "train",
                               max_boxes=2, stats=stats)
  with caplog.at_level(logging.WARNING, logger="jaxcv.data"):
    np.testing.assert_array_equal(ds.get(np.array([0, 1]))["image_id"], [0, 2])
  assert stats["unreadable examples replaced"] == 1 and "checksum mismatch" in caplog.text


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": 0}, r"'x': num_classes must be >= 1, got 0"),
    ({"max_boxes": 0}, r"'x': max_boxes \(data.max_boxes\) must be >= 1, got 0"),
    ({"max_segments": 2.5}, r"'x': max_segments \(data.max_segments\) must be an int"),
    ({"max_retries": -1}, r"'x': max_retries must be >= 0, got -1"),
])
def test_example_dataset_options_are_checked(kwargs, match):
  with pytest.raises(ValueError, match=match):
    pipeline.ExampleDataset(Corrupt(), **{"num_classes": 3, "name": "x", "split": "train",
                                          **kwargs})


def test_images_of_different_sizes_in_a_batch_name_the_fix():
  class Sizes(Corrupt):
    def __getitem__(self, i):
      return _example([[1, 1, 5, 5]], h=16 + i)

  ds = pipeline.ExampleDataset(Sizes(), 3, "sizes", "train", max_boxes=2)
  with pytest.raises(ValueError, match="resize_pad_to"):
    ds.get(np.array([0, 1]))


def _shapes(split="train", **kw):
  return data_lib.load("shapes", split, image_size=S, split_sizes={split: 12}, max_boxes=8,
                       **kw)


def test_shapes_batches_follow_the_batch_format():
  ds = _shapes(keys=("semantic", "boxes", "classes", "masks", "keypoints", "iscrowd", "area"))
  b = ds.get(np.arange(3))
  assert b["image"].shape == (3, S, S, 3) and b["image"].dtype == np.float32
  assert b["semantic"].shape == (3, S, S) and b["semantic"].dtype == np.int32
  assert b["boxes"].shape == (3, 8, 4) and b["masks"].shape == (3, 8, S, S)
  assert b["keypoints"].shape == (3, 8, 4, 3) and b["box_valid"].dtype == bool
  assert "depth" not in b and "panoptic" not in b  # only the keys asked for
  cls = b["classes"][b["box_valid"]]
  assert cls.min() >= 1 and cls.max() <= shapes.NUM_CLASSES
  # area is the instance-mask pixel count
  np.testing.assert_array_equal(b["area"][b["box_valid"]],
                                b["masks"][b["box_valid"]].sum(axis=(1, 2)))
  assert ds.class_counts["semantic"] == shapes.NUM_CLASSES + 1


def _mesh():
  return Mesh(np.asarray(jax.devices()[:1]), ("data",))


def test_cached_shapes_give_the_same_examples_in_fewer_bytes():
  from jaxcv.data import example_sets

  plain, cached = _shapes(), _shapes(cache=True)
  assert isinstance(cached.source, example_sets.CachedSource)
  for _ in range(2):  # the first read fills the cache, the second reads from it
    for i in (0, 5, 11):
      want, got = plain.source[i], cached.source[i]
      assert sorted(got) == sorted(want)
      for k in want:
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  stored = cached.source._store[5]
  assert stored["image"][1].dtype == np.uint8 and stored["semantic"][1].dtype == np.uint8
  assert stored["depth"][1].dtype == np.float32  # not 8-bit: kept as it is
  assert stored["masks"][1].dtype == bool
  a, b = plain.get(np.arange(4), seed=(1, 2, 3)), cached.get(np.arange(4), seed=(1, 2, 3))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # a failing read is not cached: it fails again (and ExampleDataset replaces it)
  calls = []

  class Flaky:
    def __len__(self):
      return 2

    def __getitem__(self, i):
      calls.append(i)
      raise OSError("corrupt record")

  flaky = example_sets.CachedSource(Flaky())
  for _ in range(2):
    with pytest.raises(OSError):
      flaky[1]
  assert calls == [1, 1] and not flaky._store


def test_augmented_batches_are_a_function_of_seed_and_step_with_any_worker_count():
  ds = _shapes()
  ds.transform = augment.build([("random_hflip", {"flip_pairs": shapes.KEYPOINT_FLIP_PAIRS}),
                                ("random_scale_jitter", {"min_scale": 0.5, "max_scale": 1.5,
                                                         "output_size": S})])
  serial = input_pipeline.TrainBatches(ds, 4, 7, 0, _mesh(), prefetch=0)
  ref = [jax.device_get(next(serial)) for _ in range(4)]
  for reader in input_pipeline.READERS:
    threaded = input_pipeline.TrainBatches(ds, 4, 7, 2, _mesh(), prefetch=3, workers=2,
                                           reader=reader)
    for s in (2, 3):
      got = jax.device_get(next(threaded))
      assert sorted(got) == sorted(ref[s])
      for k in got:
        np.testing.assert_array_equal(got[k], ref[s][k], err_msg=f"{reader} {k}")
    threaded.close()
  # one device: the workers place the batches; sharded over 8: the stepping thread does
  wide = Mesh(np.asarray(jax.devices()), ("data",))
  assert input_pipeline.places_from_workers(_mesh())
  assert input_pipeline.places_from_workers(wide) == (wide.size == 1)
  wide_ref = input_pipeline.TrainBatches(ds, 8, 7, 0, wide, prefetch=0)
  wide_threaded = input_pipeline.TrainBatches(ds, 8, 7, 0, wide, prefetch=2, workers=2)
  for _ in range(2):
    want, got = jax.device_get(next(wide_ref)), jax.device_get(next(wide_threaded))
    for k in want:
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  wide_threaded.close()
  with pytest.raises(ValueError, match="known: threads, grain"):
    input_pipeline.TrainBatches(ds, 4, 7, 0, _mesh(), reader="tf.data")
  # the augmentation really ran: step 0's images differ from the plain examples
  idx = input_pipeline.batch_indices(7, 0, 4, len(ds))
  plain = _shapes().get(idx)
  assert not np.array_equal(plain["image"], ref[0]["image"])
  np.testing.assert_array_equal(plain["image_id"], ref[0]["image_id"])
  other_seed = input_pipeline.TrainBatches(ds, 4, 8, 0, _mesh(), prefetch=0)
  assert not np.array_equal(jax.device_get(next(other_seed))["image_id"], ref[0]["image_id"])


def test_config_transforms_go_to_train_only_and_unknown_names_fail():
  cfg = load_config("lenet_digits")
  train, evals = _shapes(), {"validation": _shapes("validation")}
  cfg.data.name = "shapes"
  cfg.data.augmentation = [("random_hflip", {"p": 1.0})]
  set_transforms(cfg.data, train, evals)
  assert train.transform is not None and evals["validation"].transform is None
  a = train.get(np.arange(2), seed=(0, 0, 0))
  b = _shapes().get(np.arange(2))
  np.testing.assert_array_equal(a["image"], b["image"][:, :, ::-1])
  cfg.data.augmentation = [("no_such_augmentation", {})]
  with pytest.raises(ValueError, match="known augmentations"):
    set_transforms(cfg.data, _shapes(), evals)
  digits = load_config("lenet_digits")
  digits.data.augmentation = [("random_hflip", {})]
  with pytest.raises(ValueError, match="held in memory"):
    set_transforms(digits.data, data_lib.load("digits", "train"), {})


def test_unknown_data_set_and_shapes_options_are_errors():
  with pytest.raises(ValueError, match="known data sets"):
    data_lib.load("shapez", "train")
  with pytest.raises(ValueError, match="known: \\['generate', 'tfds'\\]"):
    data_lib.load("shapes", "train", source="web")
  with pytest.raises(ValueError, match="known splits"):
    data_lib.load("shapes", "dev")


@pytest.mark.parametrize("kwargs, match", [
    # image_size 0 and -5 were accepted and failed later as "examples 0..16 could not be read"
    ({"image_size": 0}, r"shapes: image_size \(data.image_size\) must be >= 32, got 0"),
    ({"image_size": -5}, r"shapes: image_size .*must be >= 32, got -5"),
    ({"image_size": 16}, r"shapes: image_size .*must be >= 32, got 16"),
    ({"image_size": 64.0}, r"shapes: image_size .*must be an int, got 64\.0"),
    ({"image_size": True}, r"shapes: image_size .*must be an int, got True"),
    ({"keys": ("dpeth",)},
     r"'shapes' has no label\(s\) \['dpeth'\] \(data.keys\); known: \['image', .*'depth'"),
    ({"keys": ("semantic", "mask")}, r"has no label\(s\) \['mask'\].*'masks'"),
    ({"keys": "depth"}, r"keys must be a list or tuple of label names, e.g. \('depth',\)"),
    ({"split_sizes": {"train": -1}}, r"split_sizes\['train'\] must be in \[0, 1000000\]"),
    ({"split_sizes": {"train": 2.5}}, r"split_sizes\['train'\] must be an int, got 2\.5"),
    ({"split_sizes": {"train": 2_000_000}}, r"split_sizes\['train'\] must be in"),
    ({"split_sizes": {"val": 3}}, r"shapes has no split 'val' \(data.split_sizes\)"),
    ({"split_sizes": [12]}, r"split_sizes must map split names to sizes"),
    ({"split_sizes": {"train": 0}}, r"split 'train' is empty"),
    ({"max_boxes": 0}, r"shapes: max_boxes \(data.max_boxes\) must be >= 1, got 0"),
    ({"max_segments": -1}, r"shapes: max_segments .*must be >= 1, got -1"),
    ({"seed": -1}, r"shapes: seed \(data.seed\) must be >= 0, got -1"),
    ({"cache": "yes"}, r"shapes: cache \(data.cache\) must be True or False"),
    ({"data_dir": 5}, r"shapes: data_dir .*must be a directory path"),
])
def test_bad_shapes_options_are_named_errors_at_load(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data_lib.load("shapes", "train", **{"image_size": S, "split_sizes": {"train": 12},
                                        **kwargs})


@pytest.mark.parametrize("kwargs, match", [
    ({"keys": ("masks",)}, r"'voc/2007' has no label\(s\) \['masks'\].*known: \['image', "
     r"'image_id', 'boxes'"),
    ({"max_boxes": 0}, r"voc/2007: max_boxes \(data.max_boxes\) must be >= 1, got 0"),
    ({"max_segments": 1.5}, r"voc/2007: max_segments .*must be an int"),
    ({"download": "no"}, r"voc/2007: download must be True or False, got 'no'"),
    ({"data_dir": 3}, r"voc/2007: data_dir .*must be a directory path"),
])
def test_bad_catalog_options_are_named_errors_before_tfds_is_opened(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data_lib.load("voc/2007", "train", **kwargs)


def test_coco_export_reads_back_in_pycocotools_with_mask_areas():
  pycocotools_coco = pytest.importorskip("pycocotools.coco")
  from pycocotools import mask as mask_utils
  ds = _shapes("validation")
  gt = export.to_coco(ds, batch_size=5, category_names=shapes.CLASS_NAMES,
                      keypoint_names=shapes.KEYPOINT_NAMES)
  gt = json.loads(json.dumps(gt))  # json-ready (RLE counts as text), read back as a file is
  api = pycocotools_coco.COCO()
  api.dataset = gt
  api.createIndex()
  batch = ds.get(np.arange(len(ds)))
  assert sorted(api.getImgIds()) == sorted(batch["image_id"].tolist())
  n = int(batch["box_valid"].sum())
  assert len(api.getAnnIds()) == n > 0
  for ann in api.loadAnns(api.getAnnIds()):
    assert ann["area"] == mask_utils.area(ann["segmentation"])  # mask pixel count
    row = np.flatnonzero(batch["image_id"] == ann["image_id"])[0]
    mask = mask_utils.decode(ann["segmentation"]).astype(bool)
    matches = [j for j in np.flatnonzero(batch["box_valid"][row])
               if np.array_equal(batch["masks"][row, j], mask)]
    assert len(matches) == 1
    j = matches[0]
    x1, y1, x2, y2 = batch["boxes"][row, j]
    np.testing.assert_allclose(ann["bbox"], [x1, y1, x2 - x1, y2 - y1])
    assert ann["category_id"] == batch["classes"][row, j]
    assert ann["iscrowd"] == int(batch["iscrowd"][row, j])
  assert api.loadCats(1)[0]["name"] == "circle"


def test_shapes_from_the_tfds_builder_equals_the_generator(tmp_path):
  kw = {"image_size": 32, "split_sizes": {"train": 4, "validation": 3, "test": 2},
        "max_boxes": 8}
  a = data_lib.load("shapes", "validation", source="tfds", data_dir=str(tmp_path), **kw)
  b = data_lib.load("shapes", "validation", **kw)
  x, y = a.get(np.arange(3)), b.get(np.arange(3))
  assert sorted(x) == sorted(y)
  for k in x:
    np.testing.assert_array_equal(x[k], y[k], err_msg=k)
  with pytest.raises(ValueError, match="data_dir"):
    data_lib.load("shapes", "train", source="tfds")
