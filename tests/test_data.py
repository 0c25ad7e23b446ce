"""jaxcv.data: the registry, ArrayDataset's checks, `digits`, and the tfds readers (mock data)."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import data
from jaxcv.data import ArrayDataset, digits, resize_images

DIGIT_SPLITS = ("train", "validation", "test")


# ---------------------------------------------------------------------------------------------
# registry

def test_names_and_unknown_name_lists_them():
  assert {"digits", "mnist", "cifar10"} <= set(data.names())
  with pytest.raises(ValueError, match=r"unknown data set 'nope'.*'cifar10'.*'digits'.*'mnist'"):
    data.load("nope", "train")


@pytest.mark.parametrize("name", ["digits", "mnist", "cifar10"])
def test_unknown_split_lists_the_splits(name):
  with pytest.raises(ValueError, match=r"no split 'dev'.*'train'.*'validation'.*'test'"):
    data.load(name, "dev")


def test_unknown_option_is_an_error_listing_options():
  with pytest.raises(ValueError, match=r"does not take option\(s\) \['colour'\].*image_size"):
    data.load("digits", "train", colour=True)


def test_register_adds_a_data_set_without_touching_load():
  name = "tiny_test_set"

  @data.register(name, splits=("train",))
  def _tiny(split, n=4):
    return ArrayDataset({"image": np.zeros((n, 2, 2, 3), np.float32),
                         "label": np.arange(n, dtype=np.int32) % 2}, 2, name, split)

  try:
    assert name in data.names()
    assert len(data.load(name, "train", n=6)) == 6
    with pytest.raises(ValueError, match="known splits"):
      data.load(name, "test")
    with pytest.raises(ValueError, match="already registered"):
      data.register(name)(_tiny)
  finally:
    data.unregister(name)
  assert name not in data.names()


def test_from_config_splits_loader_options_from_its_own_and_the_tasks_keys():
  c = {"name": "digits", "image_size": 16, "eval_splits": ("test",), "mean": (0.5,) * 3}
  train, evals = data.from_config(c, task_keys=("mean", "std"))
  assert (train.split, train.image_shape, list(evals)) == ("train", (16, 16, 3), ["test"])
  assert len(evals["test"]) == digits.SPLIT_SIZES["test"]
  # `mean` is no option of the digits loader: only the task's keys are held back
  with pytest.raises(ValueError, match=r"'digits' does not take option\(s\) \['mean'\]"):
    data.from_config(c)
  _, evals = data.from_config({"name": "digits"})  # defaults: train, validation + test
  assert list(evals) == ["validation", "test"]
  with pytest.raises(ValueError, match="no 'name'"):
    data.from_config({"image_size": 16})


def test_importing_data_and_loading_digits_does_not_import_tensorflow():
  code = ("import sys; from jaxcv import data; data.names(); data.load('digits', 'test'); "
          "print('tensorflow' in sys.modules, 'tensorflow_datasets' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.split()[-2:] == ["False", "False"]


# ---------------------------------------------------------------------------------------------
# ArrayDataset

def _arrays(n=5, h=4, w=4):
  rng = np.random.default_rng(0)
  return {"image": rng.random((n, h, w, 3), dtype=np.float32),
          "label": np.arange(n, dtype=np.int32) % 3,
          "image_id": np.arange(100, 100 + n, dtype=np.int32)}


def test_array_dataset_basics_and_get():
  a = _arrays()
  ds = ArrayDataset(a, 3, "toy", "train")
  assert len(ds) == 5 and ds.image_shape == (4, 4, 3) and ds.num_classes == 3
  assert (ds.name, ds.split) == ("toy", "train")
  idx = np.asarray([4, 0, 4, 2])
  batch = ds.get(idx)
  assert set(batch) == {"image", "label", "image_id"}
  np.testing.assert_array_equal(batch["image"], a["image"][idx])
  np.testing.assert_array_equal(batch["label"], [1, 0, 1, 2])
  np.testing.assert_array_equal(batch["image_id"], [104, 100, 104, 102])
  batch["label"][0] = 2  # a new array: the data set is untouched
  assert ds.arrays["label"][4] == 1


def test_array_dataset_casts_integer_labels_to_int32():
  a = dict(_arrays(), label=np.asarray([0, 1, 2, 0, 1], np.int64))
  assert ArrayDataset(a, 3, "toy", "train").arrays["label"].dtype == np.int32


@pytest.mark.parametrize("change,match", [
    (lambda a: dict(a, image=a["image"][..., :1]), r"shape \(5, 4, 4, 1\).*\[N, H, W, 3\]"),
    (lambda a: dict(a, image=a["image"][..., 0]), r"shape \(5, 4, 4\).*\[N, H, W, 3\]"),
    (lambda a: dict(a, image=a["image"].astype(np.float64)), "dtype float64.*float32"),
    (lambda a: dict(a, image=a["image"] * 255), r"values span .*expected \[0, 1\]"),
    (lambda a: dict(a, label=np.asarray([0, 1, 2, 7, 1], np.int32)),
     r"label 7 at index 3 is outside \[0, 3\)"),
    (lambda a: dict(a, label=np.asarray([0, -1, 2, 0, 1], np.int32)),
     r"label -1 at index 1 is outside \[0, 3\)"),
    (lambda a: dict(a, label=a["label"].astype(np.float32)), "'label' has dtype float32"),
    (lambda a: dict(a, label=a["label"][:4]), r"'image' has 5 rows, 'label' has shape \(4,\)"),
    (lambda a: dict(a, image_id=np.zeros(6, np.int32)), r"'image_id' has shape \(6,\)"),
    (lambda a: dict(a, image_id=np.asarray([1, 2, 3, 2, 5], np.int32)),
     "image_id 2 occurs 2 times"),
    (lambda a: {k: v for k, v in a.items() if k != "image"}, "no 'image'"),
])
def test_array_dataset_rejects_bad_arrays(change, match):
  with pytest.raises(ValueError, match=match):
    ArrayDataset(change(_arrays()), 3, "toy", "train")


def test_resize_matches_jax_image_resize():
  rng = np.random.default_rng(1)
  x = rng.random((3, 8, 8, 2), dtype=np.float32)
  for size in (32, 13, 8, 5):
    ref = jax.image.resize(jnp.asarray(x), (3, size, size, 2), "linear")
    np.testing.assert_allclose(resize_images(x, size), np.asarray(ref), atol=1e-6)
  y = resize_images(x, (12, 20))
  assert y.shape == (3, 12, 20, 2) and y.dtype == np.float32
  assert y.min() >= x.min() and y.max() <= x.max()


# ---------------------------------------------------------------------------------------------
# digits

@pytest.fixture(scope="module")
def digit_splits():
  return {s: data.load("digits", s) for s in DIGIT_SPLITS + ("train+validation",)}


def test_digits_split_sizes(digit_splits):
  for split, n in digits.SPLIT_SIZES.items():
    assert len(digit_splits[split]) == n, split
  assert sum(digits.SPLIT_SIZES[s] for s in DIGIT_SPLITS) == digits.NUM_EXAMPLES == 1797


def test_digits_ids_are_disjoint_and_cover_everything(digit_splits):
  ids = [digit_splits[s].arrays["image_id"] for s in DIGIT_SPLITS]
  union = np.concatenate(ids)
  assert len(np.unique(union)) == len(union) == 1797
  np.testing.assert_array_equal(np.sort(union), np.arange(1797))
  np.testing.assert_array_equal(
      np.sort(digit_splits["train+validation"].arrays["image_id"]),
      np.sort(np.concatenate(ids[:2])))


def test_digits_ids_are_indices_into_sklearn(digit_splits):
  from sklearn.datasets import load_digits
  raw = load_digits()
  for s in DIGIT_SPLITS:
    a = digit_splits[s].arrays
    np.testing.assert_array_equal(a["label"], raw.target[a["image_id"]])
    native = data.load("digits", s, image_size=8).arrays
    np.testing.assert_array_equal(native["image_id"], a["image_id"])
    np.testing.assert_allclose(native["image"][..., 0], raw.images[a["image_id"]] / 16.0,
                               atol=1e-7)


def test_digits_split_is_stratified(digit_splits):
  labels = np.concatenate([digit_splits[s].arrays["label"] for s in DIGIT_SPLITS])
  totals = np.bincount(labels, minlength=10)
  for s in DIGIT_SPLITS:
    counts = np.bincount(digit_splits[s].arrays["label"], minlength=10)
    proportional = totals * len(digit_splits[s]) / 1797
    assert np.all(np.abs(counts - proportional) < 1), (s, counts, proportional)


# The test split of split_seed 0 (sklearn 1.9.1); a change here means the split moved.
FIRST_TEST_IDS = [21, 24, 28, 34, 35, 37, 39, 42]
TEST_ID_SUM = 337944


def test_digits_split_is_fixed():
  """The same rows on every load and every machine: a fingerprint of the test split."""
  again = digits._split_arrays.__wrapped__("test", 32, 0)  # bypasses the cache
  first = data.load("digits", "test")
  np.testing.assert_array_equal(again["image_id"], first.arrays["image_id"])
  np.testing.assert_array_equal(again["image"], first.arrays["image"])
  ids = first.arrays["image_id"]
  assert ids[:8].tolist() == FIRST_TEST_IDS and int(ids.sum()) == TEST_ID_SUM
  other = digits.split_indices(1)
  assert not np.array_equal(other["test"], ids)  # split_seed is the only thing that moves it


def test_digits_shapes_dtypes_ranges(digit_splits):
  for s, ds in digit_splits.items():
    a = ds.arrays
    assert ds.image_shape == (32, 32, 3) and ds.num_classes == 10
    assert a["image"].dtype == np.float32 and a["image"].shape == (len(ds), 32, 32, 3)
    assert a["label"].dtype == np.int32 and a["image_id"].dtype == np.int32
    assert 0.0 <= a["image"].min() and a["image"].max() <= 1.0 and a["image"].max() > 0.9
    assert set(np.unique(a["label"])) == set(range(10))
    np.testing.assert_array_equal(a["image"][..., 0], a["image"][..., 1])  # gray in RGB
    np.testing.assert_array_equal(a["image"][..., 0], a["image"][..., 2])
  for size in (8, 28, 32, 40):
    assert data.load("digits", "validation", image_size=size).image_shape == (size, size, 3)


def test_digits_resize_is_bilinear():
  native = data.load("digits", "validation", image_size=8).arrays["image"]
  big = data.load("digits", "validation", image_size=32).arrays["image"]
  ref = jax.image.resize(jnp.asarray(native), (len(native), 32, 32, 3), "bilinear")
  np.testing.assert_allclose(big, np.asarray(ref), atol=1e-6)


def test_digits_get_and_cache_safety():
  ds = data.load("digits", "train")
  idx = np.asarray([0, 5, 1256, 5])
  batch = ds.get(idx)
  assert batch["image"].shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(batch["image_id"], ds.arrays["image_id"][idx])
  np.testing.assert_array_equal(batch["image"][1], batch["image"][3])
  batch["image"][:] = 0  # the batch is a copy; the cached split is read-only
  assert ds.arrays["image"][5].max() > 0
  with pytest.raises(ValueError):
    ds.arrays["image"][0, 0, 0, 0] = 1.0
  assert data.load("digits", "train") is not ds  # a fresh object over the cached arrays


@pytest.mark.parametrize("name, kwargs, match", [
    ("digits", {"image_size": 0}, r"digits: image_size \(data.image_size\) must be >= 1, got 0"),
    ("digits", {"image_size": 2.5}, r"digits: image_size .*must be an int, got 2\.5"),
    ("digits", {"image_size": True}, r"digits: image_size .*must be an int, got True"),
    ("digits", {"split_seed": -1}, r"digits: split_seed must be in \[0, 4294967295\]"),
    # checked before TensorFlow is imported or anything is read
    ("mnist", {"image_size": -5}, r"mnist: image_size .*must be >= 1, got -5"),
    ("cifar10", {"image_size": 32.0}, r"cifar10: image_size .*must be an int"),
    ("mnist", {"download": "yes"}, r"mnist: download must be True or False"),
    ("cifar10", {"data_dir": 7}, r"cifar10: data_dir .*must be a directory path"),
])
def test_bad_in_memory_options_are_named_errors(name, kwargs, match):
  with pytest.raises(ValueError, match=match):
    data.load(name, "train", **kwargs)


# ---------------------------------------------------------------------------------------------
# tfds readers, on tfds.testing.mock_data (nothing downloaded)

N_MOCK = 30


@pytest.fixture(scope="module")
def tfds_mock():
  tfds = pytest.importorskip("tensorflow_datasets")
  from jaxcv.data import tfds_readers
  tfds_readers.clear_cache()
  with tfds.testing.mock_data(num_examples=N_MOCK):
    yield tfds_readers
  tfds_readers.clear_cache()


@pytest.mark.parametrize("name,size,default", [("mnist", 28, True), ("mnist", 32, False),
                                               ("cifar10", 32, True), ("cifar10", 16, False)])
def test_tfds_reader_format(tfds_mock, name, size, default):
  kwargs = {} if default else {"image_size": size}
  for split, n in [("train", 27), ("validation", 3), ("test", N_MOCK),
                   ("train+validation", N_MOCK)]:
    ds = data.load(name, split, **kwargs)
    a = ds.arrays
    assert (ds.name, ds.split, ds.num_classes) == (name, split, 10)
    assert len(ds) == n and ds.image_shape == (size, size, 3)
    assert a["image"].dtype == np.float32 and 0.0 <= a["image"].min() <= a["image"].max() <= 1
    assert a["image"].max() > 0.5
    assert a["label"].dtype == np.int32 and a["label"].min() >= 0 and a["label"].max() < 10
    assert a["image_id"].dtype == np.int32
    if name == "mnist":
      np.testing.assert_array_equal(a["image"][..., 0], a["image"][..., 2])


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_tfds_validation_is_carved_from_train_without_overlap(tfds_mock, name):
  train, val, both = (data.load(name, s).arrays for s in ("train", "validation",
                                                          "train+validation"))
  np.testing.assert_array_equal(train["image_id"], np.arange(27))
  np.testing.assert_array_equal(val["image_id"], np.arange(27, 30))
  assert not set(train["image_id"]) & set(val["image_id"])
  for key in ("image", "label", "image_id"):  # train then validation is tfds' whole train
    np.testing.assert_array_equal(np.concatenate([train[key], val[key]]), both[key])
  again = data.load(name, "validation").arrays  # deterministic
  np.testing.assert_array_equal(again["image"], val["image"])
  np.testing.assert_array_equal(data.load(name, "test").arrays["image_id"], np.arange(N_MOCK))


def test_tfds_unknown_split_and_option(tfds_mock):
  with pytest.raises(ValueError, match=r"'mnist' has no split 'train\[:10\]'; known splits"):
    data.load("mnist", "train[:10]")
  with pytest.raises(ValueError, match="does not take option"):
    data.load("cifar10", "train", max_boxes=3)
