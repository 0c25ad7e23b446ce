"""colab/instance.ipynb runs top to bottom (slow): a short version (12 steps per model, 64 px,
the notebook's tiny models, 16-scene evaluation sets) through nbclient
(tests/notebooks.py). Asserts the figures and the
final table came out and what each run wrote to its work directory; prints the wall time."""
from __future__ import annotations

import json
import math

import pytest
from notebooks import images, run_notebook

pytestmark = pytest.mark.slow

STEPS = 12
# work directory: (label, losses in train_metrics.jsonl, metrics in metrics.jsonl)
RUNS = {"maskrcnn": ("Mask R-CNN", {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                                    "loss_box_reg", "loss_mask"}, {"map", "mask_map"}),
        "keypointrcnn": ("Keypoint R-CNN", {"loss_objectness", "loss_classifier",
                                            "loss_keypoint"}, {"map", "kp_map"}),
        "panopticfpn": ("Panoptic FPN", {"loss_classifier", "loss_mask", "loss_sem_seg"},
                        {"pq", "pq_things", "pq_stuff", "miou", "map", "mask_map"})}


def test_colab_instance_notebook_runs_top_to_bottom(tmp_path):
  outputs, text = run_notebook("instance.ipynb", tmp_path / "run", STEPS)
  assert len(images(outputs)) == 6  # per model: the loss and metric curves, the task's picture
  for label, _, _ in RUNS.values():
    assert f"{label}: {STEPS} steps in" in text
  assert "test map " in text and "mask_map" in text and "kp_map" in text and "pq_stuff" in text
  tables = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
  assert len(tables) == 1  # the final metrics table
  table = tables[0].splitlines()
  assert table[0].startswith("| model | config | steps | map |") and "| kp_map |" in table[0]
  assert len(table) == 2 + len(RUNS)
  for (label, _, _), row in zip(RUNS.values(), table[2:]):
    assert row.startswith(f"| {label} |") and f"| {STEPS} |" in row
  for name, (_, losses, metrics) in RUNS.items():
    run = tmp_path / "run" / name
    rows = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert len(rows) >= 2 and rows[-1]["step"] == STEPS, name
    assert losses <= set(rows[0]), (name, sorted(rows[0]))
    assert all(math.isfinite(r["loss"]) for r in rows), name
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for split in ("validation", "test"):
      points = [r for r in evals if r.get("split") == split]
      assert len(points) == 4, (name, split)  # the curves' points
      assert metrics <= set(points[-1]), (name, sorted(points[-1]))
      for k in metrics:  # null: NaN (no segment of a kind in these 16 scenes)
        assert points[-1][k] is None or 0.0 <= points[-1][k] <= 1.0, (name, split, k)
    assert (run / "pictures" / f"validation_step{STEPS}.png").is_file(), name
