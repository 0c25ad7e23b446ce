"""jaxcv.ops.nms against torchvision.ops.nms and batched_nms on random cases.

On machines whose torchvision C++ ops do not load, `torch_reference` patches in a plain-torch
greedy NMS with torchvision's semantics (see tests/torch_reference.py). Thresholds are float32
values, so a float32 and a double comparison of the IoU with them agree. Coordinates are
multiples of 1/16, so batched_nms's coordinate-offset trick shifts boxes exactly and its IoUs
equal those on the original boxes.
"""
from __future__ import annotations

import jax
import numpy as np
from torch_reference import import_torchvision

from jaxcv.ops.nms import batched_nms, nms

torch, torchvision = import_torchvision()

SIZE, MAX_OUT, COUNT = 64, 24, 128
THRESHOLDS = [float(np.float32(t)) for t in (0.1, 0.3, 0.45, 0.5, 0.7, 0.9)]


def cases(seed):
  rng = np.random.default_rng(seed)
  centres = rng.uniform(0, 100, (COUNT, 4, 2))
  pick = rng.integers(0, 4, (COUNT, SIZE))
  c = np.take_along_axis(centres, pick[..., None], axis=1) + rng.normal(0, 6, (COUNT, SIZE, 2))
  wh = rng.uniform(0, 40, (COUNT, SIZE, 2))
  boxes = np.round(np.concatenate([c - wh / 2, c + wh / 2], axis=-1) * 16) / 16
  scores = np.where(rng.uniform(size=(COUNT, 1)) < 0.3, rng.integers(0, 4, (COUNT, SIZE)),
                    rng.uniform(0, 1, (COUNT, SIZE)))
  thr = np.array([THRESHOLDS[i % len(THRESHOLDS)] for i in range(COUNT)], np.float32)
  cls = rng.integers(0, 5, (COUNT, SIZE))
  return boxes.astype(np.float32), scores.astype(np.float32), thr, cls.astype(np.int32)


def test_nms_matches_torchvision():
  boxes, scores, thr, _ = cases(0)
  fn = jax.jit(jax.vmap(lambda b, s, t: nms(b, s, t, MAX_OUT)))
  idx, ok = (np.asarray(x) for x in fn(boxes, scores, thr))
  kept = []
  for i in range(COUNT):
    want = torchvision.ops.nms(torch.from_numpy(boxes[i]), torch.from_numpy(scores[i]),
                               float(thr[i]))[:MAX_OUT].tolist()
    assert idx[i][ok[i]].tolist() == want, i
    kept.append(len(want))
  assert min(kept) < max(kept) == MAX_OUT  # both truncated and short outputs were checked


def test_batched_nms_matches_torchvision():
  boxes, scores, thr, cls = cases(1)
  fn = jax.jit(jax.vmap(lambda b, s, c, t: batched_nms(b, s, c, t, MAX_OUT)))
  idx, ok = (np.asarray(x) for x in fn(boxes, scores, cls, thr))
  for i in range(COUNT):
    want = torchvision.ops.batched_nms(
        torch.from_numpy(boxes[i]), torch.from_numpy(scores[i]),
        torch.from_numpy(cls[i]).long(), float(thr[i]))[:MAX_OUT].tolist()
    assert idx[i][ok[i]].tolist() == want, i
