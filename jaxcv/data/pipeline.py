"""From examples to static-shape batches: sanitise, augment, pad, stack.

Why: detection and dense data come as examples with a varying number of objects (see the
example interface in `docs/conventions.md`); a compiled step needs fixed shapes. This module
turns a random-access source of examples into batches in the batch format:

1. read example `i` from the source (a tfds `data_source`, the `shapes` generator, ...); an
   unreadable example (one of `UNREADABLE`, see `ExampleDataset.read`) is logged, counted and
   replaced by the next readable one, never dropped silently; any other error (a bad option,
   an unknown label key, a bug) stops with its own message;
2. sanitise: boxes that are not finite, inverted (x2 < x1 or y2 < y1), of zero area or
   wholly outside the image are dropped with their object rows, counted and logged;
3. apply the split's transform (`jaxcv.data.augment`), driven by a NumPy generator seeded
   from (seed, step, row), so batch `s` is a pure function of `(seed, s)` and a resumed run
   sees exactly the batches an uninterrupted one sees (the data position is the step);
4. pad per-object arrays to `max_boxes` (with `box_valid`) and segments to `max_segments`
   (with `segment_valid`); objects beyond `max_boxes` are truncated, counted and logged;
5. stack into a batch.

`ExampleDataset` has the interface the training loop uses for `ArrayDataset` (`len`,
`num_classes`, `image_shape`, `get(indices, seed=None)`), so the loop's step-indexed,
prefetched batching (`jaxcv.train.input_pipeline`) works unchanged for both.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np

from jaxcv.data.base import CorruptExampleError, check_int

# What "example i cannot be read" means: an I/O failure (OSError: a missing or unreadable
# file, PIL's undecodable image), a truncated stream (EOFError), or a record the source
# declares corrupt (CorruptExampleError: the catalog and `shapes` decoders for records that
# contradict themselves, `base.read_record` for whatever the storage layer raises for one
# record). A ValueError, KeyError or TypeError from anywhere else is a configuration or
# programming error and is the same for every example: replacing it would only hide it.
UNREADABLE = (OSError, EOFError, CorruptExampleError)

OBJECT_KEYS = ("boxes", "classes", "iscrowd", "area", "masks", "keypoints", "difficult")
SEGMENT_KEYS = ("segment_ids", "segment_classes", "segment_isthing", "segment_iscrowd")
_DTYPES = {"boxes": np.float32, "classes": np.int32, "iscrowd": bool, "area": np.float32,
           "masks": bool, "keypoints": np.float32, "difficult": bool,
           "segment_ids": np.int32, "segment_classes": np.int32, "segment_isthing": bool,
           "segment_iscrowd": bool}

log = logging.getLogger("jaxcv.data")


class DataStats:
  """Thread-safe counters of what the pipeline dropped, truncated or replaced.

  Each kind is logged as a warning the 1st, 10th, 100th, ... time it happens, with the
  running total, so problems are visible without flooding the log.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self.counts: Counter = Counter()

  def add(self, kind: str, n: int, detail: str) -> None:
    if n <= 0:
      return
    with self._lock:
      before = self.counts[kind]
      self.counts[kind] += n
      after = self.counts[kind]
    # a warning whenever the total crosses 1, 10, 100, ...
    if before == 0 or len(str(after)) > len(str(before)):
      log.warning("data: %s (%d in all so far): %s", kind, after, detail)

  def __getitem__(self, kind: str) -> int:
    return self.counts[kind]


STATS = DataStats()


def num_objects(example: Mapping[str, np.ndarray]) -> int:
  """Number of object rows (0 where the example has no per-object arrays)."""
  for key in OBJECT_KEYS:
    if key in example:
      return int(np.shape(example[key])[0])
  return 0


def select_objects(example: Mapping[str, np.ndarray], keep: np.ndarray) -> dict:
  """The example with only the object rows where `keep` (bool [n]) is True."""
  out = dict(example)
  for key in OBJECT_KEYS:
    if key in out:
      out[key] = np.asarray(out[key])[keep]
  return out


