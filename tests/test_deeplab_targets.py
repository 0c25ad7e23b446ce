"""Training target (slow): configs/deeplabv3plus_shapes.py reaches test `miou` >= 0.85 on the
shapes test split at 128x128, within 20 minutes on a 2-core CPU (issue 6). Prints the wall time,
the evaluation curve and the load average (record them in BENCHMARKS.md): the 20-minute limit
is for an otherwise idle machine, so a run on a loaded machine may exceed it. Measured on the
idle 2-core CPU: test miou 0.859 in 19 min 33 s (2026-12-02)."""
import os
import subprocess
import sys
import time

import pytest
from conftest import REPO

from jaxcv.train.metrics_writer import read_metrics

pytestmark = pytest.mark.slow


def test_deeplabv3plus_shapes_reaches_miou_085(tmp_path):
  # The README's command, on one CPU device as a user's machine runs it.
  env = dict(os.environ, XLA_FLAGS="")
  load_before = os.getloadavg()
  t0 = time.time()
  proc = subprocess.run(
      [sys.executable, "train.py", "--config", "configs/deeplabv3plus_shapes.py", "--workdir",
       str(tmp_path), "--config.progress_bar=False"], cwd=REPO, env=env, capture_output=True,
      text=True, timeout=3600, check=False)
  wall = time.time() - t0
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  test = [r for r in read_metrics(tmp_path) if r["split"] == "test"]
  assert test, "the run wrote no test evaluation"
  for r in test:
    print(f"  step {r['step']}: test miou {r['miou']:.4f}, pixel accuracy "
          f"{r['pixel_accuracy']:.4f}, mean accuracy {r['mean_accuracy']:.4f}")
  print(f"deeplabv3plus_shapes: test miou {test[-1]['miou']:.4f}, pixel accuracy "
        f"{test[-1]['pixel_accuracy']:.4f} at step {test[-1]['step']}, wall {wall:.1f} s, "
        f"load average before {load_before}, after {os.getloadavg()}")
  assert test[-1]["miou"] >= 0.85
  assert wall <= 20 * 60
