"""Per-class IoU and the confusion matrix of a segmentation run, from its latest checkpoint.

  python benchmarks/segmentation_confusion.py WORKDIR [--split test]

Rebuilds the run from `WORKDIR/config.json`, restores the latest checkpoint and evaluates
`--split` with the task's own evaluation step, then prints mIoU, the IoU of every class and
the confusion matrix (rows: ground truth, columns: prediction, per mille of each row). It
shows where a run loses mIoU: objects taken for background (boundaries) or one class for
another.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "")  # one device, as the training run
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from jaxcv.metrics import segmentation as seg_metrics  # noqa: E402
from jaxcv.train import checkpoint as ckpt_lib  # noqa: E402
from jaxcv.train import input_pipeline, loop  # noqa: E402


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("workdir")
  p.add_argument("--split", default="test")
  a = p.parse_args()
  config = ml_collections.ConfigDict(json.loads(Path(a.workdir, "config.json").read_text()))
  if config.task != "segmentation":
    raise SystemExit(f"{a.workdir} is a {config.task!r} run, not a segmentation run")
  config.data.eval_splits = (a.split,)
  trainer = loop.Trainer(config)
  restored = ckpt_lib.Checkpoints(a.workdir, keep=1).restore(jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      trainer.abstract_state, trainer.state_sharding))
  if restored is None:
    raise SystemExit(f"no checkpoint in {a.workdir}")
  state, meta = restored
  acc = trainer.task.eval_init()
  for batch in input_pipeline.eval_batches(trainer.eval_data[a.split], trainer.eval_batch_size,
                                           trainer.mesh, check=trainer.task.check_batch):
    acc = trainer.eval_step(state, batch, acc)
  cm = np.asarray(jax.device_get(acc["cm"]), np.int64)
  m = seg_metrics.metrics(cm)
  inter = np.diag(cm)
  union = cm.sum(0) + cm.sum(1) - inter
  iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
  print(f"{a.workdir}, step {meta['step']}, split {a.split}: miou {float(m['miou']):.4f}, "
        f"pixel accuracy {float(m['pixel_accuracy']):.4f}")
  print("IoU per class:", " ".join(f"{c}: {v:.4f}" for c, v in enumerate(iou)))
  rows = np.maximum(cm.sum(1, keepdims=True), 1)
  print("confusion (rows: ground truth, columns: prediction, per mille of the row):")
  print(np.round(1000 * cm / rows).astype(np.int64))


if __name__ == "__main__":
  main()
