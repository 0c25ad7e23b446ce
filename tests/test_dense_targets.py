"""Training targets of the U-Net configs on `shapes` at 128x128 (slow), and the Colab notebook
run top to bottom.

- configs/unet_shapes.py: test `miou` >= 0.90.
- configs/unet_depth_shapes.py: test `abs_rel` at most a third of that of predicting the
  training set's mean depth (one number) at every pixel.
- configs/unet_normals_shapes.py: test `angle_mean` at most half of that of predicting the
  training set's mean normal (normalised) at every pixel.
The baselines are computed here from the data (NumPy), not hard-coded. Each test prints its
wall time and the machine's load (`os.getloadavg`); the targets are for an otherwise idle
2-core CPU (20 minutes at most).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, load_config

from jaxcv import data as data_lib
from jaxcv.train.metrics_writer import read_metrics

pytestmark = pytest.mark.slow


def train(name, tmp_path):
  """Runs the config's docstring command (`python train.py ...`, one CPU device, as a user
  runs it); returns the config and the last test metrics."""
  c = load_config(name)
  env = dict(os.environ, XLA_FLAGS="")
  load0 = os.getloadavg()
  t0 = time.time()
  proc = subprocess.run(
      [sys.executable, "train.py", "--config", f"configs/{name}.py", "--workdir",
       str(tmp_path), "--config.progress_bar=False"], check=False, cwd=REPO, env=env,
      capture_output=True, text=True, timeout=3600)
  wall = time.time() - t0
  assert proc.returncode == 0, proc.stdout + proc.stderr
  test = [r for r in read_metrics(tmp_path) if r["split"] == "test"]
  assert test[-1]["step"] == c.num_steps
  assert sorted(p.name for p in (tmp_path / "pictures").iterdir())  # PNGs of predictions
  print(f"\n{name}: {c.num_steps} steps, wall {wall:.0f} s, load average before "
        f"{load0[0]:.1f}, after {os.getloadavg()[0]:.1f}; test {test[-1]}")
  return c, test[-1]


def split_arrays(c, split, key, chunk=250):
  """`key` of every example of `split` as one NumPy array (the config's data settings)."""
  d = c.data
  ds = data_lib.load(d.name, split, image_size=d.image_size, keys=(key,),
                     split_sizes=dict(d.split_sizes), seed=d.seed)
  return np.concatenate([ds.get(np.arange(i, min(i + chunk, len(ds))))[key]
                         for i in range(0, len(ds), chunk)])


def test_unet_shapes_reaches_miou_090(tmp_path):
  _, test = train("unet_shapes", tmp_path)
  assert test["miou"] >= 0.90


def test_unet_depth_abs_rel_is_a_third_of_the_mean_depth_predictor(tmp_path):
  c, test = train("unet_depth_shapes", tmp_path)
  mean_depth = float(np.mean(split_arrays(c, "train", "depth"), dtype=np.float64))
  gt = split_arrays(c, "test", "depth").astype(np.float64)
  gt = gt[np.isfinite(gt) & (gt > 0)]
  baseline = float(np.mean(np.abs(mean_depth - gt) / gt))
  print(f"training mean depth {mean_depth:.4f}: test abs_rel {baseline:.4f}; "
        f"model {test['abs_rel']:.4f} (ratio {test['abs_rel'] / baseline:.3f})")
  assert test["abs_rel"] <= baseline / 3


def test_unet_normals_angle_is_half_of_the_mean_normal_predictor(tmp_path):
  c, test = train("unet_normals_shapes", tmp_path)
  mean = np.mean(split_arrays(c, "train", "normals").reshape(-1, 3), axis=0, dtype=np.float64)
  mean /= np.linalg.norm(mean)
  gt = split_arrays(c, "test", "normals").reshape(-1, 3).astype(np.float64)
  cos = np.clip(gt @ mean / np.linalg.norm(gt, axis=-1), -1, 1)
  baseline = float(np.degrees(np.arccos(cos)).mean())
  print(f"training mean normal {np.round(mean, 4)}: test angle_mean {baseline:.2f} deg; "
        f"model {test['angle_mean']:.2f} (ratio {test['angle_mean'] / baseline:.3f})")
  assert test["angle_mean"] <= baseline / 2


def test_colab_notebook_runs_top_to_bottom(tmp_path):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  nb = nbformat.read(REPO / "colab" / "segmentation.ipynb", as_version=4)
  env = {"JAXCV_NOTEBOOK_STEPS": "8", "JAXCV_NOTEBOOK_IMAGE_SIZE": "64",
         "JAXCV_NOTEBOOK_WORKDIR": str(tmp_path / "run"), "XLA_FLAGS": ""}
  old = {k: os.environ.get(k) for k in env}
  os.environ.update(env)  # the kernel inherits this process's environment
  try:
    t0 = time.time()
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}}).execute()
  finally:
    for k, v in old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  print(f"notebook: {time.time() - t0:.0f} s")
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o.output_type == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == 2  # the loss curve and the predictions
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "8 steps in" in text and "test metrics" in text
  rows = (tmp_path / "run" / "train_metrics.jsonl").read_text().splitlines()
  assert len(rows) >= 2
