"""Dense tasks (segmentation, depth, normals, image_to_image) against NumPy loops.

A stand-in model returns fixed outputs (its only parameter), so losses and metrics are
compared with direct NumPy computations on tiny batches: ignored pixels (label 255, invalid
depth, zero normals, `example_valid` False rows, `pixel_valid` False) contribute nothing,
outputs smaller than the targets see the centre-cropped targets, and bad labels raise.
"""
from __future__ import annotations

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxcv.train import tasks
from jaxcv.train.tasks import base, dense
from jaxcv.train.tasks.dense_base import center_crop

B, H, W = 3, 6, 6
RNG = np.random.default_rng(0)


class Fixed(nn.Module):
  """Returns its parameter `out` whatever the input: a model with chosen outputs."""
  shape: tuple

  @nn.compact
  def __call__(self, x, train=False):
    del train
    return self.param("out", nn.initializers.zeros, self.shape) + 0 * jnp.mean(x), {}


def make_task(name, num_semantic=4, **config):
  c = ml_collections.ConfigDict({"task": name, "data": {"name": "fake"}, **config})
  ds = types.SimpleNamespace(num_classes=5, image_shape=(H, W, 3), name="fake",
                             class_counts={"semantic": num_semantic, "label": 5})
  return tasks.get(name)(c, ds)


def run_loss(task, out, batch):
  model = Fixed(out.shape)
  variables = {"params": {"out": jnp.asarray(out, jnp.float32)}}
  jb = {k: jnp.asarray(v) for k, v in batch.items()}
  loss, (metrics, _) = task.loss(model, variables, jb, jax.random.key(0), True)
  return float(loss), metrics


def run_eval(task, outs, batches):
  """Accumulates `eval_update` (jitted) over (output, batch) pairs; returns `result`."""
  acc = task.eval_init()
  for out, batch in zip(outs, batches):
    model = Fixed(out.shape)
    step = jax.jit(lambda v, b, a, m=model: task.eval_update(m, v, b, a))
    acc = step({"params": {"out": jnp.asarray(out, jnp.float32)}},
               {k: jnp.asarray(v) for k, v in batch.items()}, acc)
  return task.result(acc)


def base_batch(**extra):
  return {"image": RNG.random((B, H, W, 3), np.float32),
          "sketch": (RNG.random((B, H, W, 1)) > 0.7).astype(np.float32), **extra}


def log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def softplus(x):
  return np.log1p(np.exp(x))


def test_registered_names_and_outputs():
  assert {"segmentation", "depth", "normals", "image_to_image"} <= set(tasks.names())
  assert make_task("segmentation", num_semantic=7).num_outputs == 7
  assert make_task("depth").num_outputs == 1
  assert make_task("normals").num_outputs == 3
  t = make_task("image_to_image")
  assert t.num_outputs == 3 and t.input_channels == 1


# ------------------------------------------------------------------------------------------
# segmentation


def seg_case(c=4, out_hw=(H, W)):
  labels = RNG.integers(0, c, (B, H, W)).astype(np.int32)
  labels[0, :2, :3] = 255
  logits = RNG.normal(size=(B, *out_hw, c)).astype(np.float32) * 2
  return logits, base_batch(semantic=labels)


def np_seg_loss(logits, labels, counted, dice_weight=0.0):
  lp = log_softmax(logits.astype(np.float64))
  c = logits.shape[-1]
  total, n = 0.0, 0
  for b, y, x in zip(*np.nonzero(counted)):
    total -= lp[b, y, x, labels[b, y, x]]
    n += 1
  loss = total / n
  if dice_weight:
    p = np.exp(lp) * counted[..., None]
    t = np.eye(c)[np.where(counted, labels, 0)] * counted[..., None]
    inter = (p * t).sum((1, 2))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
    loss += dice_weight * dice.mean()
  return loss


@pytest.mark.parametrize("dice_weight", [0.0, 0.7])
def test_segmentation_loss_equals_numpy_and_ignores_255(dice_weight):
  task = make_task("segmentation", loss={"dice_weight": dice_weight})
  logits, batch = seg_case()
  loss, _ = run_loss(task, logits, batch)
  labels = batch["semantic"]
  np.testing.assert_allclose(loss, np_seg_loss(logits, labels, labels != 255, dice_weight),
                             rtol=1e-5)
  # changing the logits of ignored pixels changes nothing
  logits2 = logits.copy()
  logits2[labels == 255] = RNG.normal(size=(int((labels == 255).sum()), 4)) * 10
  assert run_loss(task, logits2, batch)[0] == pytest.approx(loss, rel=1e-6)


