"""The training loop: sharding, checkpoints, preemption, switches and bad input."""
import glob
import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import Mesh

from conftest import REPO, load_config
from jaxcv.train import Trainer, TrainingDivergedError, train_and_evaluate
from jaxcv.train import checkpoint as ckpt_lib
from jaxcv.train.metrics_writer import MetricsWriter, read_events, read_metrics

# Small runs: LeNet on digits, a few dozen steps, on one device. Whole runs stay off the
# 8-device mesh: XLA's CPU client, with 8 simulated devices on 2 cores, now and then
# deadlocks in a collective over many steps (seen in CI); the sharding tests below check
# single steps on 8 devices instead.
FAST = {"num_steps": 40, "eval_every": 20, "checkpoint_every": 20, "log_every": 10,
        "progress_bar": False, "mesh.shape": {"data": 1}}
ALL_DEVICES = {"mesh.shape": {"data": -1}}


def fast_config(**over):
  return load_config("lenet_digits", **dict(FAST, **over))


def one_device_mesh():
  return Mesh(np.asarray(jax.devices()[:1]), ("data",))


def host_batch(trainer, step=0):
  from jaxcv.train.input_pipeline import batch_indices
  idx = batch_indices(0, step, trainer.config.batch_size, len(trainer.train_data))
  return trainer.train_data.get(idx)


def put(batch, trainer):
  from jaxcv.train.mesh import global_batch
  return global_batch(batch, trainer.mesh)


def tree_allclose(a, b, rtol, atol):
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


def tree_equal(a, b):
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                  err_msg=jax.tree_util.keystr(path))


RESNET = {"model.name": "resnet18", "model.width": 8, "batch_size": 16}


@pytest.mark.parametrize("over", [{}, RESNET], ids=["lenet5", "resnet18_bn"])
def test_train_step_on_8_devices_equals_one_device(over):
  assert jax.device_count() == 8, "conftest sets 8 simulated devices"
  c = fast_config(**over, **ALL_DEVICES)
  t8, t1 = Trainer(c), Trainer(c, mesh=one_device_mesh())
  batch = host_batch(t8)
  s8, m8 = t8.train_step(t8.new_state(), put(batch, t8))
  s1, m1 = t1.train_step(t1.new_state(), put(batch, t1))
  assert len(jax.tree.leaves(s8.params)[0].sharding.device_set) == 8
  np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]), rtol=1e-5)
  tree_allclose(s8.params, s1.params, rtol=1e-5, atol=1e-6)
  tree_allclose(s8.batch_stats, s1.batch_stats, rtol=1e-5, atol=1e-6)


def test_parameter_sharding_switch_shards_large_params_with_same_results():
  base = {"mesh.shape": {"data": 4, "model": 2}, "mesh.shard_params_min_size": 1000}
  sharded = Trainer(fast_config(**base, **{"mesh.shard_params": True}))
  replicated = Trainer(fast_config(**base, **{"mesh.shard_params": False}))
  batch = host_batch(sharded)
  s_sh, m_sh = sharded.train_step(sharded.new_state(), put(batch, sharded))
  s_re, m_re = replicated.train_step(replicated.new_state(), put(batch, replicated))
  big = [(jax.tree_util.keystr(p), x) for p, x in
         jax.tree_util.tree_flatten_with_path(s_sh.params)[0] if x.size >= 1000]
  small = [x for x in jax.tree.leaves(s_sh.params) if x.size < 1000]
  assert big and small
  for name, x in big:
    assert "model" in tuple(x.sharding.spec), (name, x.sharding)
    assert not x.sharding.is_fully_replicated, name
  for x in small:
    assert x.sharding.is_fully_replicated
  # momentum buffers follow their parameters
  for x in jax.tree.leaves(s_sh.opt_state):
    if x.size >= 1000:
      assert not x.sharding.is_fully_replicated
  for x in jax.tree.leaves(s_re.params):
    assert x.sharding.is_fully_replicated
  np.testing.assert_allclose(float(m_sh["loss"]), float(m_re["loss"]), rtol=1e-6)
  tree_allclose(s_sh.params, s_re.params, rtol=1e-5, atol=1e-6)


