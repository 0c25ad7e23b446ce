"""Mask R-CNN / Keypoint R-CNN / Panoptic FPN on the CPU: compile time and step time of each
shapes config's train step, and the peak host memory of a Mask R-CNN R50-FPN train step at
800x800 (batch 2) and of its predict with 100 masks pasted at full resolution.

    python benchmarks/instance_step.py [--skip-memory] [--steps 5]

Each measurement runs in its own subprocess (peak RSS is per process: `ru_maxrss`); the
numbers go to BENCHMARKS.md with the machine and the date. Random weights (no pretrained
ones here); the memory figures do not depend on the values.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child_step(name: str, steps: int) -> dict:
  import jax

  sys.path.insert(0, str(REPO))
  sys.path.insert(0, str(REPO / "tests"))
  from conftest import load_config  # noqa: PLC0415
  from jaxcv.train.loop import Trainer  # noqa: PLC0415

  c = load_config(name, progress_bar=False, **{"mesh.shape": {"data": 1}})
  t = Trainer(c)
  state = t.new_state()
  it = iter(t.batches(0))
  batch = next(it)
  t0 = time.perf_counter()
  compiled = t.train_step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  state, m = compiled(state, batch)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, m = compiled(state, next(it))
  jax.block_until_ready(m)
  return {"config": name, "compile_s": compile_s,
          "step_s": (time.perf_counter() - t0) / steps, "batch": int(c.batch_size)}


def _child_memory(what: str) -> dict:
  import resource

  import jax
  import jax.numpy as jnp
  import numpy as np

  import jaxcv.models as models  # noqa: PLC0415
  from jaxcv.models.detection.meta_arch.mask_rcnn import paste_masks  # noqa: PLC0415

  model = models.create("maskrcnn_resnet50_fpn", num_classes=90)
  b, s, m = 2, 800, 20
  x = jnp.asarray(np.random.default_rng(0).normal(size=(b, s, s, 3)), jnp.float32)
  variables = jax.jit(model.init)({"params": jax.random.key(0)}, x[:1, :64, :64])
  rng = np.random.default_rng(1)
  xy = rng.uniform(0, 600, (b, m, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(20, 200, (b, m, 2))], -1).astype(np.float32)
  masks = np.zeros((b, m, s, s), bool)
  for i in range(b):
    for j in range(m):
      x1, y1, x2, y2 = boxes[i, j].astype(int)
      masks[i, j, y1:y2, x1:x2] = True
  targets = {"boxes": jnp.asarray(boxes), "classes": jnp.asarray(rng.integers(1, 91, (b, m))),
             "box_valid": jnp.ones((b, m), bool), "masks": jnp.asarray(masks)}
  t0 = time.perf_counter()
  if what == "train":
    def loss(p):
      losses, _ = model.apply({**variables, "params": p}, x, None, targets, train=True,
                              rngs={"sample": jax.random.key(2)})
      return sum(losses.values())
    out = jax.jit(jax.grad(loss))(variables["params"])
  else:  # predict: 100 detections (score threshold 0: random weights keep few otherwise)
    m2 = model.clone(box_score_thresh=0.0)

    def predict(v, x):
      dets, _ = m2.apply(v, x)
      return paste_masks(dets, x.shape[1:3])
    out = jax.jit(predict)(variables, x)
  jax.block_until_ready(out)
  wall = time.perf_counter() - t0
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
  return {"what": what, "peak_rss_gib": round(peak, 2), "wall_s_incl_compile": round(wall, 1),
          "image": f"{s}x{s}", "batch": b, "gt_objects": m}


def _run(args: list[str]) -> dict:
  out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                       check=False)
  if out.returncode:
    raise RuntimeError(out.stderr[-3000:])
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--skip-memory", action="store_true")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--child", nargs="*")
  a = p.parse_args()
  if a.child:
    kind, arg = a.child
    print(json.dumps(_child_step(arg, a.steps) if kind == "step" else _child_memory(arg)))
    return
  for name in ("fasterrcnn_shapes", "maskrcnn_shapes", "keypointrcnn_shapes",
               "panopticfpn_shapes"):
    r = _run(["--child", "step", name, "--steps", str(a.steps)])
    print(f"{r['config']:22s} compile {r['compile_s']:6.1f} s  step {r['step_s']:.3f} s "
          f"(batch {r['batch']})", flush=True)
  if not a.skip_memory:
    for what in ("train", "predict"):
      r = _run(["--child", "memory", what])
      print(f"maskrcnn_resnet50_fpn {what} at {r['image']} batch {r['batch']}: peak RSS "
            f"{r['peak_rss_gib']} GiB ({r['wall_s_incl_compile']} s incl. compile)", flush=True)


if __name__ == "__main__":
  main()