def test_segmentation_pixel_valid_and_smaller_output_use_centre_crop():
  task = make_task("segmentation")
  logits, batch = seg_case(out_hw=(4, 4))
  pv = RNG.random((B, H, W)) > 0.3
  batch["pixel_valid"] = pv
  loss, _ = run_loss(task, logits, batch)
  lab, ok = batch["semantic"][:, 1:5, 1:5], pv[:, 1:5, 1:5]
  np.testing.assert_allclose(loss, np_seg_loss(logits, lab, (lab != 255) & ok), rtol=1e-5)


def np_confusion(pred, label, c):
  cm = np.zeros((c, c), np.int64)
  for p, t in zip(pred.ravel(), label.ravel()):
    if t != 255:
      cm[t, p] += 1
  return cm


def test_segmentation_metrics_equal_numpy_over_batches():
  c = 5
  task = make_task("segmentation", num_semantic=c)
  cases = [seg_case(c) for _ in range(2)]
  # class 4 never appears in labels or predictions: it must not count in miou
  for logits, batch in cases:
    batch["semantic"][batch["semantic"] == 4] = 0
    logits[..., 4] = -100
  cases[1][1]["example_valid"] = np.array([True, False, True])
  cases[0][1]["example_valid"] = np.ones(B, bool)
  got = run_eval(task, [o for o, _ in cases], [b for _, b in cases])
  cm, ce, n = np.zeros((c, c), np.int64), 0.0, 0
  for logits, batch in cases:
    rows = batch["example_valid"]
    lab, lg = batch["semantic"][rows], logits[rows]
    cm += np_confusion(lg.argmax(-1), lab, c)
    ce += np_seg_loss(lg, lab, lab != 255) * (lab != 255).sum()
    n += (lab != 255).sum()
  tp, gt, pr = np.diag(cm), cm.sum(1), cm.sum(0)
  present = (gt + pr) > 0
  assert present.sum() == 4
  iou = tp[present] / (gt + pr - tp)[present]
  np.testing.assert_allclose(got["miou"], iou.mean(), rtol=1e-6)
  np.testing.assert_allclose(got["pixel_accuracy"], tp.sum() / cm.sum(), rtol=1e-6)
  np.testing.assert_allclose(got["mean_accuracy"], (tp[gt > 0] / gt[gt > 0]).mean(), rtol=1e-6)
  np.testing.assert_allclose(got["loss"], ce / n, rtol=1e-5)


def test_segmentation_bad_labels_are_errors():
  task = make_task("segmentation", num_semantic=4)
  _, batch = seg_case()
  task.check_batch(batch)  # 255 is the ignore label, not an error
  for bad in (4, -1, 254):
    b = dict(batch, semantic=batch["semantic"].copy())
    b["semantic"][1, 2, 3] = bad
    with pytest.raises(ValueError, match=rf"label {bad} .*outside \[0, 4\)"):
      task.check_batch(b)
  with pytest.raises(ValueError, match="no 'semantic'"):
    task.check_batch({"image": batch["image"]})
  with pytest.raises(ValueError, match="'semantic' has shape"):
    task.check_batch(dict(batch, semantic=batch["semantic"][:, :4]))
  with pytest.raises(ValueError, match="int32"):
    task.check_batch(dict(batch, semantic=batch["semantic"].astype(np.float32)))
  with pytest.raises(ValueError, match=r"'image' has shape"):
    task.check_batch(dict(batch, image=batch["image"][..., :1]))
  with pytest.raises(ValueError, match="no 'semantic' label space"):
    tasks.get("segmentation")(ml_collections.ConfigDict({"data": {}}),
                              types.SimpleNamespace(num_classes=3, class_counts={"label": 3},
                                                    name="x"))


