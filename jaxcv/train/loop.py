"""The task-agnostic training loop: build, restore, train sharded, evaluate, checkpoint.

The loop reads no task-, model- or data-specific key: the config is first merged over the
defaults of every key it reads (`jaxcv.train.defaults`), the splits come from
`jaxcv.data.from_config(config.data)`, and the model is built from `config.model` with the
arguments the task decides (`Task.model_kwargs`, e.g. `num_classes`) and the two every
model takes from the loop (`dtype`, `frozen_stages`).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from jaxcv import data as data_lib
from jaxcv import models
from jaxcv.train import checkpoint as ckpt_lib
from jaxcv.train import defaults
from jaxcv.train import input_pipeline
from jaxcv.train import mesh as mesh_lib
from jaxcv.train import optim
from jaxcv.train import pretrained
from jaxcv.train import tasks
from jaxcv.train.metrics_writer import MetricsWriter
from jaxcv.train.state import TrainState

log = logging.getLogger(__name__)

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# XLA compiles threefry random-number generation for a whole model's init slowly on CPU (9 s
# for a narrow ResNet-18, against 3 s with rbg); rbg keys are as good for init and dropout.
RNG_IMPL = "rbg"


class TrainingDivergedError(FloatingPointError):
  """The loss became NaN or Inf; the run stopped and kept its last good checkpoint."""


class Trainer:
  """Everything built from a config: data, task, model, optimizer, mesh, compiled steps.

  Tests use it piece by piece (`init_state`, `train_step`); `train_and_evaluate` runs it.
  """

  def __init__(self, config: ml_collections.ConfigDict, mesh=None):
    # optional keys missing from `config` take their defaults here, once
    self.config = config = defaults.with_defaults(config, check_required=True)
    self.mesh = mesh if mesh is not None else mesh_lib.make_mesh(config.mesh)
    task_class = tasks.get(config.task)
    self.train_data, self.eval_data = data_lib.from_config(
        config.data, task_keys=task_class.data_config_keys)
    self.task = task_class(config, self.train_data)
    self.model = self._create_model()
    self.data_axis = self.mesh.shape[mesh_lib.DATA_AXIS]
    for what, bs in (("batch_size", config.batch_size),
                     ("eval_batch_size", self.eval_batch_size)):
      if bs % self.data_axis:
        raise ValueError(f"{what} {bs} is not divisible by the {self.data_axis} devices "
                         f"of the mesh's '{mesh_lib.DATA_AXIS}' axis")
    self._build()

  def _create_model(self):
    """`models.create(model.name, **task.model_kwargs(), dtype, frozen_stages, **model.*)`;
    a key of `config.model` that the task or the loop also sets is an error (two values for
    one argument: the config's would silently contradict the data, e.g. `num_classes`)."""
    c = self.config
    m = dict(c.model)
    name = m.pop("name")
    dtype = DTYPES.get(c.dtype)
    if dtype is None:
      raise ValueError(f"unknown dtype {c.dtype!r}; known: {sorted(DTYPES)}")
    given = {**self.task.model_kwargs(), "dtype": dtype,
             "frozen_stages": tuple(c.transfer.frozen)}
    both = sorted(set(given) & set(m))
    if both:
      raise ValueError(f"config.model sets {both}, which the loop sets itself (task "
                       f"{c.task!r}: {self.task.model_kwargs()}; dtype from config.dtype, "
                       "frozen_stages from config.transfer.frozen); remove them from "
                       "config.model")
    return models.create(name, **given, **m)

  @property
  def eval_batch_size(self) -> int:
    return int(self.config.eval_batch_size or self.config.batch_size)  # 0: batch_size

  def _example_batch(self) -> dict[str, jax.Array]:
    batch = self.train_data.get(np.arange(self.data_axis))
    return {k: jnp.asarray(v) for k, v in batch.items()}

  def _init(self, rng: jax.Array) -> TrainState:
    init_rng, train_rng = jax.random.split(rng)
    x = self.task.model_input(self._example_batch())
    variables = self.model.init({"params": init_rng, "dropout": init_rng}, x, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=self.tx.init(params), rng=jax.random.key_data(train_rng))

  def _build(self) -> None:
    c = self.config
    rng = jax.random.key(int(c.seed), impl=RNG_IMPL)
    abstract_params = jax.eval_shape(
        lambda r: self.model.init(r, self.task.model_input(self._example_batch()),
                                  train=False)["params"], rng)
    self.tx = optim.make_optimizer(c, abstract_params)
    self.abstract_state = jax.eval_shape(self._init, rng)
    self.state_sharding = mesh_lib.state_shardings(self.abstract_state, self.mesh, c.mesh)
    batch_sh = mesh_lib.batch_sharding(self.mesh)
    rep = mesh_lib.replicated(self.mesh)
    self._rng = rng
    self.init_state = jax.jit(self._init, out_shardings=self.state_sharding)
    self.train_step = jax.jit(self._train_step, in_shardings=(self.state_sharding, batch_sh),
                              out_shardings=(self.state_sharding, rep), donate_argnums=0)
    self.eval_step = jax.jit(self._eval_step, in_shardings=(self.state_sharding, batch_sh, rep),
                             out_shardings=rep)

  def _train_step(self, state: TrainState, batch) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng, impl=RNG_IMPL), state.step)

    def loss_fn(params):
      variables = dict(state.variables, params=params)
      return self.task.loss(self.model, variables, batch, rng, True)

    (loss, (metrics, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
    return state.replace(step=state.step + 1, params=params, batch_stats=stats,
                         opt_state=opt_state), metrics

  @functools.cached_property
  def predict_step(self):
    """`task.predict` compiled (tasks with `host_eval`)."""
    return jax.jit(lambda state, batch: self.task.predict(self.model, state.variables, batch))

  def _eval_step(self, state: TrainState, batch, acc):
    return self.task.eval_update(self.model, state.variables, batch, acc)

  def new_state(self) -> TrainState:
    state = self.init_state(self._rng)
    t = self.config.transfer
    if t.init_from:
      state = pretrained.load_into(state, t.init_from, tuple(t.init_exclude),
                                   self.state_sharding)
    return state

  def batches(self, start_step: int) -> input_pipeline.TrainBatches:
    c = self.config
    return input_pipeline.TrainBatches(
        self.train_data, c.batch_size, int(c.seed), start_step, self.mesh,
        check=self.task.check_batch, prefetch=int(c.prefetch), workers=int(c.data_workers),
        reader=c.data_reader)

  def evaluate(self, state: TrainState, split: str, picture: str | Path | None = None
               ) -> dict[str, float]:
    """Metrics of `split`; with `picture`, the task draws its first batch there (a PNG)."""
    host = self.task.host_eval
    acc = self.task.eval_init()
    if not host:
      acc = jax.device_put(acc, mesh_lib.replicated(self.mesh))
    for i, batch in enumerate(input_pipeline.eval_batches(
        self.eval_data[split], self.eval_batch_size, self.mesh, check=self.task.check_batch)):
      if host:  # e.g. COCO mAP: outputs computed compiled, accumulated on the host
        outputs = multihost_utils.process_allgather(self.predict_step(state, batch),
                                                    tiled=True)
        acc = self.task.host_update(acc, multihost_utils.process_allgather(batch, tiled=True),
                                    outputs)
      else:
        acc = self.eval_step(state, batch, acc)
      if i == 0 and picture is not None and jax.process_index() == 0:
        Path(picture).parent.mkdir(parents=True, exist_ok=True)
        self.task.draw(self.model, state.variables, batch, str(picture))
    return self.task.result(acc)


@contextlib.contextmanager
def _preemption_flag():
  """Yields a dict whose 'set' turns True on SIGTERM (the loop then saves and stops)."""
  flag = {"set": False}
  if threading.current_thread() is not threading.main_thread():
    yield flag
    return

  def handler(signum, frame):
    del signum, frame
    flag["set"] = True

  old = signal.signal(signal.SIGTERM, handler)
  try:
    yield flag
  finally:
    signal.signal(signal.SIGTERM, old)


def best_split(trainer: Trainer) -> str:
  return "validation" if "validation" in trainer.eval_data else next(iter(trainer.eval_data))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
  """Trains `config` in `workdir`, resuming from its checkpoint if there is one.

  Unreadable checkpoints are moved aside (`jaxcv.train.checkpoint`) and reported in
  `metrics.jsonl` as a `corrupt_checkpoints` event; the run resumes from the newest readable
  one, or starts from step 0.

  Returns `{"step": last step, "preempted": bool, "<split>": metrics of the last evaluation}`.
  Raises TrainingDivergedError on a NaN/Inf loss (the last good checkpoint stays).
  """
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  c = config = defaults.with_defaults(config, check_required=True)
  if jax.process_index() == 0:  # the run's whole config, defaults included
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  trainer = Trainer(config)
  num_steps = int(c.num_steps)
  directions = trainer.task.metric_directions
  best_metric = c.best_metric or None
  if best_metric and best_metric not in directions:
    raise ValueError(f"best_metric {best_metric!r} is not a metric of task {c.task!r}; "
                     f"known: {sorted(directions)}")
  ckpts = ckpt_lib.Checkpoints(workdir, keep=int(c.keep_checkpoints), best_metric=best_metric,
                               best_mode=c.best_mode or directions.get(best_metric, "max"))
  restored = ckpts.restore(jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      trainer.abstract_state, trainer.state_sharding))
  if restored is not None:
    state, meta = restored
    log.info("resumed from step %d in %s", meta["step"], workdir)
  else:
    state = trainer.new_state()
  start = int(jax.device_get(state.step))
  writer = MetricsWriter(workdir)
  if ckpts.moved:  # unreadable checkpoints were moved aside: say so where the run is read
    writer.write_event(start, "corrupt_checkpoints", moved=ckpts.moved,
                       resumed_from=start if restored is not None else None)
  result: dict[str, Any] = {"step": start, "preempted": False}
  eval_every = int(c.eval_every) or num_steps
  ckpt_every = int(c.checkpoint_every) or num_steps
  log_every = max(int(c.log_every), 1)
  pick = best_split(trainer)

  def run_eval(step: int, state: TrainState, save_last: bool) -> None:
    for split in trainer.eval_data:
      picture = workdir / "pictures" / f"{split}_step{step}.png" if split == pick else None
      metrics = trainer.evaluate(state, split, picture)
      writer.write_eval(step, split, metrics)
      result[split] = metrics
    ckpts.save(step, state, metrics=result[pick], last=save_last)

  batches = trainer.batches(start) if start < num_steps else None
  bar = tqdm(total=num_steps, initial=start, desc=workdir.name, dynamic_ncols=True,
             disable=jax.process_index() != 0 or not c.progress_bar)
  try:
    with _preemption_flag() as preempted:
      metric_sum, metric_count = None, 0
      # share of wall time the loop waited for the next host batch (written as `data_wait`
      # at each log step): near 0 when the workers keep up with the compiled steps; and the
      # steps per second of wall time (`steps_per_s`)
      waited, since, steps_since = 0.0, time.perf_counter(), 0
      for step in range(start + 1, num_steps + 1):
        t = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - t
        state, metrics = trainer.train_step(state, batch)
        steps_since += 1
        # Summed on the device, asynchronously: no host sync until the log interval.
        metric_sum = metrics if metric_sum is None else jax.tree.map(jnp.add, metric_sum, metrics)
        metric_count += 1
        bar.update(1)
        result["step"] = step
        if step % log_every == 0 or step == num_steps or preempted["set"]:
          means = {k: float(v) / metric_count for k, v in jax.device_get(metric_sum).items()}
          metric_sum, metric_count = None, 0
          if not all(map(math.isfinite, means.values())):
            last = ckpts.latest_step()
            kept = (f"the last good checkpoint (step {last}) is kept in "
                    f"{workdir / 'checkpoints'}" if last is not None else
                    "no checkpoint had been saved yet")
            raise TrainingDivergedError(
                f"loss is {means['loss']} at step {step} (mean since the last log step): "
                f"training stopped; {kept}")
          now = time.perf_counter()
          means["data_wait"] = waited / max(now - since, 1e-9)
          means["steps_per_s"] = steps_since / max(now - since, 1e-9)
          waited, since, steps_since = 0.0, now, 0
          writer.write_train(step, means)
          bar.set_postfix(loss=f"{means['loss']:.4f}")
        if preempted["set"]:
          ckpts.save(step, state)
          result["preempted"] = True
          log.warning("SIGTERM: saved step %d in %s and stopped", step, workdir)
          break
        is_eval = step % eval_every == 0 or step == num_steps
        is_ckpt = step % ckpt_every == 0 or step == num_steps
        if is_eval:
          run_eval(step, state, save_last=is_ckpt)
        elif is_ckpt:
          ckpts.save(step, state)
      if start >= num_steps:  # a finished run, started again: report, change nothing
        for split in trainer.eval_data:
          result[split] = trainer.evaluate(state, split)
  finally:
    bar.close()
    if batches is not None:
      batches.close()
    ckpts.close()
    writer.close()
  if jax.process_index() == 0:
    (workdir / "result.json").write_text(json.dumps(result, indent=2))
  result["state"] = state
  return result

