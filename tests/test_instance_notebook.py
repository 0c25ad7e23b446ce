"""colab/instance.ipynb runs top to bottom (slow): a short version (12 steps per model, 64 px,
the notebook's tiny models, 16-scene evaluation sets) through nbclient, as
tests/test_detection_notebook.py runs colab/detection.ipynb. Asserts the figures and the
final table came out and what each run wrote to its work directory; prints the wall time."""
from __future__ import annotations

import json
import math
import os
import time

import pytest
from conftest import REPO

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
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  nb = nbformat.read(REPO / "colab" / "instance.ipynb", as_version=4)
  assert not [o for cell in nb.cells for o in cell.get("outputs", [])]  # stored without outputs
  env = {"JAXCV_NOTEBOOK_STEPS": str(STEPS), "JAXCV_NOTEBOOK_IMAGE_SIZE": "64",
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
  print(f"notebook: {time.time() - t0:.0f} s, load {os.getloadavg()}")
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o.output_type == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == 6  # per model: the loss and metric curves, the task's picture
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
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
