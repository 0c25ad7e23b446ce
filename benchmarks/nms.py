"""NMS speed: jaxcv.ops.nms against TensorFlow's CPU kernels on the same boxes, results asserted
identical.

Run: `python benchmarks/nms.py` (add `--repeats N` for more timed calls).

Cases (fixed seed 0):
- single class, N = 1,000 and 5,000 boxes: `jaxcv.ops.nms` vs `tf.image.non_max_suppression`,
  IoU threshold 0.5, max_output_size = N (every kept box is returned; the greedy runs to the
  end of the list).
- 8 images x 1,000 boxes x 80 classes: `jax.vmap(multiclass_nms)` vs
  `tf.image.combined_non_max_suppression` (score threshold 0.05, IoU 0.5, 100 per class,
  100 per image, boxes shared by all classes, clip_boxes=False).

Single-class boxes come in two kinds: "clustered" (below; ~100 kept) and "spread" (uniform
centres in the image, sizes 10 to 60 px; most boxes are kept, which is TF's slow case since its
cost grows with N x kept). Multi-class boxes are clustered. Clustered boxes lie around 30
object centres per image (640 x 480 image, object sizes 20 to 200 px, each box's centre jittered by up to 15 % and its width/height scaled by 0.7 to 1.4, so
most boxes overlap some others strongly). Single-class scores are uniform in [0, 1).
Multi-class scores look like a detector's sigmoid outputs: each object centre has a class;
a box's score for its object's class is uniform in [0.05, 1), every other class gets
sigmoid(N(-5, 1.5)) (about 8.5 % of them above 0.05), so ~7,800 (box, class) candidates pass
the score threshold per image.

The machine may be shared: compare TF/jaxcv ratios from one run, not times across runs.
Times: steady-state calls (after a warm-up call), each ended with `block_until_ready` (JAX) or
`.numpy()` (TF), median of `--repeats`; compile time (jaxcv's first call minus a steady call)
is reported separately. On a machine with CUDA torch, `torchvision.ops.batched_nms` on the GPU
is timed as well (skipped otherwise).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.ops.nms import multiclass_nms, nms

IOU = 0.5
SCORE_THRESHOLD = 0.05


def clustered_boxes(rng, n, num_objects=30, width=640, height=480):
  """float32 [n, 4] (x1, y1, x2, y2) around `num_objects` centres, and each box's object."""
  centres = rng.uniform([0, 0], [width, height], (num_objects, 2))
  sizes = rng.uniform(20, 200, (num_objects, 2))
  obj = rng.integers(0, num_objects, n)
  size = sizes[obj] * rng.uniform(0.7, 1.4, (n, 2))
  centre = centres[obj] + rng.uniform(-0.15, 0.15, (n, 2)) * sizes[obj]
  boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
  return boxes.astype(np.float32), obj


def spread_boxes(rng, n, width=640, height=480):
  """float32 [n, 4] with uniform centres and sizes 10 to 60 px: few overlaps, most kept."""
  centre = rng.uniform([0, 0], [width, height], (n, 2))
  size = rng.uniform(10, 60, (n, 2))
  return np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)


def multiclass_case(rng, images, n, classes, num_objects=30):
  boxes, scores = [], []
  for _ in range(images):
    b, obj = clustered_boxes(rng, n, num_objects)
    object_class = rng.integers(0, classes, num_objects)
    s = 1 / (1 + np.exp(-rng.normal(-5, 1.5, (n, classes))))
    s[np.arange(n), object_class[obj]] = rng.uniform(0.05, 1, n)
    boxes.append(b)
    scores.append(s.astype(np.float32))
  return np.stack(boxes), np.stack(scores)


def to_tf(boxes):
  return boxes[..., [1, 0, 3, 2]]  # TF takes (y1, x1, y2, x2)


def timed(fn, repeats):
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times)) * 1e3


