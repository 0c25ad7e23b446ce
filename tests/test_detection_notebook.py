"""colab/detection.ipynb runs top to bottom (slow): a short version (8 steps, 64 px, the
notebook's small model) through nbclient, as tests/test_dense_targets.py runs
colab/segmentation.ipynb."""
from __future__ import annotations

import json
import os
import time

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


def test_colab_detection_notebook_runs_top_to_bottom(tmp_path):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  nb = nbformat.read(REPO / "colab" / "detection.ipynb", as_version=4)
  assert not [o for cell in nb.cells for o in cell.get("outputs", [])]  # stored without outputs
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
  assert len(images) == 2  # the loss and mAP curves, the predictions
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "8 steps in" in text and "test map50" in text
  assert "| map |" in text and "| map50 |" in text  # the final metrics table
  run = tmp_path / "run"
  rows = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
  assert len(rows) >= 2
  assert {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"} <= set(rows[0])
  evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  assert len([r for r in evals if r.get("split") == "validation"]) == 4  # the mAP curve's points
  assert (run / "test_predictions.png").is_file()
