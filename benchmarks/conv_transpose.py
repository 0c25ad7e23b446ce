"""Strided transposed convolution (FCN's up-convolutions) on this machine's backend: jaxcv's
`conv_transpose` (on CPU one matmul plus an overlap-add) against XLA's input-dilated
convolution (what `lax` gives, and jaxcv's path on GPU/TPU) and, when torch is installed,
`F.conv_transpose2d`, all measured in this run; outputs asserted equal.

  python benchmarks/conv_transpose.py [--repeats 5]

Prints the forward and forward+backward times in ms per case and the ratios XLA / jaxcv and
torch / jaxcv (above 1: jaxcv is faster).
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

from train_step import import_torchvision, time_steps  # noqa: E402 - benchmarks/ on the path

from jaxcv.layers import conv_transpose  # noqa: E402

# [B, H, W, C], kernel, stride: FCN-32s/16s/8s's upsampling of a 21-class score map (torchvision
# FCN heads at 512x512: a 16x16 map for stride 32) and a 2x up-convolution of a wider map.
CASES = [((2, 16, 16, 21), 64, 32), ((2, 16, 16, 21), 32, 16), ((2, 32, 32, 21), 16, 8),
         ((8, 32, 32, 64), 4, 2)]


def xla_conv_transpose(x, kernel, s):
  """The same transposed convolution (padding 0) as XLA's input-dilated convolution."""
  k = kernel.shape[0]
  return lax.conv_general_dilated(
      x, kernel[::-1, ::-1], (1, 1), [(k - 1, k - 1)] * 2, lhs_dilation=(s, s),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def ms(fn, repeats):
  return statistics.median(time_steps(fn, 1, repeats)) * 1e3


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--repeats", type=int, default=5)
  args = ap.parse_args()
  torch, _ = import_torchvision()
  if torch is not None:
    torch.set_num_threads(os.cpu_count() or 1)
  rng = np.random.default_rng(0)
  print(f"backend {jax.default_backend()}; ms forward / forward+backward")
  for shape, k, s in CASES:
    x = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(k, k, shape[-1], shape[-1])).astype(np.float32) / k)
    ours = jax.jit(lambda x, w, s=s: conv_transpose(x, w, stride=s))
    xla = jax.jit(lambda x, w, s=s: xla_conv_transpose(x, w, s))
    ours_g = jax.jit(jax.grad(lambda x, w, s=s: conv_transpose(x, w, stride=s).sum(), (0, 1)))
    xla_g = jax.jit(jax.grad(lambda x, w, s=s: xla_conv_transpose(x, w, s).sum(), (0, 1)))
    y = np.asarray(ours(x, w))
    np.testing.assert_allclose(y, np.asarray(xla(x, w)), rtol=1e-4, atol=1e-4 * np.abs(y).max())
    t = {"jaxcv": (ms(lambda: jax.block_until_ready(ours(x, w)), args.repeats),
                   ms(lambda: jax.block_until_ready(ours_g(x, w)), args.repeats)),
         "xla": (ms(lambda: jax.block_until_ready(xla(x, w)), args.repeats),
                 ms(lambda: jax.block_until_ready(xla_g(x, w)), args.repeats))}
    if torch is not None:
      xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_()
      wt = torch.from_numpy(np.asarray(w).transpose(2, 3, 0, 1).copy()).requires_grad_()
      f = lambda: torch.nn.functional.conv_transpose2d(xt, wt, stride=s)
      yt = f().detach().numpy().transpose(0, 2, 3, 1)
      np.testing.assert_allclose(y, yt, rtol=1e-4, atol=1e-4 * np.abs(y).max())

      def fb():
        xt.grad = wt.grad = None
        f().sum().backward()
      with torch.no_grad():
        fwd = ms(f, args.repeats)
      t["torch"] = (fwd, ms(fb, args.repeats))
    line = "  ".join(f"{name} {a:8.2f} / {b:8.2f}" for name, (a, b) in t.items())
    ratios = "  ".join(f"{name}/jaxcv {t[name][0] / t['jaxcv'][0]:6.2f} / "
                       f"{t[name][1] / t['jaxcv'][1]:6.2f}" for name in t if name != "jaxcv")
    print(f"{str(list(shape)):16s} k={k:2d} s={s:2d}  {line}  |  {ratios}")


if __name__ == "__main__":
  main()
