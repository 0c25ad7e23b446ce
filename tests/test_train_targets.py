"""Training targets (slow; .ci/run runs them): the quick start reaches its accuracy, bf16 too.

Wall times are recorded in BENCHMARKS.md.
"""
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO, load_config
from jaxcv.train import train_and_evaluate
from jaxcv.train.metrics_writer import read_metrics

pytestmark = pytest.mark.slow


def test_quickstart_lenet_digits_reaches_97_percent_test_accuracy(tmp_path):
  # Exactly the README's command, on one CPU device as a user's laptop runs it.
  env = dict(os.environ, XLA_FLAGS="")
  t0 = time.time()
  proc = subprocess.run(
      [sys.executable, "train.py", "--config", "configs/lenet_digits.py", "--workdir",
       str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
  wall = time.time() - t0
  assert proc.returncode == 0, proc.stdout + proc.stderr
  test = [r for r in read_metrics(tmp_path) if r["split"] == "test"]
  print(f"lenet_digits: test accuracy {test[-1]['accuracy']:.4f} at step {test[-1]['step']}, "
        f"wall {wall:.1f} s")
  assert test[-1]["step"] == 1500
  assert test[-1]["accuracy"] >= 0.97


def test_bfloat16_trains_lenet_to_within_a_point_of_float32(tmp_path):
  acc = {}
  for dtype in ("float32", "bfloat16"):
    c = load_config("lenet_digits", dtype=dtype, progress_bar=False,
                    **{"mesh.shape": {"data": 1}})
    acc[dtype] = train_and_evaluate(c, tmp_path / dtype)["test"]["accuracy"]
  print(f"test accuracy: {acc}")
  assert acc["bfloat16"] >= 0.96
  assert abs(acc["bfloat16"] - acc["float32"]) <= 0.01