def compile_time(jitted, *args):
  t = time.perf_counter()
  jax.block_until_ready(jitted(*args))
  return (time.perf_counter() - t) * 1e3


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  import tensorflow as tf

  rng = np.random.default_rng(0)
  rows = []
  exact = []

  for kind, n in [("clustered", 1000), ("clustered", 5000), ("spread", 1000), ("spread", 5000)]:
    boxes = clustered_boxes(rng, n)[0] if kind == "clustered" else spread_boxes(rng, n)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    f = jax.jit(lambda b, s, n=n: nms(b, s, IOU, n))
    jb, js = jnp.asarray(boxes), jnp.asarray(scores)
    first = compile_time(f, jb, js)
    idx, ok = f(jb, js)
    ours = np.asarray(idx)[np.asarray(ok)]
    tb, ts = tf.constant(to_tf(boxes)), tf.constant(scores)
    theirs = tf.image.non_max_suppression(tb, ts, n, iou_threshold=IOU).numpy()
    same = np.array_equal(ours, theirs)
    exact.append((f"nms {kind} N={n}", same, f"{len(ours)} kept"))
    t_jax = timed(lambda f=f, jb=jb, js=js: jax.block_until_ready(f(jb, js)), args.repeats)
    t_tf = timed(lambda tb=tb, ts=ts, n=n: tf.image.non_max_suppression(
        tb, ts, n, iou_threshold=IOU).numpy(), args.repeats)
    rows.append((f"nms 1 class, {kind}, N={n}", t_jax, t_tf, first - t_jax))

  images, n, classes = 8, 1000, 80
  boxes, scores = multiclass_case(rng, images, n, classes)
  f = jax.jit(jax.vmap(lambda b, s: multiclass_nms(b, s, SCORE_THRESHOLD, IOU, 100, 100)))
  jb, js = jnp.asarray(boxes), jnp.asarray(scores)
  first = compile_time(f, jb, js)
  ob, os_, oc, ov = (np.asarray(x) for x in f(jb, js))
  tb, ts = tf.constant(to_tf(boxes)[:, :, None, :]), tf.constant(scores)

  def tf_call():
    return [x.numpy() for x in tf.image.combined_non_max_suppression(
        tb, ts, 100, 100, iou_threshold=IOU, score_threshold=SCORE_THRESHOLD,
        clip_boxes=False)]

  rb, rs, rc, rn = tf_call()
  same = (np.array_equal(ov.sum(1), rn) and np.array_equal(os_, rs)
          and np.array_equal(oc, rc.astype(np.int32)) and np.array_equal(to_tf(ob), rb))
  cands = int((scores > SCORE_THRESHOLD).sum())
  exact.append((f"multiclass {images}x{n}x{classes}", same,
                f"{int(rn.sum())} kept of {cands} candidates"))
  t_jax = timed(lambda: jax.block_until_ready(f(jb, js)), args.repeats)
  t_tf = timed(tf_call, args.repeats)
  rows.append((f"multiclass {images} img x {n} x {classes} cls", t_jax, t_tf, first - t_jax))

  print(f"jax {jax.__version__} ({jax.default_backend()}), tensorflow {tf.__version__}, "
        f"{os.cpu_count()} CPUs, median of {args.repeats}")
  print(f"{'case':36s} {'jaxcv ms':>9s} {'TF ms':>9s} {'TF/jaxcv':>9s} {'compile ms':>11s}")
  for name, tj, tt, tc in rows:
    print(f"{name:36s} {tj:9.2f} {tt:9.2f} {tt / tj:9.2f} {tc:11.0f}")
  print("exactness (kept sets identical to TF):")
  for name, ok, note in exact:
    print(f"  {name:34s} {'IDENTICAL' if ok else 'MISMATCH'} ({note})")
  assert all(ok for _, ok, _ in exact), "jaxcv and TF kept different boxes"

  try:
    import torch
    import torchvision
    cuda = torch.cuda.is_available()
  except Exception:  # noqa: BLE001  no torch, or a torchvision whose ops do not load
    cuda = False
  if cuda:
    dev = torch.device("cuda")
    flat_b = torch.tensor(boxes.reshape(-1, 4), device=dev).repeat_interleave(classes, 0)
    flat_s = torch.tensor(scores.reshape(-1), device=dev)
    idx = (torch.arange(images, device=dev).repeat_interleave(n * classes) * classes
           + torch.arange(classes, device=dev).repeat(images * n))
    keep = flat_s > SCORE_THRESHOLD
    fb, fs, fi = flat_b[keep], flat_s[keep], idx[keep]

    def torch_call():
      torchvision.ops.batched_nms(fb, fs, fi, IOU)
      torch.cuda.synchronize()

    print(f"torchvision.ops.batched_nms on CUDA ({fb.shape[0]} candidates, all images as "
          f"one call): {timed(torch_call, args.repeats):.2f} ms")
  else:
    print("torchvision on CUDA: skipped (no CUDA torch)")


if __name__ == "__main__":
  main()
