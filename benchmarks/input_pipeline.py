"""Input pipeline throughput, and the share of training time spent waiting for data.

1. Images per second of the host pipeline (read or generate `shapes`, sanitise, detection
   augmentation: random flip, scale jitter to a fixed size, SSD photometric distortion; pad
   to max_boxes; batch) with every object label (boxes, masks, keypoints) at 256x256 and
   512x512, for 1 and 2 worker threads, from the generator and (with --tfds) from the
   ArrayRecord files of the tfds builder.
2. The share of training time spent waiting for data, in short runs of the configs named, two
   ways: `data_wait` (the share of wall time the loop spent in `next(batches)`, as the loop
   logs it) and `share_from_speed` = 1 - (steps/s with the real pipeline) / (steps/s when
   every step gets one batch already on the device), both measured in this run.

Run: `python benchmarks/input_pipeline.py [--tfds] [--batches 8] [--skip-rates]
[--configs lenet_digits unet_shapes] [--steps 400] [--readers threads grain]`
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# one CPU device, as a user's run (the tests' conftest, imported below, would make 8)
os.environ.setdefault("XLA_FLAGS", "")

import jax
import numpy as np
from jax.sharding import Mesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jaxcv.data as data_lib  # noqa: E402
from jaxcv.data import augment, shapes  # noqa: E402
from jaxcv.train import input_pipeline  # noqa: E402

DETECTION_KEYS = ("boxes", "classes", "iscrowd", "area", "masks", "keypoints")


def pipeline_rate(size: int, workers: int, batches: int, batch_size: int, source: str,
                  data_dir: str | None) -> float:
  ds = data_lib.load("shapes", "train", image_size=size, keys=DETECTION_KEYS, max_boxes=16,
                     source=source, data_dir=data_dir,
                     split_sizes={"train": batch_size * (batches + 2)})
  ds.transform = augment.build([
      ("random_hflip", {"flip_pairs": shapes.KEYPOINT_FLIP_PAIRS}),
      ("random_scale_jitter", {"min_scale": 0.5, "max_scale": 1.5, "output_size": size}),
      ("photometric_distort", {}),
  ])
  mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))
  it = input_pipeline.TrainBatches(ds, batch_size, 0, 0, mesh, prefetch=2 * workers,
                                   workers=workers)
  jax.block_until_ready(next(it))  # warm-up
  t = time.perf_counter()
  for _ in range(batches):
    jax.block_until_ready(next(it))
  rate = batches * batch_size / (time.perf_counter() - t)
  it.close()
  return rate


class _OneBatch:
  """Stands in for `TrainBatches`: the same device batch every step (data costs nothing)."""

  def __init__(self, real):
    self.batch = jax.block_until_ready(next(real))
    real.close()

  def __next__(self):
    return self.batch

  def close(self):
    pass


def data_wait(config_name: str, steps: int, reader: str, fixed: bool) -> dict[str, float]:
  """A short run of `config_name`: mean `data_wait` and `steps_per_s` after the first log
  interval (which holds compilation), and the wall time. With `fixed`, every step gets the
  first batch again, already on the device: the speed of the loop with free data."""
  from conftest import load_config  # noqa: PLC0415 - tests/ is on sys.path below
  from jaxcv.train import loop  # noqa: PLC0415
  from jaxcv.train.metrics_writer import read_metrics  # noqa: PLC0415

  cfg = load_config(config_name, num_steps=steps, eval_every=steps, checkpoint_every=steps,
                    log_every=max(steps // 6, 1), progress_bar=False, data_reader=reader,
                    **{"mesh.shape": {"data": 1}})
  real_batches = loop.Trainer.batches
  if fixed:
    loop.Trainer.batches = lambda self, start: _OneBatch(real_batches(self, start))
  try:
    with tempfile.TemporaryDirectory() as d:
      t = time.perf_counter()
      loop.train_and_evaluate(cfg, d)
      wall = time.perf_counter() - t
      rows = [m for m in read_metrics(d, train=True) if "data_wait" in m]
  finally:
    loop.Trainer.batches = real_batches
  # the last interval also holds the final evaluation: only the ones between are kept
  steady = rows[1:-1] if len(rows) > 2 else rows
  return {"data_wait": float(np.mean([m["data_wait"] for m in steady])),
          "steps_per_s": float(np.median([m["steps_per_s"] for m in steady])),
          "wall_s": wall}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batches", type=int, default=8)
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--tfds", action="store_true", help="also read from the tfds ArrayRecords")
  p.add_argument("--configs", nargs="*", default=["lenet_digits"])
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--skip-rates", action="store_true", help="only the data_wait runs")
  p.add_argument("--readers", nargs="*", default=["threads", "grain"])
  a = p.parse_args()
  rows = []
  with tempfile.TemporaryDirectory() as data_dir:
    sources = ["generate"] + (["tfds"] if a.tfds else [])
    for size in () if a.skip_rates else (256, 512):
      for source in sources:
        for workers in (1, 2):
          r = pipeline_rate(size, workers, a.batches, a.batch_size, source, data_dir)
          rows.append({"size": size, "source": source, "workers": workers,
                       "images_per_s": round(r, 1)})
          print(json.dumps(rows[-1]), flush=True)
  sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
  for name in a.configs:
    free = data_wait(name, a.steps, "threads", fixed=True)
    print(json.dumps({"config": name, "fixed_batch_steps_per_s": round(free["steps_per_s"], 2)}),
          flush=True)
    for reader in a.readers:
      r = data_wait(name, a.steps, reader, fixed=False)
      # the share of the training time that the data pipeline adds, from the loop's speed
      # with real batches against its speed when data costs nothing (same run of the script)
      slowdown = 1 - r["steps_per_s"] / free["steps_per_s"]
      print(json.dumps({"config": name, "reader": reader, "steps": a.steps,
                        "data_wait": round(r["data_wait"], 4),
                        "steps_per_s": round(r["steps_per_s"], 2),
                        "share_from_speed": round(slowdown, 4),
                        "wall_s": round(r["wall_s"], 1)}), flush=True)
  print(f"host: {os.cpu_count()} CPUs, jax {jax.__version__}, {jax.devices()[0].platform}")


if __name__ == "__main__":
  main()