def test_center_crop_and_larger_output_error():
  x = np.arange(2 * 7 * 8).reshape(2, 7, 8)
  np.testing.assert_array_equal(center_crop(x, (3, 4)), x[:, 2:5, 2:6])
  with pytest.raises(ValueError, match="larger than the target"):
    center_crop(x, (8, 8))


# ------------------------------------------------------------------------------------------
# depth


def depth_case():
  gt = RNG.uniform(0.5, 5.0, (B, H, W)).astype(np.float32)
  gt[0, 0, :3] = [0.0, np.nan, np.inf]
  gt[1, 2, 2] = -1.0
  out = RNG.normal(size=(B, H, W, 1)).astype(np.float32)
  return out, base_batch(depth=gt)


def np_depth_valid(gt):
  return np.isfinite(gt) & (gt > 0)


@pytest.mark.parametrize("l1_weight,silog_weight", [(1.0, 0.0), (0.0, 1.0), (0.5, 2.0)])
def test_depth_loss_equals_numpy(l1_weight, silog_weight):
  task = make_task("depth", loss={"l1_weight": l1_weight, "silog_weight": silog_weight,
                                  "silog_lambda": 0.5})
  out, batch = depth_case()
  loss, _ = run_loss(task, out, batch)
  pred = softplus(out[..., 0].astype(np.float64)) + 1e-3
  gt, ok = batch["depth"].astype(np.float64), np_depth_valid(batch["depth"])
  l1 = np.abs(pred - gt)[ok].mean()
  per = []
  for b in range(B):
    d = np.log(pred[b][ok[b]]) - np.log(gt[b][ok[b]])
    per.append((d**2).mean() - 0.5 * d.mean() ** 2)
  np.testing.assert_allclose(loss, l1_weight * l1 + silog_weight * np.mean(per), rtol=1e-5)
  assert np.isfinite(loss)


def test_depth_gradient_is_zero_at_invalid_pixels():
  task = make_task("depth", loss={"l1_weight": 1.0, "silog_weight": 1.0})
  out, batch = depth_case()
  model = Fixed(out.shape)
  jb = {k: jnp.asarray(v) for k, v in batch.items()}
  g = jax.grad(lambda o: task.loss(model, {"params": {"out": o}}, jb, jax.random.key(0),
                                   True)[0])(jnp.asarray(out))
  g = np.asarray(g)[..., 0]
  ok = np_depth_valid(batch["depth"])
  assert np.all(np.isfinite(g))
  assert np.all(g[~ok] == 0) and np.count_nonzero(g[ok]) == ok.sum()


def test_depth_metrics_equal_numpy_over_batches():
  task = make_task("depth")
  cases = [depth_case() for _ in range(2)]
  cases[0][1]["example_valid"] = np.array([True, True, False])
  cases[1][1]["example_valid"] = np.ones(B, bool)
  got = run_eval(task, [o for o, _ in cases], [b for _, b in cases])
  p_all, g_all = [], []
  for out, batch in cases:
    pred = softplus(out[..., 0].astype(np.float64)) + 1e-3
    ok = np_depth_valid(batch["depth"]) & batch["example_valid"][:, None, None]
    p_all.append(pred[ok])
    g_all.append(batch["depth"].astype(np.float64)[ok])
  p, g = np.concatenate(p_all), np.concatenate(g_all)
  np.testing.assert_allclose(got["abs_rel"], np.mean(np.abs(p - g) / g), rtol=1e-5)
  np.testing.assert_allclose(got["rmse"], np.sqrt(np.mean((p - g) ** 2)), rtol=1e-5)
  np.testing.assert_allclose(got["delta1"], np.mean(np.maximum(p / g, g / p) < 1.25),
                             rtol=1e-6)
  assert 0 < got["delta1"] < 1


def test_depth_bad_input():
  task = make_task("depth")
  _, batch = depth_case()
  task.check_batch(batch)
  with pytest.raises(ValueError, match="no 'depth'"):
    task.check_batch({"image": batch["image"]})
  with pytest.raises(ValueError, match="'depth' has shape"):
    task.check_batch(dict(batch, depth=batch["depth"][..., None]))
  with pytest.raises(ValueError, match="silog_weight"):
    make_task("depth", loss={"l1_weight": 0.0, "silog_weight": 0.0})


# ------------------------------------------------------------------------------------------
# normals


