"""Host-side evaluation through the training loop: COCO mAP from `train.py`'s evaluations.

An "oracle" detection task (registered here, test only) predicts the ground-truth boxes,
optionally shifted; the loop runs its `predict` compiled and feeds `COCOEvaluator` on the
host. Exact boxes must give mAP 1; shifted ones the same stats as pycocotools-identical
`jaxcv.metrics.coco.evaluate` on the exported json.
"""
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import load_config
from jaxcv.metrics import coco
from jaxcv.train import tasks
from jaxcv.train.loop import Trainer
from jaxcv.train.tasks.base import HostEvalTask, apply_model
from test_train import one_device_mesh


@tasks.register("oracle_detection_test")
class OracleDetection(HostEvalTask):
  metric_directions = {"map": "max"}

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    self.shift = float(config.get("oracle_shift", 0.0))

  def loss(self, model, variables, batch, rng, train):
    (logits, _), stats = apply_model(model, variables, batch["image"], train, rng)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, ({"loss": loss}, stats)

  def eval_init(self):
    return coco.COCOEvaluator(num_classes=self.config.num_object_classes)

  def predict(self, model, variables, batch):
    (logits, _), _ = apply_model(model, variables, batch["image"], False)
    rows = jnp.arange(batch["boxes"].shape[1], dtype=jnp.float32)
    return {"boxes": batch["boxes"] + self.shift + 0.0 * logits.sum(),
            "scores": jnp.broadcast_to(1.0 - 0.01 * rows, batch["classes"].shape),
            "classes": batch["classes"], "valid": batch["box_valid"]}

  def host_update(self, acc, batch, outputs):
    acc.update(batch, outputs)
    return acc

  def result(self, acc):
    return acc.compute()


def _config(shift):
  c = load_config("mlp_digits")
  c.task = "oracle_detection_test"
  c.oracle_shift = shift
  c.num_object_classes = 5
  c.data = {"name": "shapes", "image_size": 32, "eval_splits": ("validation",),
            "split_sizes": {"train": 8, "validation": 12},
            "keys": ("boxes", "classes", "iscrowd", "area", "label"), "max_boxes": 8}
  c.batch_size = c.eval_batch_size = 8
  return c


@pytest.fixture(scope="module")
def runs():
  out = {}
  for shift in (0.0, 2.0):
    t = Trainer(_config(shift), mesh=one_device_mesh())
    out[shift] = (t, t.evaluate(t.new_state(), "validation"))
  return out


def test_exact_predictions_give_map_one(runs):
  _, metrics = runs[0.0]
  assert set(metrics) >= {"map", "map50", "map75", "map_small", "map_medium", "map_large",
                          "mar100"}
  assert metrics["map"] == pytest.approx(1.0) and metrics["mar100"] == pytest.approx(1.0)


def test_shifted_predictions_equal_the_evaluator_on_exported_json(runs):
  t, metrics = runs[2.0]
  ds = t.eval_data["validation"]
  batch = ds.get(np.arange(len(ds)))
  batch["example_valid"] = np.ones(len(ds), bool)
  rows = np.arange(batch["boxes"].shape[1], dtype=np.float32)
  outputs = {"boxes": batch["boxes"] + 2.0,
             "scores": np.broadcast_to(1.0 - 0.01 * rows, batch["classes"].shape),
             "classes": batch["classes"], "valid": batch["box_valid"]}
  stats = coco.evaluate(coco.to_coco_gt([batch], num_classes=5),
                        coco.to_coco_dets([batch], [outputs]))
  assert 0.0 < metrics["map"] < 1.0
  assert metrics["map"] == pytest.approx(stats[0], abs=1e-12)
  assert metrics["map50"] == pytest.approx(stats[1], abs=1e-12)
  assert metrics["mar100"] == pytest.approx(stats[8], abs=1e-12)


class _Logits(nn.Module):
  """A linear classifier on the mean colour, with the `(output, intermediates)` contract."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    return nn.Dense(4)(jnp.mean(x, (1, 2))), {}


@tasks.register("argmax_host_test")
class ArgmaxHostTask(HostEvalTask):
  """A host-evaluated task with no `predict` of its own: the base one, via `prediction`."""

  def loss(self, model, variables, batch, rng, train):
    raise NotImplementedError

  def eval_init(self):
    return []

  def prediction(self, logits):
    return {"classes": jnp.argmax(logits, -1)}

  def host_update(self, acc, batch, outputs):
    return acc + list(outputs["classes"])

  def result(self, acc):
    return {"n": float(len(acc))}


def test_base_predict_serves_host_evaluation_and_pictures():
  assert "predict" not in HostEvalTask.__abstractmethods__
  task = ArgmaxHostTask({}, types.SimpleNamespace(num_classes=4))
  model = _Logits()
  batch = {"image": np.random.default_rng(0).random((5, 8, 8, 3), np.float32)}
  variables = model.init(jax.random.key(0), jnp.asarray(batch["image"]))
  (logits, _), _ = apply_model(model, variables, jnp.asarray(batch["image"]), False)
  want = np.argmax(np.asarray(logits), -1)
  # the loop's call: `task.predict(model, variables, batch)` compiled
  got = jax.jit(lambda v, b: task.predict(model, v, b))(variables, batch)
  np.testing.assert_array_equal(np.asarray(got["classes"]), want)
  host = task.compiled_predict(model, variables, batch)
  assert isinstance(host["classes"], np.ndarray)
  np.testing.assert_array_equal(host["classes"], want)
  assert task.result(task.host_update(task.eval_init(), batch, host)) == {"n": 5.0}
