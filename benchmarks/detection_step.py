"""Faster R-CNN costs: compile times, where a train step's time goes, CPU inference against
torchvision.

1. Compile time (lower + XLA compile) of the train step (SGD with momentum on the four
   summed losses) and of predict, for `fasterrcnn_resnet50_fpn` at `--size` (512) batch 2,
   and for configs/fasterrcnn_shapes.py through the loop's own jitted functions. Target:
   under 60 s each on the 2-core CPU.
2. The share of the train step spent outside the backbone + FPN forward/backward
   (anchors, matching, sampling, RoI Align, heads, losses, NMS of the proposals): one step's
   median time against the backbone + FPN alone (same parameters, the same input, a sum of
   the maps as the loss). Target: under 35%.
3. CPU inference of `fasterrcnn_resnet50_fpn` at `--infer-size` (800) against torchvision's,
   the same weights (torchvision's random model converted with `jaxcv.weights.torchvision`),
   in one run. On these machines torchvision's `nms` and `roi_align` are the CPU shim's
   Python fallbacks (../shared/tools/torchvision_cpu.py), not its C++ kernels.

  python benchmarks/detection_step.py                 # everything
  python benchmarks/detection_step.py --skip-torch --skip-shapes
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from jaxcv import models  # noqa: E402
from jaxcv.models.detection.backbone.fpn import FPN  # noqa: E402
from jaxcv.models.detection.backbone.resnet_fpn import resnet_fpn_features  # noqa: E402
from train_step import import_torchvision, time_steps  # noqa: E402


class BackboneFPN(nn.Module):
  """The detector's backbone + FPN alone, with the detector's parameter names."""
  detector: nn.Module

  @nn.compact
  def __call__(self, x, train=True):
    d = self.detector
    return resnet_fpn_features(
        x, backbone=d.backbone, width=d.width, norm=d.backbone_norm,
        norm_epsilon=d.norm_epsilon, num_groups=d.num_groups,
        trainable_layers=d.trainable_backbone_layers, frozen_stages=d.frozen_stages,
        train=train, fpn=FPN(d.fpn_channels, "maxpool", None, d.dtype, name="fpn"),
        dtype=d.dtype)


def random_targets(rng, batch, size, m=10):
  xy = rng.uniform(0, size * 0.7, (batch, m, 2))
  wh = rng.uniform(16, size * 0.3, (batch, m, 2))
  return {"boxes": jnp.asarray(np.concatenate([xy, xy + wh], -1), jnp.float32),
          "classes": jnp.asarray(rng.integers(1, 91, (batch, m)), jnp.int32),
          "box_valid": jnp.asarray(np.arange(m)[None].repeat(batch, 0) < rng.integers(
              1, m + 1, (batch, 1)))}


def compile_seconds(fn, *args):
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return time.perf_counter() - t0, compiled


def resnet50_costs(args):
  rng = np.random.default_rng(0)
  model = models.create("fasterrcnn_resnet50_fpn", num_classes=90)
  x = jnp.asarray(rng.normal(size=(args.batch, args.size, args.size, 3)), jnp.float32)
  targets = random_targets(rng, args.batch, args.size)
  variables = jax.jit(model.init)({"params": jax.random.key(0, impl="rbg")}, x)
  tx = optax.sgd(0.02, momentum=0.9)
  opt_state = tx.init(variables["params"])
  key = jax.random.key(1, impl="rbg")

  def step(params, opt_state, x, targets, key):
    def loss_fn(p):
      losses, _ = model.apply({**variables, "params": p}, x, None, targets, train=True,
                              rngs={"sample": key})
      return sum(losses.values())
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def predict(variables, x):
    return model.apply(variables, x)[0]

  bb = BackboneFPN(model)
  bb_params = {k: variables["params"][k] for k in ("stem", "stage1", "stage2", "stage3",
                                                   "stage4", "fpn")}
  bb_vars = {**variables, "params": bb_params}
  bb_vars["batch_stats"] = {k: v for k, v in variables["batch_stats"].items()
                            if k in bb_params}

  def backbone_step(params, x):
    def loss_fn(p):
      return sum(jnp.mean(m) for m in bb.apply({**bb_vars, "params": p}, x))
    return jax.value_and_grad(loss_fn)(params)

  t_step_compile, step_c = compile_seconds(step, variables["params"], opt_state, x, targets,
                                           key)
  t_pred_compile, pred_c = compile_seconds(predict, variables, x)
  _, bb_c = compile_seconds(backbone_step, bb_params, x)
  print(f"fasterrcnn_resnet50_fpn {args.size}x{args.size} batch {args.batch}: compile train "
        f"step {t_step_compile:.1f} s, predict {t_pred_compile:.1f} s (target < 60 s each)")
  step_times = time_steps(lambda: jax.block_until_ready(
      step_c(variables["params"], opt_state, x, targets, key)), 1, args.steps)
  bb_times = time_steps(lambda: jax.block_until_ready(bb_c(bb_params, x)), 1, args.steps)
  t_step, t_bb = statistics.median(step_times), statistics.median(bb_times)
  print(f"  train step {t_step:.3f} s, backbone+FPN forward/backward {t_bb:.3f} s: "
        f"{100 * (1 - t_bb / t_step):.1f}% of the step outside backbone+FPN (target < 35%)")
  pred_times = time_steps(lambda: jax.block_until_ready(pred_c(variables, x)), 1, args.steps)
  print(f"  predict {statistics.median(pred_times):.3f} s per batch")


def shapes_costs(args):
  from conftest import load_config  # noqa: PLC0415  tests/conftest: configs as train.py
  from jaxcv.train import input_pipeline  # noqa: PLC0415
  from jaxcv.train.loop import Trainer  # noqa: PLC0415

  config = load_config("fasterrcnn_shapes", progress_bar=False)
  config.data.split_sizes = {"train": 64, "validation": 8, "test": 8}
  trainer = Trainer(config, mesh=jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",)))
  state = trainer.new_state()
  batch = next(iter(trainer.batches(0)))
  eval_batch = next(iter(input_pipeline.eval_batches(trainer.eval_data["test"],
                                                     trainer.eval_batch_size, trainer.mesh)))
  t0 = time.perf_counter()
  trainer.train_step.lower(state, batch).compile()
  t_train = time.perf_counter() - t0
  t0 = time.perf_counter()
  trainer.predict_step.lower(state, eval_batch).compile()
  t_pred = time.perf_counter() - t0
  print(f"fasterrcnn_shapes (batch {config.batch_size}, eval batch {trainer.eval_batch_size}, "
        f"128x128): compile train step {t_train:.1f} s, predict {t_pred:.1f} s")


def inference_vs_torch(args):
  torch, torchvision = import_torchvision()
  if torch is None:
    print("torch not installed: no torchvision comparison")
    return
  sys.path.insert(0, str(REPO / "tests"))
  from torch_reference import roi_align_as_cpp_kernel  # noqa: PLC0415
  from jaxcv.weights.torchvision import load  # noqa: PLC0415
  roi_align_as_cpp_kernel(torchvision)
  torch.manual_seed(0)
  s = args.infer_size
  tm = torchvision.models.detection.fasterrcnn_resnet50_fpn(
      weights=None, weights_backbone=None, num_classes=91, min_size=s, max_size=s).eval()
  model, variables = load("fasterrcnn_resnet50_fpn", tm.state_dict(), norm_epsilon=1e-5)
  img = np.random.default_rng(0).uniform(0, 1, (1, s, s, 3)).astype(np.float32)
  mean = np.array([0.485, 0.456, 0.406], np.float32)
  std = np.array([0.229, 0.224, 0.225], np.float32)
  x = jnp.asarray((img - mean) / std)
  fn = jax.jit(lambda v, x: model.apply(v, x)[0])
  jax_times = time_steps(lambda: jax.block_until_ready(fn(variables, x)), 1, args.steps)
  timg = [torch.from_numpy(img[0].transpose(2, 0, 1).copy())]
  with torch.no_grad():
    torch_times = time_steps(lambda: tm(timg), 1, args.steps)
  tj, tt = statistics.median(jax_times), statistics.median(torch_times)
  print(f"inference fasterrcnn_resnet50_fpn {s}x{s}, batch 1, CPU ({os.cpu_count()} cores, "
        f"torch {torch.get_num_threads()} threads): jaxcv {tj:.2f} s, torchvision {tt:.2f} s, "
        f"torchvision/jaxcv {tt / tj:.2f} (torchvision's nms/roi_align: Python fallbacks)")


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--infer-size", type=int, default=800)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--skip-torch", action="store_true")
  p.add_argument("--skip-shapes", action="store_true")
  args = p.parse_args()
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}")
  resnet50_costs(args)
  if not args.skip_shapes:
    shapes_costs(args)
  if not args.skip_torch:
    inference_vs_torch(args)


if __name__ == "__main__":
  main()
