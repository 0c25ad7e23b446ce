"""Benchmark: jaxcv `roi_align` (jit, steady state) vs `torchvision.ops.roi_align` on the CPU.

Cases: Faster R-CNN box head (features [2, 200, 272, 256] = stride 4 of an 800 x 1088 batch,
1000 RoIs, 7 x 7, sampling_ratio 2) and the Mask R-CNN mask head (same, 14 x 14). Boxes lie
inside the image, where torchvision's C++ kernel and its pure-Python fallback agree.

torchvision is imported through the workplace's shared/tools/torchvision_cpu.py when present:
where torchvision's C++ ops do not load, `torchvision.ops.roi_align` is then its pure-Python
`_roi_align` (torch.compile'd on first call), NOT the C++ kernel, and the output says so.

Run: python benchmarks/roi_align.py [--repeats 5] [--rois 1000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jaxcv.ops import roi

SHARED_TOOLS = Path(__file__).resolve().parents[2] / "shared" / "tools"


def load_torchvision():
  import torch
  if (SHARED_TOOLS / "torchvision_cpu.py").is_file():
    sys.path.insert(0, str(SHARED_TOOLS))
    from torchvision_cpu import PATCHED, torchvision
  else:
    import torchvision
    PATCHED = False
  return torch, torchvision, PATCHED


def timed(fn, repeats):
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times), min(times), max(times)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--rois", type=int, default=1000)
  args = parser.parse_args()
  torch, torchvision, patched = load_torchvision()
  impl = ("torchvision's pure-Python _roi_align (C++ ops not loadable here)" if patched
          else "torchvision's C++ kernel")
  print(f"jax {jax.__version__} on {jax.default_backend()}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); reference: {impl}")
  rng = np.random.default_rng(0)
  b, h, w, c = 2, 200, 272, 256
  feats = rng.normal(size=(b, h, w, c)).astype(np.float32)
  k = args.rois
  xy = rng.uniform(0, [1088 - 16, 800 - 16], (k, 2))
  wh = np.exp(rng.uniform(np.log(16), np.log(600), (k, 2)))
  boxes = np.concatenate([xy, np.minimum(xy + wh, [1087, 799])], 1).astype(np.float32)
  idx = rng.integers(0, b, k).astype(np.int32)
  feats_j, boxes_j, idx_j = jax.device_put((feats, boxes, idx))
  x_t = torch.tensor(feats.transpose(0, 3, 1, 2)).contiguous()
  rois_t = torch.tensor(np.concatenate([idx[:, None].astype(np.float32), boxes], 1))
  for name, out in (("Faster R-CNN box head 7x7", 7), ("Mask R-CNN mask head 14x14", 14)):
    fn = jax.jit(lambda f, bx, i, out=out: roi.roi_align(f, bx, i, out, 0.25, 2))
    t = time.perf_counter()
    compiled = fn.lower(feats_j, boxes_j, idx_j).compile()
    compile_s = time.perf_counter() - t
    ours = np.asarray(compiled(feats_j, boxes_j, idx_j))
    med, lo, hi = timed(lambda c=compiled: c(feats_j, boxes_j, idx_j).block_until_ready(),
                        args.repeats)
    with torch.no_grad():
      t = time.perf_counter()
      ref = torchvision.ops.roi_align(x_t, rois_t, out, 0.25, 2, False)  # first call
      first_s = time.perf_counter() - t
      tmed, tlo, thi = timed(lambda out=out: torchvision.ops.roi_align(x_t, rois_t, out, 0.25, 2,
                                                                       False), args.repeats)
    err = float(np.abs(ours - ref.numpy().transpose(0, 2, 3, 1)).max())
    print(f"{name}: features {feats.shape} NHWC, {k} RoIs, sampling_ratio 2")
    print(f"  jaxcv        {med * 1e3:9.1f} ms median (min {lo * 1e3:.1f}, max {hi * 1e3:.1f}); "
          f"compile {compile_s:.2f} s")
    print(f"  torchvision  {tmed * 1e3:9.1f} ms median (min {tlo * 1e3:.1f}, max "
          f"{thi * 1e3:.1f}); first call {first_s:.2f} s")
    print(f"  torchvision / jaxcv time ratio {tmed / med:.2f}; max abs diff {err:.2e}")
    # Sample coordinates reach 272 px, where a float32 ulp is 3e-5 px, and the pure-Python
    # fallback orders the offset arithmetic differently from the kernel ((i + .5) * (bin / g)
    # vs (i + .5) * bin / g): differences of a few 1e-5 px times feature slopes of O(1).
    assert err <= 1e-3, err


if __name__ == "__main__":
  main()
