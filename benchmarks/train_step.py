"""ResNet-50 training-step time: jaxcv (jit) against torchvision's ResNet-50 in torch.

Both do the same step: forward in train mode (BatchNorm batch statistics, running stats
updated), softmax cross-entropy, backward, SGD with momentum 0.9. Each side is warmed up
(compilation, allocator) and then timed for `--steps` steps; the median is reported.

  python benchmarks/train_step.py --batch 8 --size 224 --steps 5
  python benchmarks/train_step.py --device gpu --batch 64   # torch on cuda when available
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcv import models

LR, MOMENTUM = 0.1, 0.9


def import_torchvision():
  """`(torch, torchvision)`, or `(None, None)` when torch is not installed.

  Uses the workplace's `shared/tools/torchvision_cpu.py` next to the repository when present
  (its torchvision wheel's C++ ops do not load with a CPU torch), else plain torchvision.
  """
  try:
    import torch
  except ImportError:
    return None, None
  tools = Path(__file__).resolve().parents[2] / "shared" / "tools"
  if (tools / "torchvision_cpu.py").is_file():
    sys.path.insert(0, str(tools))
    from torchvision_cpu import torchvision
  else:
    import torchvision
  return torch, torchvision


def time_steps(step, warmup: int, steps: int) -> list[float]:
  """Seconds of each timed `step()` (which must block until its work is done) after warm-up."""
  for _ in range(warmup):
    step()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return times


def jaxcv_step_times(args, images: np.ndarray, labels: np.ndarray) -> list[float]:
  device = jax.devices(args.device)[0] if args.device != "auto" else jax.devices()[0]
  model = models.create("resnet50", num_classes=1000)
  x = jax.device_put(jnp.asarray(images.transpose(0, 2, 3, 1)), device)  # NCHW -> NHWC
  y = jax.device_put(jnp.asarray(labels), device)
  # rbg keys: XLA:CPU compiles the threefry PRNG of a big init very slowly. Runs where x is.
  variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
  tx = optax.sgd(LR, momentum=MOMENTUM)
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

  @jax.jit
  def train_step(state, x, y):
    params, batch_stats, opt_state = state

    def loss_fn(params):
      (logits, _), updates = model.apply({"params": params, "batch_stats": batch_stats}, x,
                                         train=True, mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  def step():
    nonlocal state
    state, loss = train_step(state, x, y)
    jax.block_until_ready((state, loss))

  print(f"jaxcv on {device.platform}: compiling and warming up ...", flush=True)
  return time_steps(step, args.warmup, args.steps)


def torch_step_times(args, torch, torchvision, images: np.ndarray,
                     labels: np.ndarray) -> list[float]:
  use_cuda = args.device in ("auto", "gpu", "cuda") and torch.cuda.is_available()
  device = torch.device("cuda" if use_cuda else "cpu")
  model = torchvision.models.resnet50(weights=None, num_classes=1000).to(device).train()
  opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
  x = torch.from_numpy(images).to(device)
  y = torch.from_numpy(labels.astype(np.int64)).to(device)

  def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    if use_cuda:
      torch.cuda.synchronize()

  print(f"torch on {device.type} ({torch.get_num_threads()} threads): warming up ...",
        flush=True)
  return time_steps(step, args.warmup, args.steps)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"],
                      help="auto: jax's default backend, torch on cuda when available")
  args = parser.parse_args()

  rng = np.random.default_rng(0)
  images = rng.uniform(size=(args.batch, 3, args.size, args.size)).astype(np.float32)
  labels = rng.integers(0, 1000, size=(args.batch,)).astype(np.int32)
  print(f"ResNet-50 train step, batch {args.batch}, {args.size}x{args.size}, SGD momentum, "
        f"softmax CE; median of {args.steps} steps after {args.warmup} warm-up")

  results = {"jaxcv": jaxcv_step_times(args, images, labels)}
  torch, torchvision = import_torchvision()
  if torch is None:
    print("torch is not installed: torch side skipped")
  else:
    results["torch"] = torch_step_times(args, torch, torchvision, images, labels)
  median = {name: statistics.median(times) for name, times in results.items()}
  for name, times in results.items():
    print(f"{name:6s} {median[name] * 1e3:9.1f} ms/step (min {min(times) * 1e3:.1f}, "
          f"max {max(times) * 1e3:.1f})  {args.batch / median[name]:8.1f} images/s")
  if "torch" in median:
    print(f"ratio jaxcv/torch step time (medians): {median['jaxcv'] / median['torch']:.2f}")


if __name__ == "__main__":
  main()
