"""colab/detection.ipynb runs top to bottom (slow): a short version (8 steps, 64 px, the
notebook's small model) through nbclient
(tests/notebooks.py)."""
from __future__ import annotations

import json

import pytest
from notebooks import images, run_notebook

pytestmark = pytest.mark.slow


def test_colab_detection_notebook_runs_top_to_bottom(tmp_path):
  outputs, text = run_notebook("detection.ipynb", tmp_path / "run", 8)
  assert len(images(outputs)) == 2  # the loss and mAP curves, the predictions
  assert "8 steps in" in text and "test map50" in text
  assert "| map |" in text and "| map50 |" in text  # the final metrics table
  run = tmp_path / "run"
  rows = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
  assert len(rows) >= 2
  assert {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"} <= set(rows[0])
  evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  assert len([r for r in evals if r.get("split") == "validation"]) == 4  # the mAP curve's points
  assert (run / "test_predictions.png").is_file()
