"""Input pipeline throughput, and the share of training time spent waiting for data.

1. Images per second of the host pipeline (read or generate `shapes`, sanitise, detection
   augmentation: random flip, scale jitter to a fixed size, SSD photometric distortion; pad
   to max_boxes; batch) with every object label (boxes, masks, keypoints) at 256x256 and
   512x512, for 1 and 2 worker threads, from the generator and (with --tfds) from the
   ArrayRecord files of the tfds builder.
2. `data_wait` (share of wall time the training loop waited for a batch, see
   `jaxcv.train.loop`) of short runs of the configs that exist.

Run: `python benchmarks/input_pipeline.py [--tfds] [--batches 8]`
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

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


def data_wait(config_name: str, steps: int) -> tuple[float, float]:
  from conftest import load_config  # noqa: PLC0415 - tests/ is on sys.path below
  from jaxcv.train.loop import train_and_evaluate  # noqa: PLC0415
  from jaxcv.train.metrics_writer import read_metrics  # noqa: PLC0415

  cfg = load_config(config_name, num_steps=steps, eval_every=steps, checkpoint_every=steps,
                    log_every=max(steps // 4, 1), progress_bar=False,
                    **{"mesh.shape": {"data": 1}})
  with tempfile.TemporaryDirectory() as d:
    t = time.perf_counter()
    train_and_evaluate(cfg, d)
    wall = time.perf_counter() - t
    waits = [m["data_wait"] for m in read_metrics(d, train=True) if "data_wait" in m]
  # the first log interval holds compilation; the rest is the steady state
  return float(np.mean(waits[1:] if len(waits) > 1 else waits)), wall


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batches", type=int, default=8)
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--tfds", action="store_true", help="also read from the tfds ArrayRecords")
  p.add_argument("--configs", nargs="*", default=["lenet_digits"])
  p.add_argument("--steps", type=int, default=400)
  p.add_argument("--skip-rates", action="store_true", help="only the data_wait runs")
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
    wait, wall = data_wait(name, a.steps)
    print(json.dumps({"config": name, "steps": a.steps, "data_wait": round(wait, 4),
                      "wall_s": round(wall, 1)}), flush=True)
  print(f"host: {os.cpu_count()} CPUs, jax {jax.__version__}, {jax.devices()[0].platform}")


if __name__ == "__main__":
  main()
