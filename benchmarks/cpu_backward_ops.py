"""Where jaxcv's ResNet-50 step loses to torch on CPU: forward vs backward, op by op.

  python benchmarks/cpu_backward_ops.py

Prints the ResNet-50 (batch 8, 224x224) forward and forward+backward times of jaxcv and of
torchvision's model in torch, measured in the same run, then the forward and gradient times
of the single ops ResNet-50 is made of (XLA on this machine's default backend).
"""
from __future__ import annotations

import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from train_step import import_torchvision  # benchmarks/ is the script's directory

from jaxcv import models
from jaxcv.layers import conv as jaxcv_conv


def median_ms(fn, *args, repeats: int = 3) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3


def conv(stride: int, pad: int):
  return lambda x, k: jax.lax.conv_general_dilated(
      x, k, (stride, stride), ((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()


def main() -> None:
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(8, 224, 224, 3)).astype(np.float32))
  model = models.create("resnet50")
  variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False)[0])

  def loss(params, x):
    return model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x)[0].sum()

  grad = jax.jit(jax.grad(loss))
  print(f"jaxcv resnet50 forward          {median_ms(forward, variables, x):8.1f} ms")
  print(f"jaxcv resnet50 forward+backward {median_ms(grad, variables['params'], x):8.1f} ms")
  torch, torchvision = import_torchvision()
  if torch is not None:
    torch.set_num_threads(2)
    net = torchvision.models.resnet50().eval()
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())

    def torch_ms(fn):
      fn()
      times = []
      for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
      return statistics.median(times) * 1e3

    with torch.no_grad():
      print(f"torch resnet50 forward          {torch_ms(lambda: net(xt)):8.1f} ms")

    def fwd_bwd():
      net.zero_grad()
      net(xt).sum().backward()
    print(f"torch resnet50 forward+backward {torch_ms(fwd_bwd):8.1f} ms")

  print("single ops (batch 8), forward / gradient:")
  pool = lambda x: nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1))).sum()
  a = jnp.ones((8, 112, 112, 64))
  print(f"  max pool 3x3/2 at 112x112x64   {median_ms(jax.jit(pool), a):7.1f} / "
        f"{median_ms(jax.jit(jax.grad(pool)), a):7.1f} ms")
  cases = [("stem conv 7x7/2, 3->64 at 224", (8, 224, 224, 3), (7, 7, 3, 64), 2, 3),
           ("conv 3x3/1, 64->64 at 56", (8, 56, 56, 64), (3, 3, 64, 64), 1, 1),
           ("conv 3x3/2, 128->128 at 56", (8, 56, 56, 128), (3, 3, 128, 128), 2, 1),
           ("conv 1x1/1, 256->64 at 56", (8, 56, 56, 256), (1, 1, 256, 64), 1, 0)]
  for name, xs, ks, stride, pad in cases:
    f = conv(stride, pad)
    xi, k = jnp.ones(xs), jnp.full(ks, 0.01)
    print(f"  {name:31s}{median_ms(jax.jit(f), xi, k):7.1f} / dx "
          f"{median_ms(jax.jit(jax.grad(f, 0)), xi, k):7.1f} / dkernel "
          f"{median_ms(jax.jit(jax.grad(f, 1)), xi, k):7.1f} ms")
  # jaxcv's 1x1 path (`jaxcv.layers.conv`): XLA's forward and input gradient, a matmul for the
  # kernel gradient on CPU
  f = lambda x, k: jaxcv_conv.conv_general_dilated(
      x, k, (1, 1), ((0, 0), (0, 0)), dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
  xi, k = jnp.ones((8, 56, 56, 256)), jnp.full((1, 1, 256, 64), 0.01)
  print(f"  {'jaxcv conv 1x1/1, 256->64 at 56':31s}{median_ms(jax.jit(f), xi, k):7.1f} / dx "
        f"{median_ms(jax.jit(jax.grad(f, 0)), xi, k):7.1f} / dkernel "
        f"{median_ms(jax.jit(jax.grad(f, 1)), xi, k):7.1f} ms")


if __name__ == "__main__":
  main()
