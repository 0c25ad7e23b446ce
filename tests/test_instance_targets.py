"""The training targets of configs/maskrcnn_shapes.py (test `mask_map` >= 0.55 with box `map`
>= 0.55), configs/keypointrcnn_shapes.py (test `kp_map` >= 0.5) and
configs/panopticfpn_shapes.py (test `pq` >= 0.6, things and stuff printed), each within 30 minutes
on an idle 2-core CPU (slow; not run by .ci/run, whose budget one would take whole). Prints
the untrained model's figures (the trivial baseline), the evaluation curve, the wall time and
the machine's load; wall times belong in BENCHMARKS.md, not in assertions.
"""
import json
import os
import time

import pytest

from conftest import load_config
from jaxcv.train.loop import Trainer, train_and_evaluate

pytestmark = pytest.mark.slow

TARGETS = {"maskrcnn_shapes": {"mask_map": 0.55, "map": 0.55},
           "keypointrcnn_shapes": {"kp_map": 0.5},
           "panopticfpn_shapes": {"pq": 0.6}}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_shapes_target(name, tmp_path):
  config = load_config(name, progress_bar=False, **{"mesh.shape": {"data": 1}})
  untrained = Trainer(config).evaluate(Trainer(config).new_state(), "test")
  t0 = time.time()
  result = train_and_evaluate(config, tmp_path / "run")
  wall = time.time() - t0
  rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
          .splitlines()]
  keys = sorted(TARGETS[name]) + (["pq_things", "pq_stuff", "miou"] if "pq" in TARGETS[name]
                                   else ["map50"])
  print(f"\n{name}: {wall:.0f} s, load {os.getloadavg()}; untrained test "
        + " ".join(f"{k} {untrained[k]:.4f}" for k in keys))
  for r in rows:
    if "split" in r:
      print(f"  step {r['step']:5d} {r['split']:10s} "
            + " ".join(f"{k} {r[k]:.4f}" for k in keys))
  test = result["test"]
  assert all(test[k] >= v for k, v in TARGETS[name].items()), test
  assert all(untrained[k] < 0.05 for k in TARGETS[name]), untrained
