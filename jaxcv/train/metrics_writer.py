"""Metric output: `WORKDIR/metrics.jsonl` (one JSON object per evaluation),
`WORKDIR/train_metrics.jsonl` (one per log step: training means, `data_wait`) and
TensorBoard."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

import jax


class MetricsWriter:
  """Only process 0 writes; the others accept and drop the calls."""

  def __init__(self, workdir: str | Path):
    self.enabled = jax.process_index() == 0
    self.path = Path(workdir) / "metrics.jsonl"
    self.train_path = Path(workdir) / "train_metrics.jsonl"
    self._tb = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # light; no TensorFlow import
      self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

  def write_eval(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), "split": split}
    row.update({k: _json_float(v) for k, v in metrics.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in metrics.items():
      self._tb.add_scalar(f"{split}/{k}", float(v), int(step))
    self._tb.flush()

  def write_train(self, step: int, metrics: Mapping[str, float]) -> None:
    if self.enabled:
      row = {"step": int(step), **{k: _json_float(v) for k, v in metrics.items()}}
      with open(self.train_path, "a") as f:
        f.write(json.dumps(row) + "\n")
      for k, v in metrics.items():
        self._tb.add_scalar(f"train/{k}", float(v), int(step))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def _json_float(v) -> float | None:
  v = float(v)
  return v if math.isfinite(v) else None


def read_metrics(workdir: str | Path, train: bool = False) -> list[dict]:
  """All rows of `WORKDIR/metrics.jsonl` (evaluations), or of `train_metrics.jsonl`."""
  path = Path(workdir) / ("train_metrics.jsonl" if train else "metrics.jsonl")
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
