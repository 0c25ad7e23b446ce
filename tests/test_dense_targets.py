"""Training targets of the dense configs on `shapes` at 128x128 (slow), and the Colab notebook
run top to bottom.

- configs/unet_shapes.py: test `miou` >= 0.90; configs/deeplabv3plus_shapes.py: >= 0.85.
- configs/unet_depth_shapes.py and configs/unet_normals_shapes.py, against two predictors
  that ignore the image, both computed here from the training split (NumPy):
  * constant: the training set's mean depth (one number) / mean normal (renormalised);
  * per-pixel mean: the training set's mean depth / mean normal (renormalised) at every
    pixel position. The scenes' geometry depends mostly on position (ground below, wall
    above), so this one is the hard baseline.
  Targets (issue 18): over all test pixels, the model's `abs_rel` / `angle_mean` at most half
  of the per-pixel mean's; on object pixels only (`semantic` > 0, where position tells
  little), at most a third of both baselines' there. Depth's object-pixel target is not
  met yet (BENCHMARKS.md): that test ends as an expected failure printing the figures, and
  passes once they are met; every other target is asserted.
The model's figures are recomputed here in NumPy (`jaxcv.metrics.dense`) from the run's last
checkpoint and checked against what the run wrote to metrics.jsonl. Each test prints the
evaluation curve, its wall time and the machine's load (`os.getloadavg`); wall times belong
in BENCHMARKS.md (measured on an idle 2-core CPU), not in assertions.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO, load_config
from notebooks import images, run_notebook

from jaxcv import data as data_lib
from jaxcv.metrics import dense as dense_metrics
from jaxcv.train import pretrained
from jaxcv.train.loop import Trainer
from jaxcv.train.mesh import make_mesh
from jaxcv.train.metrics_writer import read_metrics

pytestmark = pytest.mark.slow

CHUNK = 250  # examples read at a time when a split is scanned


def train(name, tmp_path, metric):
  """Runs the config's docstring command (`python train.py ...`, one CPU device, as a user
  runs it); prints the test curve; returns the config and the last test metrics."""
  c = load_config(name)
  env = dict(os.environ, XLA_FLAGS="")
  load0 = os.getloadavg()
  t0 = time.time()
  proc = subprocess.run(
      [sys.executable, "train.py", "--config", f"configs/{name}.py", "--workdir",
       str(tmp_path), "--config.progress_bar=False"], check=False, cwd=REPO, env=env,
      capture_output=True, text=True, timeout=3600)
  wall = time.time() - t0
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  test = [r for r in read_metrics(tmp_path) if r.get("split") == "test"]
  assert test and test[-1]["step"] == c.num_steps
  assert sorted(p.name for p in (tmp_path / "pictures").iterdir())  # PNGs of predictions
  curve = ", ".join(f"{r['step']}: {r[metric]:.4f}" for r in test)
  print(f"\n{name}: {c.num_steps} steps, wall {wall:.0f} s, load average before "
        f"{load0[0]:.1f}, after {os.getloadavg()[0]:.1f}\n  test {metric} by step: {curve}\n"
        f"  last test evaluation: {json.dumps(test[-1])}")
  return c, test[-1]


def scan(c, split, keys):
  """Yields `split`'s examples in chunks, as dicts of NumPy arrays of `keys` (+ image)."""
  d = c.data
  ds = data_lib.load(d.name, split, image_size=d.image_size, keys=tuple(keys),
                     split_sizes=dict(d.split_sizes), seed=d.seed)
  for i in range(0, len(ds), CHUNK):
    yield ds.get(np.arange(i, min(i + CHUNK, len(ds))))


def model_predictions(c, workdir, key):
  """(predictions, ground truth `key`, object mask) over the test split, from the run's last
  checkpoint; predictions as the task makes them (positive depth, unit normals)."""
  # one device, as the run itself (the test process has 8 simulated ones, tests/conftest.py)
  trainer = Trainer(c, mesh=make_mesh({"shape": {"data": 1}}))
  task, model = trainer.task, trainer.model
  variables = pretrained.read_variables(workdir)
  predict = jax.jit(lambda v, x: task.prediction(task.outputs(model, v, {"image": x}, False)[0]))
  preds, gts, objects = [], [], []
  for b in scan(c, "test", (key, "semantic")):
    preds.append(np.asarray(predict(variables, b["image"])))
    gts.append(b[key])
    objects.append(b["semantic"] > 0)
  return np.concatenate(preds), np.concatenate(gts), np.concatenate(objects)


