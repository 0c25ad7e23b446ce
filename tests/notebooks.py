"""Running a colab/ notebook top to bottom in a test (through nbclient, in this process's
environment with the notebook's short-run knobs), shared by the notebook tests."""
from __future__ import annotations

import os
import time

import pytest
from conftest import REPO


def run_notebook(name: str, workdir, steps: int, image_size: int = 64) -> tuple[list, str]:
  """Executes colab/`name` with `JAXCV_NOTEBOOK_STEPS`, `_IMAGE_SIZE` and `_WORKDIR` set (and
  no simulated devices); checks it is stored without outputs and that no cell raised.
  Returns the code cells' outputs and their printed text; prints the wall time."""
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  pytest.importorskip("ipykernel")
  nb = nbformat.read(REPO / "colab" / name, as_version=4)
  assert not [o for cell in nb.cells for o in cell.get("outputs", [])]  # stored without outputs
  env = {"JAXCV_NOTEBOOK_STEPS": str(steps), "JAXCV_NOTEBOOK_IMAGE_SIZE": str(image_size),
         "JAXCV_NOTEBOOK_WORKDIR": str(workdir), "XLA_FLAGS": ""}
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
  print(f"{name}: {time.time() - t0:.0f} s, load {os.getloadavg()}")
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  return outputs, text


def images(outputs) -> list:
  """The PNG figures among a notebook's outputs."""
  return [o for o in outputs if "image/png" in o.get("data", {})]
