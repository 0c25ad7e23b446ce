"""Segmentation metrics against np.bincount / sklearn confusion matrices and per-class
formulas written here with NumPy loops; jit, sharding over 8 devices, accumulation, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from jaxcv.metrics import segmentation as seg

C = 6
SHAPE = (8, 12, 10)  # one fixed batch shape: every case reuses one compiled function
_cm = jax.jit(seg.confusion_matrix, static_argnums=(2, 3))
_update = jax.jit(seg.update, static_argnums=(3,))
_metrics = jax.jit(seg.metrics)


def _case(rng, ignore_frac=0.1, classes=C):
  label = rng.integers(0, classes, SHAPE)
  # predictions agree with the label most of the time, so IoUs are not all tiny
  pred = np.where(rng.random(SHAPE) < 0.6, label, rng.integers(0, classes, SHAPE))
  label = np.where(rng.random(SHAPE) < ignore_frac, 255, label)
  return pred.astype(np.int32), label.astype(np.int32)


def _bincount_cm(pred, label, c=C, ignore=255):
  keep = label != ignore
  return np.bincount(label[keep] * c + pred[keep], minlength=c * c).reshape(c, c)


def _reference_metrics(cm):
  """Per-class loops over a float64 confusion matrix."""
  c = cm.shape[0]
  total = cm.sum()
  iou, dice, acc = [], [], []
  for k in range(c):
    tp, fp, fn = cm[k, k], cm[:, k].sum() - cm[k, k], cm[k, :].sum() - cm[k, k]
    iou.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    dice.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan)
    acc.append(tp / (tp + fn) if tp + fn else np.nan)
  present = [k for k in range(c) if not np.isnan(iou[k])]
  labelled = [k for k in range(c) if not np.isnan(acc[k])]
  return {
      "miou": np.mean([iou[k] for k in present]),
      "dice": np.mean([dice[k] for k in present]),
      "mean_accuracy": np.mean([acc[k] for k in labelled]),
      "pixel_accuracy": np.trace(cm) / total,
      "fwiou": sum(cm[k, :].sum() / total * iou[k] for k in present),
      "iou_per_class": np.array(iou), "dice_per_class": np.array(dice),
      "accuracy_per_class": np.array(acc),
  }


def test_confusion_matrix_matches_bincount_and_sklearn():
  rng = np.random.default_rng(0)
  for _ in range(20):
    pred, label = _case(rng)
    got = np.asarray(_cm(pred, label, C, 255))
    np.testing.assert_array_equal(got, _bincount_cm(pred, label))
    keep = label != 255
    np.testing.assert_array_equal(
        got, sk_confusion_matrix(label[keep], pred[keep], labels=np.arange(C)))
    assert got.dtype == np.int32


def test_metrics_match_reference_loops():
  rng = np.random.default_rng(1)
  for i in range(20):
    # some cases leave classes out of the labels and/or predictions (NaN IoU, skipped)
    pred, label = _case(rng, classes=C if i % 3 else C - 2)
    if i % 4 == 0:
      pred = np.where(pred == 1, 2, pred)  # class 1 never predicted
    cm = _bincount_cm(pred, label)
    ref = _reference_metrics(cm.astype(np.float64))
    for got in (_metrics(jnp.asarray(cm, jnp.int32)), seg.metrics(cm.astype(np.int64))):
      for key, value in ref.items():
        np.testing.assert_allclose(np.asarray(got[key], np.float64), value, rtol=1e-6,
                                   atol=1e-7, err_msg=key)


def test_analytic_values():
  # 2 classes: label [0,0,1,1], pred [0,1,1,1] -> IoU0 1/2, IoU1 2/3
  cm = seg.confusion_matrix(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), 3)
  m = seg.metrics(np.asarray(cm))
  np.testing.assert_allclose(m["iou_per_class"][:2], [0.5, 2 / 3])
  assert np.isnan(m["iou_per_class"][2])  # class 2 absent: not in the mean
  np.testing.assert_allclose(m["miou"], (0.5 + 2 / 3) / 2)
  np.testing.assert_allclose(m["pixel_accuracy"], 0.75)
  np.testing.assert_allclose(m["mean_accuracy"], (0.5 + 1.0) / 2)
  np.testing.assert_allclose(m["dice"], (2 / 3 + 0.8) / 2)
  np.testing.assert_allclose(m["fwiou"], 0.5 * 0.5 + 0.5 * 2 / 3)


def test_accumulation_and_valid_mask():
  rng = np.random.default_rng(2)
  cm_dev = jnp.zeros((C, C), jnp.int32)
  cm_host = np.zeros((C, C), np.int64)
  ref = np.zeros((C, C), np.int64)
  for _ in range(5):
    pred, label = _case(rng)
    valid = rng.random(SHAPE[0]) < 0.7
    cm_dev = _update(cm_dev, pred, label, 255, valid)
    cm_host = seg.update(cm_host, pred, label, 255, valid)
    ref += _bincount_cm(pred[valid], label[valid])
  np.testing.assert_array_equal(np.asarray(cm_dev), ref)
  np.testing.assert_array_equal(cm_host, ref)
  assert cm_host.dtype == np.int64 and cm_dev.dtype == jnp.int32


def test_sharded_batch_over_8_devices():
  devices = np.array(jax.devices()[:8])
  if devices.size < 8:
    pytest.skip("needs 8 devices (tests/conftest.py simulates them on CPU)")
  mesh = Mesh(devices, ("data",))
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  rng = np.random.default_rng(3)
  pred, label = _case(rng)
  valid = np.arange(SHAPE[0]) < 6
  p, lab, v = (jax.device_put(x, sharding) for x in (pred, label, valid))
  assert len(p.sharding.device_set) == 8
  cm = jax.jit(seg.update, static_argnums=(3,))(jnp.zeros((C, C), jnp.int32), p, lab, 255, v)
  np.testing.assert_array_equal(np.asarray(cm), _bincount_cm(pred[:6], label[:6]))
  m = jax.jit(seg.metrics)(cm)
  ref = _reference_metrics(_bincount_cm(pred[:6], label[:6]).astype(np.float64))
  np.testing.assert_allclose(float(m["miou"]), ref["miou"], rtol=1e-6)


def test_vmap_per_image():
  rng = np.random.default_rng(4)
  pred, label = _case(rng)
  cms = jax.vmap(lambda p, lab: seg.confusion_matrix(p, lab, C))(pred, label)
  for b in range(SHAPE[0]):
    np.testing.assert_array_equal(np.asarray(cms[b]), _bincount_cm(pred[b], label[b]))


def test_bad_input():
  p = np.zeros((2, 3), np.int32)
  with pytest.raises(ValueError, match="differ in shape"):
    seg.confusion_matrix(p, np.zeros((2, 4), np.int32), 3)
  with pytest.raises(ValueError, match="label has values outside"):
    seg.confusion_matrix(p, np.full((2, 3), 7), 3)
  with pytest.raises(ValueError, match="pred has values outside"):
    seg.confusion_matrix(np.full((2, 3), -1), p, 3)
  with pytest.raises(ValueError, match="integer"):
    seg.confusion_matrix(p.astype(np.float32), p, 3)
  with pytest.raises(ValueError, match="num_classes"):
    seg.confusion_matrix(p, p, 0)
  with pytest.raises(ValueError, match="ignore_index"):
    seg.confusion_matrix(p, p, 3, ignore_index=1)
  with pytest.raises(ValueError, match="valid"):
    seg.confusion_matrix(p, p, 3, valid=np.ones(3, bool))
  with pytest.raises(ValueError, match=r"\[C, C\]"):
    seg.metrics(np.zeros((3, 2)))
  # under jit values cannot be checked: out-of-range pixels are dropped, not counted
  cm = _cm(np.array([0, 5, 1]), np.array([0, 1, 9]), 3, 255)
  np.testing.assert_array_equal(np.asarray(cm), np.diag([1, 0, 0]))
