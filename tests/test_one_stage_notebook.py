"""colab/one_stage.ipynb runs top to bottom (slow): a short version (12 steps per model, 64 px,
the notebook's tiny RetinaNet and SSD, 16-scene evaluation sets) through nbclient
(tests/notebooks.py). Asserts the figures and the speed / accuracy table came out and what
each run wrote to its work directory; prints the wall time."""
from __future__ import annotations

import json
import math

import pytest
from notebooks import images, run_notebook

pytestmark = pytest.mark.slow

STEPS = 12
RUNS = {"retinanet": "RetinaNet", "ssd": "SSD"}  # work directory: label


def test_colab_one_stage_notebook_runs_top_to_bottom(tmp_path):
  outputs, text = run_notebook("one_stage.ipynb", tmp_path / "run", STEPS)
  assert len(images(outputs)) == 4  # per model: the loss and mAP curves, the predictions
  for label in RUNS.values():
    assert f"{label}: {STEPS} steps in" in text
  tables = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
  assert len(tables) == 1  # the speed / accuracy table
  table = tables[0].splitlines()
  assert table[0].startswith("| model | config | parameters | steps | test map | test map50 |")
  assert "| inference (ms / image, 64 px) |" in table[0]
  assert len(table) == 2 + len(RUNS)
  for label, row in zip(RUNS.values(), table[2:]):
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == label and cells[3] == str(STEPS), row
    assert int(cells[2].replace(",", "")) > 0, row  # parameters
    assert all(0.0 <= float(c) <= 1.0 for c in cells[4:6]), row  # map, map50
    assert float(cells[6]) > 0 and float(cells[7]) > 0, row  # seconds, ms per image
  for name in RUNS:
    run = tmp_path / "run" / name
    rows = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert len(rows) >= 2 and rows[-1]["step"] == STEPS, name
    assert {"classification", "bbox_regression"} <= set(rows[0]), (name, sorted(rows[0]))
    assert all(math.isfinite(r["loss"]) for r in rows), name
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for split in ("validation", "test"):
      assert len([r for r in evals if r.get("split") == split]) == 4, (name, split)
    assert (run / "test_predictions.png").is_file(), name