def baselines(c, key):
  """The constant and the per-pixel mean of `key` over the training split (float64; one pass,
  chunk by chunk). Every example covers every pixel, so the constant is the mean of the
  per-pixel mean."""
  per_pixel = dense_metrics.per_pixel_mean(b[key] for b in scan(c, "train", (key,)))
  constant = per_pixel.mean(axis=(0, 1))
  if key == "normals":
    constant = constant / np.linalg.norm(constant)
    per_pixel = per_pixel / np.linalg.norm(per_pixel, axis=-1, keepdims=True)
  return constant, per_pixel


def report(c, workdir, test, key, metric, metrics_fn):
  """Prints the table of the model and both baselines on all and on object pixels; returns
  `{(predictor, region): metrics}`."""
  pred, gt, objects = model_predictions(c, workdir, key)
  constant, per_pixel = baselines(c, key)
  predictors = {"model": pred,
                "constant": np.broadcast_to(constant, gt.shape),
                "per-pixel mean": np.broadcast_to(per_pixel, gt.shape)}
  out = {}
  print(f"  {key}: {metric} on the test split ({len(gt)} images)")
  for region, mask in (("all pixels", None), ("object pixels", objects)):
    for name, p in predictors.items():
      m = metrics_fn(p, gt, mask)
      out[name, region] = m
      rest = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if k not in (metric, "count"))
      print(f"    {region:13s} {name:15s} {metric} {m[metric]:.4f} ({rest}; {m['count']} px)")
  # the run's own evaluation (float32, on the device) and this one (float64) agree
  np.testing.assert_allclose(out["model", "all pixels"][metric], test[metric], rtol=2e-3)
  return out


def test_unet_shapes_reaches_miou_090(tmp_path):
  _, test = train("unet_shapes", tmp_path, "miou")
  assert test["miou"] >= 0.90


def test_deeplabv3plus_shapes_reaches_miou_085(tmp_path):
  _, test = train("deeplabv3plus_shapes", tmp_path, "miou")
  assert test["miou"] >= 0.85


def check_targets(out, metric, open_on_objects=False):
  """Asserts the issue's targets. `open_on_objects`: the object-pixel targets are not met yet
  (BENCHMARKS.md says by how much); the test then ends as an expected failure that prints the
  figures, and passes as soon as they are met. The all-pixel targets are always asserted."""
  value = {k: v[metric] for k, v in out.items()}
  assert value["model", "all pixels"] <= value["per-pixel mean", "all pixels"] / 2
  assert value["model", "all pixels"] <= value["constant", "all pixels"] / 2
  unmet = [f"object pixels: model {metric} {value['model', 'object pixels']:.4f} > "
           f"{value[name, 'object pixels'] / 3:.4f} (a third of the {name}'s)"
           for name in ("per-pixel mean", "constant")
           if value["model", "object pixels"] > value[name, "object pixels"] / 3]
  if unmet and open_on_objects:
    pytest.xfail("target not met yet, " + "; ".join(unmet))
  assert not unmet, unmet


def test_unet_depth_beats_the_per_pixel_mean_depth(tmp_path):
  c, test = train("unet_depth_shapes", tmp_path, "abs_rel")
  out = report(c, tmp_path, test, "depth", "abs_rel", dense_metrics.depth_metrics)
  check_targets(out, "abs_rel", open_on_objects=True)


def test_unet_normals_beat_the_per_pixel_mean_normal(tmp_path):
  c, test = train("unet_normals_shapes", tmp_path, "angle_mean")
  out = report(c, tmp_path, test, "normals", "angle_mean", dense_metrics.normal_metrics)
  check_targets(out, "angle_mean")


def test_colab_notebook_runs_top_to_bottom(tmp_path):
  outputs, text = run_notebook("segmentation.ipynb", tmp_path / "run", 8)
  assert len(images(outputs)) == 2  # the loss curve and the predictions
  assert "8 steps in" in text and "test metrics" in text
  rows = (tmp_path / "run" / "train_metrics.jsonl").read_text().splitlines()
  assert len(rows) >= 2