def sanitize(example: Mapping[str, np.ndarray], where: str = "",
             stats: DataStats = STATS) -> dict:
  """Drops (and counts) boxes that are not finite, inverted, zero-area or outside the image.

  Boxes are clipped to the image first; a box is kept when its clipped width and height
  are both > 0. Masks, keypoints and the other object rows go with their box.
  """
  if "boxes" not in example:
    return dict(example)
  boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
  h, w = np.shape(example["image"])[:2]
  finite = np.isfinite(boxes).all(axis=1)
  inverted = finite & ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
  clipped = np.clip(np.where(finite[:, None], boxes, 0.0), 0.0, [w, h, w, h])
  empty = finite & ~inverted & ((clipped[:, 2] <= clipped[:, 0])
                                | (clipped[:, 3] <= clipped[:, 1]))
  keep = finite & ~inverted & ~empty
  for kind, bad in (("non-finite boxes dropped", ~finite), ("inverted boxes dropped", inverted),
                    ("zero-area or out-of-image boxes dropped", empty)):
    if bad.any():
      stats.add(kind, int(bad.sum()), f"{where} boxes {boxes[bad][:3].tolist()}")
  out = dict(example)
  out["boxes"] = clipped
  return select_objects(out, keep) if not keep.all() else out


def pad_example(example: Mapping[str, np.ndarray], max_boxes: int | None,
                max_segments: int | None = None, where: str = "",
                stats: DataStats = STATS) -> dict:
  """Per-object arrays padded (or truncated, counted) to `max_boxes` with `box_valid`, and
  segment arrays to `max_segments` with `segment_valid`; other keys unchanged."""
  out = dict(example)
  for keys, size, valid_key, what in ((OBJECT_KEYS, max_boxes, "box_valid", "objects"),
                                      (SEGMENT_KEYS, max_segments, "segment_valid",
                                       "segments")):
    present = [k for k in keys if k in out]
    if not present:
      continue
    if size is None:
      raise ValueError(f"{where}: the example has {what} ({present}) but no maximum count "
                       f"was given (data.max_boxes / data.max_segments)")
    n = int(np.shape(out[present[0]])[0])
    if n > size:
      stats.add(f"{what} beyond the maximum truncated", n - size,
                f"{where} has {n} {what}; keeping the first {size}")
    m = min(n, size)
    for key in present:
      a = np.asarray(out[key])
      if a.shape[0] != n:
        raise ValueError(f"{where}: {key!r} has {a.shape[0]} rows, {present[0]!r} has {n}")
      padded = np.zeros((size,) + a.shape[1:], _DTYPES.get(key, a.dtype))
      padded[:m] = a[:m]
      out[key] = padded
    valid = np.zeros((size,), bool)
    valid[:m] = True
    out[valid_key] = valid
  return out


def stack(examples: Sequence[Mapping[str, np.ndarray]], where: str = "") -> dict:
  """Stacks examples with identical keys and shapes into a batch (clear error otherwise)."""
  keys = sorted(examples[0])
  for i, ex in enumerate(examples[1:], 1):
    if sorted(ex) != keys:
      raise ValueError(f"{where}: example {i} has keys {sorted(ex)}, example 0 has {keys}")
  out = {}
  for key in keys:
    shapes = {np.shape(ex[key]) for ex in examples}
    if len(shapes) > 1:
      raise ValueError(
          f"{where}: {key!r} has different shapes within a batch: {sorted(shapes)}; images "
          "of different sizes need a transform with a fixed output size (e.g. "
          "'resize_pad_to' in data.augmentation)")
    out[key] = np.stack([np.asarray(ex[key]) for ex in examples])
  return out


