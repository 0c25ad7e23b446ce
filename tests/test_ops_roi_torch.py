"""jaxcv.ops.roi against torchvision (`ops.roi_align`, its autograd, `MultiScaleRoIAlign`).

Where torchvision's C++ ops do not load (this workplace), `torchvision.ops.roi_align` is its
pure-Python `_roi_align`, which clamps samples beyond [-1, H] x [-1, W] to the border where
the C++ kernel (and jaxcv) gives them 0; those boxes are then compared only with the NumPy
kernel loop in test_ops_roi.py. Boxes here reach up to 1 feature pixel outside the map, where
both agree. Skipped without torch.
"""
from __future__ import annotations

import functools
from collections import OrderedDict

import jax
import numpy as np
import pytest
from torch_reference import import_torchvision

from jaxcv.ops import roi

torch, torchvision = import_torchvision()
try:
  from torchvision_cpu import PATCHED  # the workplace's loader: True = pure-Python roi_align
except ImportError:
  PATCHED = False

F32 = np.float32
B, H, W, C = 2, 12, 15, 4
K = 24
OUT = (5, 4)


def boxes_near_map(rng, k, scale, margin, shift=0.0):
  """Boxes whose feature-map coordinates lie in [-margin, W - 1 + max(margin - 1, 0)] x (same
  for H): a mix of tiny (< 1 feature px, stretched to 1 px when not aligned), ordinary, and
  whole-map boxes. margin <= 1: every sample lies in [-1, W] x [-1, H], where the C++ kernel
  and the pure-Python fallback agree."""
  lo = np.array([-margin, -margin])
  hi = np.array([W - 1, H - 1]) + max(margin - 1, 0)
  p1 = rng.uniform(lo, hi, (k, 2))
  p2 = rng.uniform(lo, hi, (k, 2))
  b = np.concatenate([np.minimum(p1, p2), np.maximum(p1, p2)], 1)
  b[:3, 2:] = b[:3, :2] + rng.uniform(0, 0.9, (3, 2))  # tiny
  b[3] = [*lo, *hi]  # huge
  b[4] = [-1, -1, W, H]
  return ((b + shift) / scale).astype(F32)  # aligned=True subtracts shift = 0.5 again


def _python_roi_align():
  """torchvision's pure-Python `_roi_align` without its lazy `torch.compile` wrapper (the same
  code run eagerly; compiling it costs more than these small tests)."""
  from torchvision.ops.roi_align import _roi_align
  return getattr(_roi_align, "__wrapped__", _roi_align)


def torch_roi_align(feats, boxes, idx, scale, sampling_ratio, aligned):
  rois = torch.tensor(np.concatenate([idx[:, None].astype(F32), boxes], 1))
  x = torch.tensor(feats.transpose(0, 3, 1, 2))
  if PATCHED:  # torchvision.ops.roi_align is this function, compiled
    out = _python_roi_align()(x, rois, scale, *OUT, sampling_ratio, aligned)
  else:
    out = torchvision.ops.roi_align(x, rois, OUT, scale, sampling_ratio, aligned)
  return out.numpy().transpose(0, 2, 3, 1)


@functools.partial(jax.jit, static_argnames=("sampling_ratio", "aligned"))
def align(f, b, i, scale, sampling_ratio, aligned):
  return roi.roi_align(f, b, i, OUT, scale, sampling_ratio, aligned, max_sampling_ratio=64)


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_matches_torchvision(aligned):
  rng = np.random.default_rng(int(aligned))
  margins = (0.0, 0.9) if PATCHED else (0.0, 0.9, 4.0)
  worst, cases = 0.0, 0
  for sampling_ratio in (1, 2, 4, -1):
    for scale in (1 / 4, 1 / 16):
      for margin in margins:
        feats = rng.normal(size=(B, H, W, C)).astype(F32)
        boxes = boxes_near_map(rng, K, scale, margin, 0.5 * aligned)
        idx = rng.integers(0, B, K).astype(np.int32)
        got = np.asarray(align(feats, boxes, idx, scale, sampling_ratio, aligned))
        want = torch_roi_align(feats, boxes, idx, scale, sampling_ratio, aligned)
        worst = max(worst, float(np.abs(got - want).max()))
        cases += 1
  print(f"roi_align aligned={aligned}: {cases} cases, max abs err {worst:.2e}")
  assert worst <= 1e-5