def test_frozen_params_and_batchnorm_stats_are_bitwise_unchanged():
  c = fast_config(**RESNET, **{"transfer.frozen": ("stem", "stage1")})
  t = Trainer(c)
  state0 = jax.device_get(t.new_state())
  state = t.new_state()
  for step in range(3):
    state, _ = t.train_step(state, put(host_batch(t, step), t))
  state = jax.device_get(state)
  for name in ("stem", "stage1"):
    tree_equal(state.params[name], state0.params[name])
    tree_equal(state.batch_stats[name], state0.batch_stats[name])
  # the rest did train: its parameters and BatchNorm statistics moved
  for tree in ("params", "batch_stats"):
    new, old = getattr(state, tree)["stage2"], getattr(state0, tree)["stage2"]
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new),
                                                        jax.tree.leaves(old))), tree


def final_params(workdir):
  ckpt = ckpt_lib.Checkpoints(workdir)
  step = ckpt.latest_step()
  tree = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step),
                                                         "state"))
  ckpt.close()
  return step, tree["params"]


def run_train_py(workdir, *flags, env=None):
  cmd = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/lenet_digits.py"),
         "--workdir", str(workdir), *flags]
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def test_sigterm_then_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
  flags = ["--config.num_steps=600", "--config.checkpoint_every=25", "--config.eval_every=0",
           "--config.progress_bar=False"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  full = run_train_py(tmp_path / "full", *flags, env=env)
  cut = run_train_py(tmp_path / "cut", *flags, env=env)
  # SIGTERM as soon as the first checkpoint is on disk (the run is then well under way).
  deadline = time.time() + 300
  while not glob.glob(str(tmp_path / "cut/checkpoints/*/commit_success.txt")):
    assert cut.poll() is None and time.time() < deadline, cut.communicate()[0]
    time.sleep(0.05)
  cut.send_signal(signal.SIGTERM)
  out = cut.communicate(timeout=300)[0]
  assert cut.returncode == 0, out
  assert "preempted at step" in out, out
  step_cut, _ = final_params(tmp_path / "cut")
  assert 25 <= step_cut < 600, step_cut
  resumed = run_train_py(tmp_path / "cut", *flags, env=env)
  out = resumed.communicate(timeout=600)[0]
  assert resumed.returncode == 0, out
  assert full.wait(timeout=600) == 0, full.communicate()[0]
  step_a, params_a = final_params(tmp_path / "full")
  step_b, params_b = final_params(tmp_path / "cut")
  assert step_a == step_b == 600
  tree_equal(params_a, params_b)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  # After step 20 the learning rate jumps by 1e30: the loss becomes NaN/Inf.
  c = fast_config(**{"schedule.name": "step", "schedule.boundaries": (21,),
                     "schedule.decay_factor": 1e30, "schedule.warmup_steps": 0,
                     "num_steps": 60, "eval_every": 0})
  with pytest.raises(TrainingDivergedError, match="last good checkpoint.*step 20"):
    train_and_evaluate(c, tmp_path)
  ckpt = ckpt_lib.Checkpoints(tmp_path)
  assert ckpt.latest_step() == 20
  t = Trainer(c)
  state, meta = ckpt.restore(t.abstract_state)
  assert meta["step"] == 20 and ckpt_lib.all_finite(state.params)
  ckpt.close()


def test_train_py_reports_divergence_with_exit_code_1(tmp_path):
  proc = run_train_py(tmp_path, "--config.num_steps=30", "--config.optimizer.learning_rate=1e30",
                      "--config.schedule.warmup_steps=0", "--config.log_every=5",
                      "--config.progress_bar=False")
  out = proc.communicate(timeout=300)[0]
  assert proc.returncode == 1, out
  assert "error: loss is" in out and "training stopped" in out


def test_corrupt_latest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
  c = fast_config()
  train_and_evaluate(c, tmp_path)  # checkpoints at 20 and 40
  for f in glob.glob(str(tmp_path / "checkpoints/40/state/**"), recursive=True):
    if os.path.isfile(f):
      with open(f, "wb") as fh:
        fh.write(b"\0garbage")
  with caplog.at_level(logging.WARNING):
    result = train_and_evaluate(c, tmp_path)
  assert "checkpoints/40 cannot be read" in caplog.text
  # resumed from step 20 and trained again to 40: the same parameters as the first run
  assert result["step"] == 40
  assert (tmp_path / "checkpoints.corrupt/40/state").is_dir()  # kept, out of orbax's way
  assert final_params(tmp_path)[0] == 40  # step 40 saved anew, readable
  fresh = train_and_evaluate(c, tmp_path / "fresh")
  tree_equal(jax.device_get(result["state"].params), jax.device_get(fresh["state"].params))


CORRUPT_FLAGS = ["--config.num_steps=40", "--config.eval_every=20",
                 "--config.checkpoint_every=20", "--config.log_every=10",
                 "--config.progress_bar=False"]


def overwrite_files(folder, pattern="**"):
  """Overwrites every file under `folder` matching `pattern` with garbage; their count."""
  files = [f for f in glob.glob(str(folder / pattern), recursive=True) if os.path.isfile(f)]
  for f in files:
    with open(f, "wb") as fh:
      fh.write(b"\0garbage")
  return len(files)


def run_to_end(workdir):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  proc = run_train_py(workdir, *CORRUPT_FLAGS, env=env)
  out = proc.communicate(timeout=600)[0]
  assert proc.returncode == 0, out
  return out


def test_train_py_with_every_checkpoint_corrupt_moves_them_aside_and_starts_fresh(tmp_path):
  """It used to warn, start from scratch and then crash at its first save (orbax's
  StepAlreadyExistsError: the damaged checkpoints/20 was still there)."""
  run_to_end(tmp_path)
  (best,) = os.listdir(tmp_path / "best")
  for folder in ("checkpoints/20", "checkpoints/40", f"best/{best}"):
    assert overwrite_files(tmp_path / folder) > 3, folder
  out = run_to_end(tmp_path)
  assert "done at step 40" in out, out
  for step in (20, 40):
    assert f"checkpoints/{step} cannot be read (" in out, out
    assert f"moved to {tmp_path}/checkpoints.corrupt/{step}" in out, out
    # moved aside, still on disk (with the garbage that made them unreadable)
    assert (tmp_path / f"checkpoints.corrupt/{step}/state").is_dir()
  assert "no readable checkpoint" in out and "starting from scratch" in out, out
  assert f"best/{best} cannot be read (" in out and (tmp_path / f"best.corrupt/{best}").is_dir()
  (event,) = read_events(tmp_path)
  assert event["step"] == 0 and event["event"] == "corrupt_checkpoints"
  assert event["resumed_from"] is None
  assert [(m["step"], m["from"], m["to"]) for m in event["moved"]] == [
      (int(best), f"best/{best}", f"best.corrupt/{best}"),
      (40, "checkpoints/40", "checkpoints.corrupt/40"),
      (20, "checkpoints/20", "checkpoints.corrupt/20")]
  assert all(m["error"] for m in event["moved"])
  # the fresh run saved and finished; evaluation readers see only evaluations
  assert final_params(tmp_path)[0] == 40
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["20", "40"]
  assert len(os.listdir(tmp_path / "best")) == 1
  assert [(r["step"], r["split"]) for r in read_metrics(tmp_path)] == [
      (s, split) for s in (20, 40, 20, 40) for split in ("validation", "test")]
  assert json.loads((tmp_path / "result.json").read_text())["step"] == 40


def test_train_py_with_the_latest_checkpoint_corrupt_resumes_from_the_one_before(tmp_path):
  run_to_end(tmp_path)
  first = read_metrics(tmp_path)
  # the array files of step 40 only (TensorStore's chunks): its metadata still reads
  assert overwrite_files(tmp_path / "checkpoints/40/state", "**/d/*") >= 1
  out = run_to_end(tmp_path)
  assert "checkpoints/40 cannot be read (" in out, out
  assert f"moved to {tmp_path}/checkpoints.corrupt/40; trying the one before" in out, out
  assert "resumed from step 20" in out and "done at step 40" in out, out
  assert (tmp_path / "checkpoints.corrupt/40/state").is_dir()
  (event,) = read_events(tmp_path, "corrupt_checkpoints")
  assert event["step"] == 20 and event["resumed_from"] == 20
  assert [(m["step"], m["to"]) for m in event["moved"]] == [(40, "checkpoints.corrupt/40")]
  # trained steps 21..40 only (log rows 30, 40), not again from 0, to the same evaluation
  assert [r["step"] for r in read_metrics(tmp_path, train=True)] == [10, 20, 30, 40, 30, 40]
  again = read_metrics(tmp_path)[len(first):]
  assert again == [r for r in first if r["step"] == 40]
  assert final_params(tmp_path)[0] == 40


def test_metrics_event_records_stay_out_of_read_metrics(tmp_path):
  writer = MetricsWriter(tmp_path)
  writer.write_eval(20, "test", {"accuracy": 0.5})
  writer.write_event(20, "corrupt_checkpoints", moved=[{"step": 40}], resumed_from=20)
  writer.write_eval(40, "test", {"accuracy": 0.75})
  writer.close()
  assert read_metrics(tmp_path) == [{"step": 20, "split": "test", "accuracy": 0.5},
                                    {"step": 40, "split": "test", "accuracy": 0.75}]
  assert read_events(tmp_path) == [{"step": 20, "event": "corrupt_checkpoints",
                                    "moved": [{"step": 40}], "resumed_from": 20}]
  assert read_events(tmp_path, "other") == []


def test_a_step_moved_aside_twice_keeps_both_copies(tmp_path):
  ckpts = ckpt_lib.Checkpoints(tmp_path)
  for n in range(2):
    (tmp_path / "checkpoints/40").mkdir(parents=True)
    (tmp_path / "checkpoints/40/copy").write_text(str(n))
    ckpts._move_aside(tmp_path.absolute() / "checkpoints", 40, OSError("damaged"), "then")
  ckpts.close()
  assert (tmp_path / "checkpoints.corrupt/40/copy").read_text() == "0"
  assert (tmp_path / "checkpoints.corrupt/40.2/copy").read_text() == "1"
  assert [m["to"] for m in ckpts.moved] == ["checkpoints.corrupt/40", "checkpoints.corrupt/40.2"]


def test_checkpoint_that_does_not_fit_the_config_is_a_clear_error(tmp_path):
  train_and_evaluate(fast_config(**{"num_steps": 20}), tmp_path)
  other = fast_config(**{"num_steps": 40, "model.name": "mlp"})
  with pytest.raises(ckpt_lib.CheckpointMismatchError, match="does not fit"):
    train_and_evaluate(other, tmp_path)


def test_run_writes_metrics_tensorboard_and_best_checkpoint(tmp_path):
  result = train_and_evaluate(fast_config(), tmp_path)
  rows = read_metrics(tmp_path)
  assert [(r["step"], r["split"]) for r in rows] == [
      (20, "validation"), (20, "test"), (40, "validation"), (40, "test")]
  assert all(set(r) >= {"accuracy", "top5", "loss"} for r in rows)
  assert 0.0 <= rows[-1]["accuracy"] <= 1.0 and rows[-1]["top5"] >= rows[-1]["accuracy"]
  assert result["test"]["accuracy"] == rows[-1]["accuracy"]
  assert glob.glob(str(tmp_path / "tensorboard/events.out.tfevents.*"))
  best = os.listdir(tmp_path / "best")
  val = {r["step"]: r["accuracy"] for r in rows if r["split"] == "validation"}
  assert len(best) == 1 and val[int(best[0])] == max(val.values()), (best, val)
  assert json.loads((tmp_path / "result.json").read_text())["step"] == 40
  assert sorted(os.listdir(tmp_path / "pictures")) == ["validation_step20.png",
                                                       "validation_step40.png"]


def test_transfer_learning_from_a_workdir_keeps_backbone_and_reinitialises_head(tmp_path):
  pre = train_and_evaluate(fast_config(), tmp_path / "pre")
  c = fast_config(**{"num_steps": 10, "transfer.init_from": str(tmp_path / "pre"),
                     "transfer.frozen": ("stage1", "stage2"),
                     "transfer.backbone_lr_mult": 0.1})
  t = Trainer(c)
  start = jax.device_get(t.new_state())
  pre_params = jax.device_get(pre["state"].params)
  tree_equal(start.params["stage1"], pre_params["stage1"])
  tree_equal(start.params["classifier"], pre_params["classifier"])
  assert not np.array_equal(start.params["head"]["kernel"], pre_params["head"]["kernel"])
  out = train_and_evaluate(c, tmp_path / "fine")
  tree_equal(jax.device_get(out["state"].params["stage2"]), pre_params["stage2"])


@pytest.mark.parametrize("key,value,match", [
    ("model.name", "lenet7", "known"),
    ("task", "poetry", "known tasks"),
    ("data.name", "imagenet-xxl", "known"),
    ("best_metric", "miou", "not a metric"),
])
def test_unknown_names_are_errors_listing_known_ones(tmp_path, key, value, match):
  with pytest.raises(ValueError, match=match):
    train_and_evaluate(fast_config(**{key: value}), tmp_path)


def test_bad_batches_are_rejected_with_a_message():
  t = Trainer(fast_config(), mesh=one_device_mesh())
  batch = host_batch(t)
  bad = dict(batch, label=np.where(np.arange(len(batch["label"])) == 3, 10, batch["label"]))
  with pytest.raises(ValueError, match=r"label 10 \(row 3.*outside \[0, 10\)"):
    t.task.check_batch(bad)
  with pytest.raises(ValueError, match=r"shape \(32, 32, 32, 1\).*expected \[B, 32, 32, 3\]"):
    t.task.check_batch(dict(batch, image=batch["image"][..., :1]))
  with pytest.raises(ValueError, match=r"shape \(32, 28, 28, 3\)"):
    t.task.check_batch(dict(batch, image=batch["image"][:, :28, :28]))


def test_bad_label_in_the_data_stops_training_with_the_message(monkeypatch):
  t = Trainer(fast_config(), mesh=one_device_mesh())
  get = t.train_data.get

  def get_with_a_bad_label(idx, seed=None):
    batch = get(idx, seed)
    batch["label"] = np.where(idx == 5, 12, batch["label"]).astype(np.int32)
    return batch

  monkeypatch.setattr(t.train_data, "get", get_with_a_bad_label)
  it = t.batches(0)
  with pytest.raises(ValueError, match="label 12"):
    for _ in range(60):
      next(it)
  it.close()


def test_transfer_learning_from_a_variables_file(tmp_path):
  from jaxcv.train.pretrained import save_variables
  t = Trainer(fast_config(), mesh=one_device_mesh())
  source = jax.device_get(t.new_state())
  # a recognisable "pretrained" model: every parameter shifted by 1
  params = jax.tree.map(lambda p: p + 1.0, source.params)
  save_variables(tmp_path / "pre.msgpack", {"params": params})
  c = fast_config(**{"transfer.init_from": str(tmp_path / "pre.msgpack")})
  start = jax.device_get(Trainer(c, mesh=one_device_mesh()).new_state())
  tree_equal(start.params["stage2"], params["stage2"])
  tree_equal(start.params["head"], source.params["head"])  # excluded: fresh init
  bad = fast_config(**{"transfer.init_from": str(tmp_path / "pre.msgpack"),
                       "model.name": "mlp"})
  with pytest.raises(ValueError, match="pretrained params have no 'fc1'"):
    Trainer(bad, mesh=one_device_mesh()).new_state()


MINIMAL = {"task": "classification", "model": {"name": "lenet5"}, "data": {"name": "digits"},
           "batch_size": 8, "num_steps": 3, "optimizer": {"learning_rate": 0.01},
           "mesh": {"shape": {"data": 1}}, "progress_bar": False}


def test_a_config_with_only_the_required_keys_runs_on_the_defaults(tmp_path):
  import ml_collections
  result = train_and_evaluate(ml_collections.ConfigDict(MINIMAL), tmp_path)
  assert result["step"] == 3 and set(result) >= {"validation", "test"}
  written = json.loads((tmp_path / "config.json").read_text())  # the run's whole config
  assert written["data_reader"] == "threads" and written["keep_checkpoints"] == 3
  assert written["optimizer"] == dict(written["optimizer"], name="sgd", momentum=0.9,
                                      learning_rate=0.01)
  assert written["mesh"]["shape"] == {"data": 1} and written["data"]["train_split"] == "train"


def test_missing_required_keys_and_model_arguments_the_task_sets_are_named_errors():
  import ml_collections
  c = ml_collections.ConfigDict(MINIMAL)
  del c["batch_size"]
  with pytest.raises(ValueError, match=r"lacks \['batch_size'\], which have no default"):
    Trainer(c, mesh=one_device_mesh())
  c = fast_config(**{"model.num_classes": 12})
  with pytest.raises(ValueError, match=r"config.model sets \['num_classes'\].*'num_classes': 10"):
    Trainer(c, mesh=one_device_mesh())
