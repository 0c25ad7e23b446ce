"""Depthwise 3x3 convolution (DeepLabv3+'s atrous separable convs) on this machine's backend:
jaxcv's `conv_general_dilated` (shifted sums with a hand-written gradient on CPU) against
XLA's grouped convolution (`lax.conv_general_dilated`, feature_group_count = C) and, when
torch is installed, torch's `F.conv2d(groups=C)`, all measured in this run.

  python benchmarks/depthwise_conv.py [--repeats 10]

Prints, per shape, the forward and forward+backward (gradients of input and kernel) times in
ms and the ratios XLA / jaxcv and torch / jaxcv (above 1: jaxcv is faster).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "")  # one device, as a user's run
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from train_step import time_steps  # noqa: E402 - benchmarks/ is the script's directory

from jaxcv.layers import conv as jaxcv_conv  # noqa: E402

# [B, H, W, C], dilation: the decoder's separable convs of deeplabv3plus_shapes (128x128 input,
# stride-4 map, 176 and 128 channels) and ASPP branches at output stride 16 and 8.
CASES = [((8, 32, 32, 176), 1), ((8, 32, 32, 128), 1), ((8, 8, 8, 64), 2),
         ((8, 16, 16, 64), 4), ((8, 64, 64, 64), 1)]


def timed_ms(fn, repeats: int) -> float:
  """Median ms of `fn()` (which blocks until done) after one warm-up call."""
  return statistics.median(time_steps(fn, 1, repeats)) * 1e3


def jax_times(conv, x, k, d, repeats):
  c = x.shape[-1]

  def f(x, k):
    return conv(x, k, (1, 1), ((d, d), (d, d)), rhs_dilation=(d, d),
                dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)

  w = jnp.asarray(np.random.default_rng(1).normal(size=x.shape).astype(np.float32))
  fwd = jax.jit(f)
  grad = jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k) * w), (0, 1)))
  return (timed_ms(lambda: jax.block_until_ready(fwd(x, k)), repeats),
          timed_ms(lambda: jax.block_until_ready(grad(x, k)), repeats), fwd(x, k))


def torch_times(x, k, d, repeats):
  try:
    import torch  # noqa: PLC0415 - optional reference
  except ImportError:
    return None
  torch.set_num_threads(os.cpu_count() or 1)
  xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_(True)
  kt = torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy()).requires_grad_(True)
  w = torch.from_numpy(np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
                       .transpose(0, 3, 1, 2).copy())
  c = x.shape[-1]
  conv = lambda: torch.nn.functional.conv2d(xt, kt, padding=d, dilation=d, groups=c)
  with torch.no_grad():
    fwd = timed_ms(conv, repeats)
    y = conv().numpy().transpose(0, 2, 3, 1)

  def step():
    xt.grad = kt.grad = None
    (conv() * w).sum().backward()
  return fwd, timed_ms(step, repeats), y


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--repeats", type=int, default=10)
  a = p.parse_args()
  rng = np.random.default_rng(0)
  print(f"backend {jax.default_backend()}, {os.cpu_count()} CPUs, jax {jax.__version__}")
  for shape, d in CASES:
    x = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    k = jnp.asarray(rng.normal(size=(3, 3, 1, shape[-1])).astype(np.float32))
    ours = jax_times(jaxcv_conv.conv_general_dilated, x, k, d, a.repeats)
    xla = jax_times(lax.conv_general_dilated, x, k, d, a.repeats)
    err = float(jnp.abs(ours[2] - xla[2]).max())
    line = (f"{str(shape):18s} dil {d}: jaxcv {ours[0]:7.2f} / {ours[1]:7.2f} ms, "
            f"XLA grouped {xla[0]:7.2f} / {xla[1]:7.2f} ms (ratio {xla[0] / ours[0]:5.1f} / "
            f"{xla[1] / ours[1]:4.1f})")
    ref = torch_times(x, k, d, a.repeats)
    if ref is not None:
      err = max(err, float(np.abs(np.asarray(ours[2]) - ref[2]).max()))
      line += (f", torch {ref[0]:7.2f} / {ref[1]:7.2f} ms (ratio {ref[0] / ours[0]:5.1f} / "
               f"{ref[1] / ours[1]:4.1f})")
    print(line + f"; max abs diff {err:.1e}", flush=True)
  print("times: forward / forward+backward (input and kernel gradients); ratio = other / jaxcv")


if __name__ == "__main__":
  main()