def unit(v):
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def normals_case():
  gt = unit(RNG.normal(size=(B, H, W, 3))).astype(np.float32)
  gt[0, 1, :2] = 0.0  # no normal
  gt[2, 3, 3] = np.nan
  out = (RNG.normal(size=(B, H, W, 3)) * 2).astype(np.float32)
  out[1, 1] = gt[1, 1] * 3 + 0.3 * RNG.normal(size=(W, 3))  # some small angles
  return out, base_batch(normals=gt)


def np_normals_valid(gt):
  n = np.linalg.norm(np.nan_to_num(gt), axis=-1)
  return np.all(np.isfinite(gt), -1) & (n >= 0.5) & (n <= 1.5)


def test_normals_loss_equals_numpy():
  task = make_task("normals")
  out, batch = normals_case()
  loss, metrics = run_loss(task, out, batch)
  ok = np_normals_valid(batch["normals"])
  cos = np.sum(unit(out.astype(np.float64)) * np.nan_to_num(batch["normals"]), -1)
  np.testing.assert_allclose(loss, np.mean(1 - cos[ok]), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["angle_mean"]),
                             np.degrees(np.arccos(np.clip(cos[ok], -1, 1))).mean(), rtol=1e-4)


def test_normals_metrics_equal_numpy_over_batches():
  task = make_task("normals")
  cases = [normals_case() for _ in range(3)]
  for i, (_, b) in enumerate(cases):
    b["example_valid"] = np.array([True, i != 1, True])
  got = run_eval(task, [o for o, _ in cases], [b for _, b in cases])
  angles = []
  for out, batch in cases:
    ok = np_normals_valid(batch["normals"]) & batch["example_valid"][:, None, None]
    cos = np.sum(unit(out.astype(np.float64)) * np.nan_to_num(batch["normals"]), -1)
    angles.append(np.degrees(np.arccos(np.clip(cos[ok], -1, 1))))
  a = np.sort(np.concatenate(angles))
  np.testing.assert_allclose(got["angle_mean"], a.mean(), rtol=1e-5)
  lower_median = a[(len(a) + 1) // 2 - 1]
  # read from 0.05-degree bins: within half a bin (+ float32 arccos rounding)
  assert abs(got["angle_median"] - lower_median) <= 0.025 + 1e-3
  for key, t in (("within_11_25", 11.25), ("within_22_5", 22.5), ("within_30", 30.0)):
    np.testing.assert_allclose(got[key], np.mean(a < t), rtol=1e-6)
  assert 0 < got["within_30"] < 1


def test_normals_median_resolution_on_known_angles():
  # one pixel per known angle: a rotation of (0, 0, -1) about x by theta
  task = make_task("normals")
  theta = np.array([3.0, 10.0, 17.3, 40.0, 41.2, 90.0, 120.0, 170.0, 179.0])
  n = len(theta)
  gt = np.zeros((1, 1, n, 3), np.float32)
  gt[..., 2] = -1
  t = np.radians(theta)
  out = np.stack([np.zeros(n), np.sin(t), -np.cos(t)], -1)[None, None].astype(np.float32)
  got = run_eval(task, [out], [{"image": np.zeros((1, 1, n, 3), np.float32), "normals": gt}])
  assert abs(got["angle_median"] - 41.2) <= 0.025 + 1e-3
  np.testing.assert_allclose(got["angle_mean"], theta.mean(), rtol=1e-4)
  np.testing.assert_allclose(got["within_11_25"], 2 / n)


def test_normals_bad_input():
  task = make_task("normals")
  _, batch = normals_case()
  task.check_batch(batch)
  with pytest.raises(ValueError, match="'normals' has shape"):
    task.check_batch(dict(batch, normals=batch["normals"][..., :2]))


# ------------------------------------------------------------------------------------------
# image_to_image


def i2i_case():
  out = RNG.normal(size=(B, H, W, 3)).astype(np.float32)
  return out, base_batch()


def test_image_to_image_input_is_the_normalised_sketch():
  task = make_task("image_to_image", data={"name": "fake", "mean": (0.5,), "std": (0.25,)})
  _, batch = i2i_case()
  x = np.asarray(task.model_input({k: jnp.asarray(v) for k, v in batch.items()}))
  assert x.shape == (B, H, W, 1)
  np.testing.assert_allclose(x, (batch["sketch"] - 0.5) / 0.25, rtol=1e-6)
  with pytest.raises(ValueError, match="3 values; the model input has 1"):
    make_task("image_to_image", data={"name": "fake", "mean": (0.5, 0.5, 0.5)})


def test_image_to_image_loss_and_metrics_equal_numpy():
  task = make_task("image_to_image")
  cases = [i2i_case() for _ in range(2)]
  pv = RNG.random((B, H, W)) > 0.2
  cases[0][1]["pixel_valid"] = pv
  loss, _ = run_loss(task, *cases[0])
  pred0 = 1 / (1 + np.exp(-cases[0][0].astype(np.float64)))
  err0 = np.abs(pred0 - cases[0][1]["image"]).mean(-1)
  np.testing.assert_allclose(loss, err0[pv].mean(), rtol=1e-5)
  cases[1][1]["example_valid"] = np.array([True, False, True])
  cases[0][1]["example_valid"] = np.ones(B, bool)
  got = run_eval(task, [o for o, _ in cases], [b for _, b in cases])
  errs, psnrs = [], []
  for out, batch in cases:
    pred = 1 / (1 + np.exp(-out.astype(np.float64)))
    ok = batch.get("pixel_valid", np.ones((B, H, W), bool)) & batch["example_valid"][:, None,
                                                                                     None]
    d = pred - batch["image"]
    errs.append(np.abs(d)[ok].ravel())
    for b in range(B):
      if ok[b].any():
        psnrs.append(-10 * np.log10((d[b][ok[b]] ** 2).mean()))
  np.testing.assert_allclose(got["l1"], np.concatenate(errs).mean(), rtol=1e-5)
  np.testing.assert_allclose(got["psnr"], np.mean(psnrs), rtol=1e-5)
  assert len(psnrs) == 5


def test_image_to_image_bad_input():
  task = make_task("image_to_image")
  _, batch = i2i_case()
  task.check_batch(batch)
  with pytest.raises(ValueError, match="no 'sketch'"):
    task.check_batch({"image": batch["image"]})
  with pytest.raises(ValueError, match=r"'sketch' has shape .*\[B, H, W, 1\]"):
    task.check_batch(dict(batch, sketch=batch["image"]))


# ------------------------------------------------------------------------------------------
# pictures


def picture_batch():
  """A batch with every dense task's target, as device arrays (what the loop's `draw` gets)."""
  batch = {"semantic": seg_case()[1]["semantic"], "depth": depth_case()[1]["depth"],
           "normals": normals_case()[1]["normals"], **base_batch()}
  return {k: jnp.asarray(v) for k, v in batch.items()}


def test_prediction_transforms():
  x = jnp.asarray(RNG.normal(size=(2, 3, 3)).astype(np.float32))
  np.testing.assert_allclose(dense.depth_prediction(x[..., None]),
                             softplus(np.asarray(x, np.float64)) + 1e-3, rtol=1e-6)
  n = np.asarray(dense.normals_prediction(x))
  np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name,k", [("segmentation", 4), ("depth", 1), ("normals", 3),
                                    ("image_to_image", 3)])
def test_predict_and_pictures_use_the_one_compiled_predict(tmp_path, monkeypatch, name, k):
  task, batch = make_task(name), picture_batch()
  out = RNG.normal(size=(B, H, W, k)).astype(np.float32)
  model, variables = Fixed(out.shape), {"params": {"out": jnp.asarray(out)}}
  want = np.asarray(task.prediction(jnp.asarray(out)))
  loop_predict = jax.jit(lambda v, b: task.predict(model, v, b))  # as the loop compiles it
  np.testing.assert_allclose(np.asarray(loop_predict(variables, batch)), want, rtol=1e-6)
  got = task.compiled_predict(model, variables, batch)  # NumPy, for draw
  assert isinstance(got, np.ndarray) and np.allclose(got, want, rtol=1e-6)
  calls, compiled = [], base._compiled_predict
  monkeypatch.setattr(base, "_compiled_predict", lambda t, *a: calls.append(t) or compiled(t, *a))
  task.draw(model, variables, batch, str(tmp_path / "p.png"))
  assert calls == [task]
  assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