def test_roi_align_feature_and_box_gradients_match_torch_autograd():
  """VJP with a random cotangent vs autograd of torchvision's pure-Python `_roi_align`
  (the C++ kernel's backward has the same feature gradient and no box gradient)."""
  _roi_align = _python_roi_align()
  rng = np.random.default_rng(3)
  feats = rng.normal(size=(B, H, W, C)).astype(F32)
  boxes = boxes_near_map(rng, K, 0.25, 0.5)[5:]  # no tiny/huge boxes on pixel edges
  idx = rng.integers(0, B, len(boxes)).astype(np.int32)
  cot = rng.normal(size=(len(boxes), *OUT, C)).astype(F32)
  for aligned in (False, True):
    _, vjp = jax.vjp(lambda f, b, aligned=aligned: roi.roi_align(f, b, idx, OUT, 0.25, 2,
                                                                 aligned), feats, boxes)
    gf, gb = vjp(cot)
    tf = torch.tensor(feats.transpose(0, 3, 1, 2), requires_grad=True)
    tb = torch.tensor(boxes, requires_grad=True)
    rois = torch.cat([torch.tensor(idx[:, None].astype(F32)), tb], 1)
    out = _roi_align(tf, rois, 0.25, OUT[0], OUT[1], 2, aligned)
    out.backward(torch.tensor(cot.transpose(0, 3, 1, 2)))
    err_f = np.abs(np.asarray(gf) - tf.grad.numpy().transpose(0, 2, 3, 1)).max()
    err_b = np.abs(np.asarray(gb) - tb.grad.numpy()).max() / np.abs(tb.grad.numpy()).max()
    print(f"aligned={aligned}: feature grad max abs err {err_f:.2e}, box grad rel err "
          f"{err_b:.2e}")
    assert err_f <= 1e-5
    assert err_b <= 1e-4


def test_multiscale_roi_align_matches_torchvision(monkeypatch):
  if PATCHED:  # the pooler's roi_align is the compiled `_roi_align`: run it eagerly instead
    from torchvision.ops import poolers
    monkeypatch.setattr(poolers, "roi_align", lambda x, rois, output_size, spatial_scale,
                        sampling_ratio, aligned=False: _python_roi_align()(
                            x, rois, spatial_scale, *output_size, sampling_ratio, aligned))
  rng = np.random.default_rng(5)
  image = (128, 160)
  sizes = [(32, 40), (16, 20), (8, 10), (4, 5)]
  feats = [rng.normal(size=(B, h, w, C)).astype(F32) for h, w in sizes]
  x1y1 = rng.uniform(0, [150, 120], (K, 2))
  wh = rng.uniform(1, 1, (K, 2)) * np.exp(rng.uniform(np.log(4), np.log(160), (K, 1)))
  boxes = np.concatenate([x1y1, np.minimum(x1y1 + wh, [160, 128])], 1).astype(F32)
  idx = np.sort(rng.integers(0, B, K)).astype(np.int32)  # torchvision takes per-image lists
  pooler = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], OUT, sampling_ratio=2,
                                              canonical_scale=32)
  x = OrderedDict((str(i), torch.tensor(f.transpose(0, 3, 1, 2))) for i, f in enumerate(feats))
  want = pooler(x, [torch.tensor(boxes[idx == b]) for b in range(B)], [image] * B)
  want = want.numpy().transpose(0, 2, 3, 1)
  levels = np.asarray(roi.map_levels(boxes, 2, 5, canonical_scale=32))
  assert len(set(levels.tolist())) >= 3
  got = jax.jit(functools.partial(roi.multiscale_roi_align, output_size=OUT, sampling_ratio=2,
                                  image_size=image, canonical_scale=32))(feats, boxes, idx)
  assert np.abs(np.asarray(got) - want).max() <= 1e-5
  # the default canonical scale (224): on this small image everything maps to level 0
  pooler = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], OUT, sampling_ratio=2)
  want = pooler(x, [torch.tensor(boxes[idx == b]) for b in range(B)], [image] * B)
  got = roi.multiscale_roi_align(feats, boxes, idx, OUT, 2, image)
  assert np.abs(np.asarray(got) - want.numpy().transpose(0, 2, 3, 1)).max() <= 1e-5
