"""COCO run-length encoded (RLE) masks in NumPy, bit-compatible with pycocotools' maskApi.c.

Why: COCO stores instance masks and mask results as RLE; the COCO evaluator (`coco.py`) must
read them without pycocotools (not a runtime dependency of jaxcv) and compute mask IoU from
the runs, never from full-image masks (a 640x480 image per detection would not fit).

Conventions (as maskApi.c):
- A mask `[h, w]` is flattened in column-major (Fortran) order; `counts` are the lengths of
  alternating runs of 0s and 1s, starting with 0s (so the first count may be 0).
- Compressed counts (`rleToString` / `rleFrString`): LEB128-like, 6 bits a character in
  ASCII 48..111, each count from the 4th on stored as the difference to the count two before.
- An RLE object is a dict `{"size": [h, w], "counts": str | bytes | list[int]}`.
"""
from __future__ import annotations

import numpy as np


def encode(mask: np.ndarray) -> dict:
  """Binary mask `[h, w]` (any dtype; nonzero is foreground) -> `{"size", "counts": bytes}`,
  as pycocotools.mask.encode."""
  mask = np.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f"encode: mask must be 2-D [h, w], got shape {mask.shape}")
  h, w = mask.shape
  return {"size": [int(h), int(w)], "counts": counts_to_string(mask_counts(mask))}


def mask_counts(mask: np.ndarray) -> np.ndarray:
  """Uncompressed run lengths (int64) of a binary mask `[h, w]`, column-major."""
  flat = (np.asarray(mask) != 0).ravel(order="F").astype(np.int8)
  change = np.flatnonzero(np.diff(flat, prepend=np.int8(0)))
  return np.diff(np.concatenate([[0], change, [flat.size]])).astype(np.int64)


def decode(rle: dict) -> np.ndarray:
  """RLE dict -> uint8 mask `[h, w]`, as pycocotools.mask.decode."""
  h, w = _size(rle)
  counts = rle_counts(rle)
  values = np.arange(counts.size, dtype=np.int64) % 2
  return np.repeat(values.astype(np.uint8), counts).reshape((w, h)).T.copy()


def area(rle: dict) -> int:
  """Foreground pixel count, as pycocotools.mask.area."""
  return int(rle_counts(rle)[1::2].sum())


def counts_to_string(counts) -> bytes:
  """maskApi.c rleToString: run lengths -> compressed counts (bytes)."""
  counts = np.asarray(counts, dtype=np.int64)
  out = bytearray()
  for i, x in enumerate(counts.tolist()):
    if i > 2:
      x -= int(counts[i - 2])
    more = True
    while more:
      c = x & 0x1F
      x >>= 5
      more = (x != -1) if (c & 0x10) else (x != 0)
      if more:
        c |= 0x20
      out.append(c + 48)
  return bytes(out)


def string_to_counts(s) -> np.ndarray:
  """maskApi.c rleFrString: compressed counts (str or bytes) -> run lengths (int64)."""
  data = s.encode("ascii") if isinstance(s, str) else bytes(s)
  counts: list[int] = []
  p, n = 0, len(data)
  while p < n:
    x, k, more = 0, 0, True
    while more:
      if p >= n:
        raise ValueError("RLE counts string ends inside a number")
      c = data[p] - 48
      x |= (c & 0x1F) << (5 * k)
      more = bool(c & 0x20)
      p += 1
      k += 1
      if not more and (c & 0x10):
        x |= -1 << (5 * k)
    if len(counts) > 2:
      x += counts[-2]
    counts.append(x & 0xFFFFFFFF)  # maskApi.c stores counts as uint
  return np.asarray(counts, dtype=np.int64)


def rle_counts(rle: dict) -> np.ndarray:
  """Run lengths of an RLE dict with compressed (str/bytes) or uncompressed (list) counts;
  checks that they cover the `size` exactly."""
  h, w = _size(rle)
  counts = rle["counts"]
  if isinstance(counts, (str, bytes)):
    out = string_to_counts(counts)
  else:
    out = np.asarray(counts, dtype=np.int64).reshape(-1)
  if out.size and out.min() < 0:
    raise ValueError("RLE counts must be non-negative")
  if int(out.sum()) != h * w:
    raise ValueError(f"RLE counts sum to {int(out.sum())}, but size {h}x{w} has {h * w} pixels")
  return out


def runs(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Foreground intervals `[start, end)` (int64) in column-major pixel index of run lengths."""
  counts = np.asarray(counts, dtype=np.int64)
  ends = np.cumsum(counts)
  starts = ends - counts
  return starts[1::2], ends[1::2]


def _size(rle: dict) -> tuple[int, int]:
  if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
    raise ValueError("an RLE must be a dict with 'size' [h, w] and 'counts'")
  h, w = (int(v) for v in rle["size"])
  if h < 0 or w < 0:
    raise ValueError(f"RLE size must be non-negative, got {[h, w]}")
  return h, w