class ExampleDataset:
  """A split as a random-access source of examples, turned into static-shape batches.

  Args:
    source: `len(source)` and `source[i] -> example dict` (the example interface).
    num_classes: number of classes (classification labels 0..C-1; object classes 1..C).
    name, split: for messages.
    transform: `fn(example, rng) -> example` applied after sanitising (augmentation and
      any resize to a fixed size); None for none.
    max_boxes, max_segments: padded sizes of the per-object / per-segment arrays (>= 1;
      None where the examples have no objects / segments).
    max_retries: how many following examples to try when one cannot be read (>= 0).
  """

  def __init__(self, source, num_classes: int, name: str, split: str,
               transform: Callable | None = None, max_boxes: int | None = None,
               max_segments: int | None = None, max_retries: int = 16,
               stats: DataStats = STATS):
    where = f"data set {name!r}"
    if len(source) == 0:
      raise ValueError(f"{where} split {split!r} is empty")
    self.source = source
    self.num_classes = check_int(num_classes, f"{where}: num_classes", 1)
    self.name, self.split = str(name), str(split)
    self.transform = transform
    self.max_boxes = None if max_boxes is None else check_int(
        max_boxes, f"{where}: max_boxes (data.max_boxes)", 1)
    self.max_segments = None if max_segments is None else check_int(
        max_segments, f"{where}: max_segments (data.max_segments)", 1)
    self.max_retries = check_int(max_retries, f"{where}: max_retries", 0)
    self.stats = stats
    self._image_shape = None

  def __len__(self) -> int:
    return len(self.source)

  def __repr__(self) -> str:
    return (f"ExampleDataset({self.name!r}, {self.split!r}, n={len(self)}, "
            f"num_classes={self.num_classes}, max_boxes={self.max_boxes})")

  def read(self, index: int) -> dict:
    """Example `index`, or the next readable one (logged and counted) if it cannot be read.

    "Cannot be read" is `source[i]` raising one of `UNREADABLE` (OSError, EOFError,
    CorruptExampleError): then examples i + 1, i + 2, ... are tried, up to `max_retries`,
    and each failure is counted under "unreadable examples replaced". Anything else the
    source raises (a ValueError of a bad option, the KeyError of a label key the data set
    lacks, a TypeError) propagates at once with its own message.
    """
    n = len(self.source)
    for attempt in range(self.max_retries + 1):
      i = (int(index) + attempt) % n
      try:
        example = dict(self.source[i])
      except UNREADABLE as e:  # a damaged example: replaced, counted, logged
        self.stats.add("unreadable examples replaced", 1,
                       f"{self.name}/{self.split} example {i}: {type(e).__name__}: {e}")
        continue
      return example
    raise RuntimeError(f"{self.name}/{self.split}: examples {index}..{index + self.max_retries}"
                       " could not be read; see the warnings above")

  def example(self, index: int, rng: np.random.Generator | None = None) -> dict:
    """Example `index` read, sanitised, transformed (with `rng`) and padded."""
    where = f"{self.name}/{self.split} example {int(index)}"
    ex = sanitize(self.read(index), where, self.stats)
    if self.transform is not None:
      ex = self.transform(ex, rng if rng is not None else np.random.default_rng(int(index)))
    return pad_example(ex, self.max_boxes, self.max_segments, where, self.stats)

  def get(self, indices, seed: Sequence[int] | None = None) -> dict:
    """Batch of examples `indices`; row j's transform draws from `default_rng([*seed, j])`
    (without `seed`, from the example's index: evaluation is the same every time)."""
    indices = np.asarray(indices).reshape(-1)
    rows = []
    for j, i in enumerate(indices):
      rng = (np.random.default_rng([*map(int, seed), j]) if seed is not None
             else np.random.default_rng([int(i)]))
      rows.append(self.example(int(i), rng))
    return stack(rows, f"{self.name}/{self.split}")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, 3) of the transformed examples (read from example 0)."""
    if self._image_shape is None:
      self._image_shape = tuple(int(d) for d in self.example(0)["image"].shape)
    return self._image_shape
