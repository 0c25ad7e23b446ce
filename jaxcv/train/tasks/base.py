"""The task interface the training loop calls, and a helper to run a model.

Predictions have one path: a task says how its model output becomes a prediction
(`Task.prediction`, e.g. argmax over classes, positive depth, unit normals), `Task.predict`
runs the model in evaluation mode and applies it (jit-able; the loop compiles it for
host-evaluated tasks), and `Task.compiled_predict` is that call compiled once per task and
model (`_compiled_predict`, the one jitted wrapper), returned as NumPy for `draw`.
"""
from __future__ import annotations

import abc
import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np


def apply_model(model: nn.Module, variables: Mapping[str, Any], x: jax.Array, train: bool,
                rng: jax.Array | None = None) -> tuple[Any, Any]:
  """Runs `model` and returns `(outputs, new_batch_stats)`.

  In training, BatchNorm statistics are updated (returned; `{}` when the model has none) and
  `rng` feeds the `dropout` stream. In evaluation the stats come back unchanged.
  """
  has_stats = "batch_stats" in variables
  rngs = {"dropout": rng} if (train and rng is not None) else None
  if train and has_stats:
    out, updates = model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
    return out, updates["batch_stats"]
  out = model.apply(variables, x, train=train, rngs=rngs)
  return out, variables.get("batch_stats", {})


class Task(abc.ABC):
  """What a task gives the loop. Arrays in `batch` follow docs/conventions.md.

  All methods but `check_batch`, `result`, `compiled_predict` and `draw` run inside
  `jax.jit`.
  """
  name: str = "task"
  #: True for tasks evaluated on the host (see `HostEvalTask`).
  host_eval: bool = False
  #: metric name -> 'max' or 'min'; the loop uses it to pick checkpoints and to report.
  metric_directions: Mapping[str, str] = {}
  #: keys of `config.data` the task reads itself (e.g. `mean` and `std`, with which it
  #: normalises the input); `jaxcv.data.from_config` passes them to no data-set loader.
  data_config_keys: tuple[str, ...] = ()

  def __init__(self, config, dataset):
    self.config = config
    self.num_classes = dataset.num_classes
    #: the model's number of outputs per image, per pixel or per box (its `num_classes`,
    #: see `model_kwargs`); a task predicting another label space sets it, e.g.
    #: `dataset.class_counts["semantic"]` for segmentation, 3 for surface normals.
    self.num_outputs = dataset.num_classes

  def model_kwargs(self) -> dict[str, Any]:
    """The model's construction arguments the task decides from the config and the data:
    `{"num_classes": num_outputs}` here; a detector adds its anchors and background
    convention. The loop passes them to `jaxcv.models.create` with `config.model` (a key
    in both is an error) and knows none of them."""
    return {"num_classes": self.num_outputs}

  def check_batch(self, batch: Mapping[str, np.ndarray]) -> None:
    """Host-side validation of a NumPy batch; raises ValueError naming the problem."""

  def model_input(self, batch: Mapping[str, jax.Array]) -> jax.Array:
    return batch["image"]

  def outputs(self, model: nn.Module, variables, batch, train: bool,
              rng: jax.Array | None = None) -> tuple[Any, Any]:
    """`(model output, new batch_stats)` on `model_input(batch)`, intermediates dropped."""
    (out, _), stats = apply_model(model, variables, self.model_input(batch), train, rng)
    return out, stats

  def prediction(self, output: Any) -> Any:
    """The task's prediction from the model's output (jit-able); the output itself unless a
    task says otherwise (class ids, per-pixel labels, depth, unit normals, ...)."""
    return output

  def predict(self, model: nn.Module, variables, batch) -> Any:
    """Predictions for `batch` in evaluation mode: `prediction(outputs(...))`, a pytree of
    arrays (runs inside `jax.jit`; host-evaluated tasks hand it to `host_update`)."""
    out, _ = self.outputs(model, variables, batch, False)
    return self.prediction(out)

  def compiled_predict(self, model: nn.Module, variables, batch) -> Any:
    """`predict` compiled (one jitted function for every task, the task and the model
    static, so each pair compiles once per batch shape), as NumPy on the host."""
    return jax.device_get(_compiled_predict(self, model, variables, batch))

  @abc.abstractmethod
  def loss(self, model: nn.Module, variables, batch, rng: jax.Array, train: bool
           ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Any]]:
    """Returns `(scalar loss, (metrics for logging, new batch_stats))`."""

  @abc.abstractmethod
  def eval_init(self) -> Any:
    """Zero accumulator (a pytree of arrays) for one pass over an evaluation split."""

  @abc.abstractmethod
  def eval_update(self, model: nn.Module, variables, batch, acc: Any) -> Any:
    """Adds one batch (rows with `example_valid` False are ignored) to the accumulator."""

  @abc.abstractmethod
  def result(self, acc: Any) -> dict[str, float]:
    """The final metric dict, on the host, names as in docs/conventions.md."""

  def draw(self, model: nn.Module, variables, batch, path: str) -> None:
    """Optional: writes a PNG of predictions on `batch` to `path`."""


@functools.partial(jax.jit, static_argnums=(0, 1))
def _compiled_predict(task: Task, model: nn.Module, variables, batch):
  # Tasks hash by identity and Flax modules by their fields: a task's pictures at every
  # evaluation reuse one compilation.
  return task.predict(model, variables, batch)


class HostEvalTask(Task):
  """A task whose evaluation accumulates on the host (COCO mAP through
  `jaxcv.metrics.coco.COCOEvaluator`): the loop runs `predict` (the base one, or the task's
  own; padded outputs such as boxes, scores, classes and a validity mask) compiled on each
  evaluation batch and hands `host_update` the batch and the outputs as NumPy arrays;
  `eval_init` returns the host accumulator and `result` reads it."""
  host_eval = True

  @abc.abstractmethod
  def host_update(self, acc: Any, batch: Mapping[str, np.ndarray], outputs: Any) -> Any:
    """Adds one batch's NumPy outputs to the host accumulator; returns it."""

  def eval_update(self, model, variables, batch, acc):
    raise TypeError(f"task {self.name!r} evaluates on the host: the loop calls predict and "
                    "host_update, not eval_update")
