"""One-stage detectors on the CPU: compile times and inference against torchvision.

For each of `retinanet_resnet50_fpn`, `fcos_resnet50_fpn` and `ssd300_vgg16` (those named
with `--models`): torchvision's model with random weights (eval mode), converted with
`jaxcv.weights.torchvision.load` (the path a user takes with real weights), then, in one run:

1. compile time (lower + XLA compile) of jaxcv's predict and of a train step (SGD with
   momentum on the summed losses) at the model's size, batch `--batch`. Target: under 60 s
   each on the 2-core CPU.
2. inference of one image, batch 1, median of `--steps` after a warm-up: jaxcv's jitted
   predict against torchvision's `model(images)` (its transform included: it only
   normalises at these sizes), and the ratio torchvision / jaxcv (> 1: jaxcv faster).
   RetinaNet and FCOS at `--size` (default 512: torchvision's min_size / max_size set to it),
   SSD300 at 300. torchvision's `nms` is the CPU shim's Python fallback
   (../shared/tools/torchvision_cpu.py), not its C++ kernel.

  python benchmarks/one_stage.py                       # all three
  python benchmarks/one_stage.py --models ssd300_vgg16 --steps 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from detection_step import compile_seconds, random_targets  # noqa: E402
from train_step import import_torchvision, time_steps  # noqa: E402

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SSD_NORM = ((0.48235, 0.45882, 0.40784), (1 / 255, 1 / 255, 1 / 255))
MODELS = {"retinanet_resnet50_fpn": IMAGENET, "fcos_resnet50_fpn": IMAGENET,
          "ssd300_vgg16": SSD_NORM}


def torch_model(torchvision, name, size):
  kwargs = dict(weights=None, weights_backbone=None, num_classes=91)
  if not name.startswith("ssd"):
    kwargs.update(min_size=size, max_size=size)
  return getattr(torchvision.models.detection, name)(**kwargs).eval()


def measure(name, args, torch, torchvision):
  from jaxcv.weights.torchvision import load  # noqa: PLC0415
  size = 300 if name.startswith("ssd") else args.size
  torch.manual_seed(0)
  tm = torch_model(torchvision, name, size)
  kwargs = {} if name.startswith("ssd") else {"norm_epsilon": 1e-5}
  model, variables = load(name, tm.state_dict(), **kwargs)
  rng = np.random.default_rng(0)
  mean, std = (np.asarray(v, np.float32) for v in MODELS[name])
  img = rng.uniform(0, 1, (1, size, size, 3)).astype(np.float32)
  x1 = jnp.asarray((img - mean) / std)
  xb = jnp.asarray((rng.uniform(0, 1, (args.batch, size, size, 3)) - mean) / std, jnp.float32)
  targets = random_targets(rng, args.batch, size)
  tx = optax.sgd(0.01, momentum=0.9)
  params = variables["params"]
  opt_state = tx.init(params)

  def step(params, opt_state, x, targets):
    def loss_fn(p):
      (losses, _), _ = model.apply({**variables, "params": p}, x, None, targets, train=True,
                                   mutable=["batch_stats"])
      return sum(losses.values())
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def predict(variables, x):
    return model.apply(variables, x)[0]

  t_step, _ = compile_seconds(step, params, opt_state, xb, targets)
  t_pred, pred_b1 = compile_seconds(predict, variables, x1)
  print(f"{name} {size}x{size}: compile train step (batch {args.batch}) {t_step:.1f} s, "
        f"predict (batch 1) {t_pred:.1f} s (target < 60 s each)", flush=True)
  jax_times = time_steps(lambda: jax.block_until_ready(pred_b1(variables, x1)), 1, args.steps)
  timg = [torch.from_numpy(img[0].transpose(2, 0, 1).copy())]
  with torch.no_grad():
    torch_times = time_steps(lambda: tm(timg), 1, args.steps)
  tj, tt = statistics.median(jax_times), statistics.median(torch_times)
  print(f"  inference batch 1: jaxcv {1000 * tj:.0f} ms, torchvision {1000 * tt:.0f} ms, "
        f"torchvision/jaxcv {tt / tj:.2f}", flush=True)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--steps", type=int, default=3)
  args = p.parse_args()
  torch, torchvision = import_torchvision()
  if torch is None:
    sys.exit("torch is not installed: this benchmark compares with torchvision")
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d')}")
  for name in args.models:
    measure(name, args, torch, torchvision)


if __name__ == "__main__":
  main()
