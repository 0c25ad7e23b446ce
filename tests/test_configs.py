"""Every config in configs/ names known parts, has the convention's keys and its command."""
import ast

import pytest

from conftest import REPO, load_config
from jaxcv import data, models
from jaxcv.train import Trainer, tasks

CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py") if p.stem != "__init__")
REQUIRED = ("task", "model.name", "data.name", "batch_size", "num_steps", "optimizer.name",
            "optimizer.learning_rate", "schedule.name", "eval_every", "checkpoint_every",
            "best_metric", "best_mode", "seed", "mesh.shape")


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_complete(name):
  c = load_config(name)
  for key in REQUIRED:
    node = c
    for part in key.split("."):
      assert part in node, f"{name}: missing {key}"
      node = node[part]
  assert c.task in tasks.names()
  assert c.model.name in models.names()
  assert c.data.name in data.names()
  assert c.best_mode in ("max", "min")
  assert c.best_metric in tasks.get(c.task).metric_directions
  doc = ast.get_docstring(ast.parse((REPO / "configs" / f"{name}.py").read_text()))
  assert f"python train.py --config configs/{name}.py --workdir" in doc


def test_mlp_digits_builds_and_steps():
  t = Trainer(load_config("mlp_digits"))
  state = t.new_state()
  it = t.batches(0)
  state, metrics = t.train_step(state, next(it))
  it.close()
  assert float(metrics["loss"]) > 0
