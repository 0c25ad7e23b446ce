"""The training target of configs/fasterrcnn_shapes.py (slow, ~25 min on an idle 2-core CPU;
not run by .ci/run, whose budget it would take whole; a short version is in
tests/test_detection_train.py): test `map50` >= 0.85 and `map` >= 0.55, with the untrained
model's figures beside them. Prints the evaluation curve, the wall time and the machine's
load (`os.getloadavg`); wall times belong in BENCHMARKS.md, not in assertions.
"""
import json
import os
import time

import pytest

from conftest import load_config
from jaxcv.train.loop import Trainer, train_and_evaluate

pytestmark = pytest.mark.slow


def test_fasterrcnn_shapes_reaches_its_target(tmp_path):
  # one device: 8 simulated ones (conftest) would split 2 cores eight ways
  config = load_config("fasterrcnn_shapes", progress_bar=False, **{"mesh.shape": {"data": 1}})
  untrained = Trainer(config).evaluate(Trainer(config).new_state(), "test")
  t0 = time.time()
  result = train_and_evaluate(config, tmp_path / "run")
  wall = time.time() - t0
  rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
          .splitlines()]
  print(f"\nfasterrcnn_shapes: {wall:.0f} s, load {os.getloadavg()}; untrained test map50 "
        f"{untrained['map50']:.4f} map {untrained['map']:.4f}")
  for r in rows:
    if "split" in r:
      print(f"  step {r['step']:5d} {r['split']:10s} map50 {r['map50']:.4f} map {r['map']:.4f}"
            f" map75 {r['map75']:.4f} mar100 {r['mar100']:.4f}")
  test = result["test"]
  assert test["map50"] >= 0.85 and test["map"] >= 0.55, test
  assert untrained["map50"] < 0.05
