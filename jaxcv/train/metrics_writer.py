"""Metric output: `WORKDIR/metrics.jsonl` (one JSON object per evaluation and split, and one
per run event), `WORKDIR/train_metrics.jsonl` (one per log step: training means,
`data_wait`) and TensorBoard.

An event record has an `event` key and no `split`: `{"step": S, "event": NAME, ...}`, e.g.
`{"step": 20, "event": "corrupt_checkpoints", "moved": [{"step": 40, "from":
"checkpoints/40", "to": "checkpoints.corrupt/40", "error": "..."}], "resumed_from": 20}`
(S: the step the run continued from). `read_metrics` returns the evaluation records only,
so readers that expect `split` and metrics keep working; `read_events` returns the others.
"""
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

  def write_event(self, step: int, event: str, **fields) -> None:
    """Appends `{"step": step, "event": event, **fields}` (JSON-able fields) to
    metrics.jsonl, and the same JSON as TensorBoard text under `events/<event>`."""
    if not self.enabled:
      return
    row = {"step": int(step), "event": str(event), **fields}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    self._tb.add_text(f"events/{event}", json.dumps(row), int(step))
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


def _rows(path: Path) -> list[dict]:
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_metrics(workdir: str | Path, train: bool = False) -> list[dict]:
  """The evaluation rows of `WORKDIR/metrics.jsonl` (event records left out), or all rows
  of `train_metrics.jsonl`."""
  if train:
    return _rows(Path(workdir) / "train_metrics.jsonl")
  return [r for r in _rows(Path(workdir) / "metrics.jsonl") if "event" not in r]


def read_events(workdir: str | Path, event: str | None = None) -> list[dict]:
  """The event records of `WORKDIR/metrics.jsonl` (all, or those named `event`)."""
  return [r for r in _rows(Path(workdir) / "metrics.jsonl")
          if "event" in r and (event is None or r["event"] == event)]
