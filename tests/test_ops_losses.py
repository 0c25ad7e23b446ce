"""jaxcv.ops.losses against NumPy formulas written here, optax and analytic values (no torch
needed): values, ignore semantics of the per-pixel losses, gradient checks, bad input."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxcv.ops import losses as L

B, H, W, C = 2, 3, 4, 5


def np_log_softmax(x):
  x = x.astype(np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_smooth_l1_analytic():
  pred = np.array([0.3, -0.3, 2.0, -2.0, 0.2, 0.7], np.float32)
  target = np.zeros_like(pred)
  got = L.smooth_l1_loss(pred, target, beta=1.0, reduction="none")
  np.testing.assert_allclose(got, [0.045, 0.045, 1.5, 1.5, 0.02, 0.245], rtol=1e-6)
  got = L.smooth_l1_loss(pred, target, beta=0.5, reduction="none")  # 0.5 x^2 / beta | |x| - .25
  np.testing.assert_allclose(got, [0.09, 0.09, 1.75, 1.75, 0.04, 0.45], rtol=1e-6)
  np.testing.assert_allclose(L.smooth_l1_loss(pred, target, beta=0.0, reduction="sum"),
                             np.abs(pred).sum(), rtol=1e-6)
  grad = jax.grad(lambda p: L.smooth_l1_loss(p, target, beta=0.0))(pred)
  np.testing.assert_allclose(grad, np.sign(pred) / pred.size, rtol=1e-6)  # L1, no NaN


def test_sigmoid_focal_matches_numpy():
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(6, 7)) * 4).astype(np.float32)
  y = (rng.uniform(size=(6, 7)) < 0.4).astype(np.float32)
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  p = 1 / (1 + np.exp(-x64))
  ce = -(y64 * np.log(p) + (1 - y64) * np.log(1 - p))
  pt = p * y64 + (1 - p) * (1 - y64)
  for alpha, gamma in [(0.25, 2.0), (-1.0, 1.0), (0.6, 0.0)]:
    want = ce * (1 - pt) ** gamma
    if alpha >= 0:
      want = want * (alpha * y64 + (1 - alpha) * (1 - y64))
    got = L.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # saturated logits: finite values and gradients
  big = np.array([100.0, -100.0, 100.0, -100.0], np.float32)
  tgt = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
  val, grad = jax.value_and_grad(lambda z: L.sigmoid_focal_loss(z, tgt, gamma=0.5).sum())(big)
  assert np.isfinite(val) and np.isfinite(np.asarray(grad)).all()
  np.testing.assert_allclose(val, 0.75 * 100 + 0.25 * 100, rtol=1e-6)  # two wrong, two right


def numpy_softmax_focal(logits, labels, gamma, alpha, ignore_label):
  logp = np_log_softmax(logits)
  out = np.zeros(labels.shape)
  valid = np.zeros(labels.shape, bool)
  for idx in np.ndindex(labels.shape):
    y = labels[idx]
    if y == ignore_label or not 0 <= y < logits.shape[-1]:
      continue
    lp = logp[idx + (y,)]
    a = 1.0 if alpha is None else alpha[y]
    out[idx] = -a * (1 - math.exp(lp)) ** gamma * lp
    valid[idx] = True
  return out, valid


def test_softmax_focal_matches_numpy():
  rng = np.random.default_rng(1)
  logits = (rng.normal(size=(4, 6, C)) * 3).astype(np.float32)
  labels = rng.integers(0, C, size=(4, 6)).astype(np.int32)
  labels[0, :3] = [255, 255, 7]  # ignored, and out of range (treated as ignored)
  alpha = rng.uniform(0.2, 1.5, size=C).astype(np.float32)
  for gamma, a in [(2.0, None), (0.5, alpha), (0.0, alpha)]:
    want, valid = numpy_softmax_focal(logits, labels, gamma, a, 255)
    got = L.softmax_focal_loss(logits, labels, gamma=gamma, alpha=a, ignore_label=255,
                               reduction="none")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        L.softmax_focal_loss(logits, labels, gamma=gamma, alpha=a, ignore_label=255),
        want.sum() / valid.sum(), rtol=1e-5)


def test_softmax_focal_gamma0_is_cross_entropy():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(10, C)).astype(np.float32) * 2
  labels = rng.integers(0, C, size=10).astype(np.int32)
  want = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  np.testing.assert_allclose(L.softmax_focal_loss(logits, labels, gamma=0.0, reduction="none"),
                             want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(L.softmax_focal_loss(logits, labels, gamma=0.0), want.mean(),
                             rtol=1e-6)


def test_box_losses_analytic():
  a = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 4, 2]], np.float32)
  b = np.array([[0, 0, 2, 2], [1, 1, 3, 3], [4, 0, 6, 2], [0, 0, 2, 2]], np.float32)
  # IoU 1, 1/7, 0, 1/2; enclosing areas 4, 9, 12, 8; unions 4, 7, 8, 8
  iou = np.array([1, 1 / 7, 0, 0.5])
  giou = iou - np.array([0, 2 / 9, 4 / 12, 0])
  np.testing.assert_allclose(L.giou_loss(a, b), 1 - giou, atol=1e-6)
  # centre distances^2 0, 2, 16, 1; enclosing diagonals^2 8, 18, 40, 20
  diou = iou - np.array([0, 2 / 18, 16 / 40, 1 / 20])
  np.testing.assert_allclose(L.diou_loss(a, b), 1 - diou, atol=1e-6)
  v = 4 / math.pi ** 2 * (math.atan(2.0) - math.atan(1.0)) ** 2  # 4x2 against 2x2
  ciou = diou - np.array([0, 0, 0, v / (1 - 0.5 + v) * v])
  np.testing.assert_allclose(L.ciou_loss(a, b), 1 - ciou, atol=1e-6)
  np.testing.assert_allclose(L.giou_loss(a, b, reduction="mean"), (1 - giou).mean(), atol=1e-6)
  np.testing.assert_allclose(L.ciou_loss(a, b, reduction="sum"), (1 - ciou).sum(), atol=1e-5)


def numpy_dice(p, t, mask, smooth):
  m = np.ones(p.shape[:-1]) if mask is None else mask.astype(np.float64)
  out = np.zeros((p.shape[0], p.shape[-1]))
  for b in range(p.shape[0]):
    for c in range(p.shape[-1]):
      pc, tc, mb = p[b, ..., c], t[b, ..., c], m[b]
      num = 2 * (mb * pc * tc).sum() + smooth
      den = (mb * pc).sum() + (mb * tc).sum() + smooth
      out[b, c] = 1 - num / den
  return out


def test_dice_matches_numpy():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(B, H, W, C)).astype(np.float32)
  labels = rng.integers(0, C, size=(B, H, W))
  targets = np.eye(C, dtype=np.float32)[labels]
  mask = rng.uniform(size=(B, H, W)) < 0.7
  probs = np.exp(np_log_softmax(logits))
  for m, smooth in [(None, 1.0), (mask, 1.0), (mask, 0.1)]:
    want = numpy_dice(probs, targets, m, smooth)
    got = L.dice_loss(logits, targets, mask=m, smooth=smooth, activation="softmax",
                      reduction="none")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(L.dice_loss(probs.astype(np.float32), targets, mask=m,
                                           smooth=smooth), want.mean(), rtol=1e-5)
  sig = 1 / (1 + np.exp(-logits.astype(np.float64)))
  np.testing.assert_allclose(L.dice_loss(logits, targets, activation="sigmoid", reduction="sum"),
                             numpy_dice(sig, targets, None, 1.0).sum(), rtol=1e-5)
  # smooth = 0: a class absent from prediction and target is a perfect match (loss 0, no NaN)
  zeros = np.zeros((1, 2, 2, 2), np.float32)
  got = L.dice_loss(zeros, zeros, smooth=0.0, reduction="none")
  np.testing.assert_array_equal(got, np.zeros((1, 2)))


PIXEL_CE = jax.jit(L.pixel_softmax_cross_entropy, static_argnames=("ignore_label", "reduction"))
PIXEL_CE_GRAD = jax.jit(jax.value_and_grad(L.pixel_softmax_cross_entropy))


def test_pixel_cross_entropy_vmapped_equals_vectorised_and_ignores():
  rng = np.random.default_rng(4)
  logits = (rng.normal(size=(B, H, W, C)) * 3).astype(np.float32)
  labels = rng.integers(0, C, size=(B, H, W)).astype(np.int32)
  ignored = rng.uniform(size=(B, H, W)) < 0.3
  ignored[0, 0, 0] = True
  labels[ignored] = 255
  labels[1, 0, 0], ignored[1, 0, 0] = -1, True   # out of range: ignored
  labels[1, 0, 1], ignored[1, 0, 1] = C, True
  direct = -np.take_along_axis(np_log_softmax(logits), np.where(ignored, 0, labels)[..., None],
                               -1)[..., 0]
  direct = np.where(ignored, 0.0, direct)
  np.testing.assert_allclose(PIXEL_CE(logits, labels, reduction="none"), direct, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(PIXEL_CE(logits, labels), direct.sum() / (~ignored).sum(),
                             rtol=1e-5)
  # the single-pixel function, by hand
  loss, valid = L.one_pixel_softmax_cross_entropy(logits[0, 1, 1], labels[0, 1, 1])
  assert bool(valid) == (not ignored[0, 1, 1])
  np.testing.assert_allclose(loss, direct[0, 1, 1], rtol=1e-5)
  # changing ignored pixels' logits changes nothing; their gradient is exactly 0
  value, grad = PIXEL_CE_GRAD(logits, labels)
  changed = np.where(ignored[..., None], rng.normal(size=logits.shape) * 50, logits)
  value2, _ = PIXEL_CE_GRAD(changed.astype(np.float32), labels)
  assert float(value) == float(value2)
  grad = np.asarray(grad)
  assert (grad[ignored] == 0).all() and (np.abs(grad[~ignored]).sum(-1) > 0).all()
  # no valid pixel at all: 0 and a zero, finite gradient
  value, grad = PIXEL_CE_GRAD(logits, np.full_like(labels, 255))
  assert float(value) == 0.0 and (np.asarray(grad) == 0).all()


def test_pixel_bce_ignore_mask():
  rng = np.random.default_rng(5)
  logits = (rng.normal(size=(B, H, W, 1)) * 3).astype(np.float32)
  targets = (rng.uniform(size=(B, H, W)) < 0.5).astype(np.float32)
  ignore = rng.uniform(size=(B, H, W)) < 0.3
  x = logits[..., 0].astype(np.float64)
  direct = np.maximum(x, 0) - x * targets + np.log1p(np.exp(-np.abs(x)))
  got = L.pixel_binary_cross_entropy(logits, targets, ignore_mask=ignore, reduction="none")
  np.testing.assert_allclose(got, np.where(ignore, 0, direct), rtol=1e-5, atol=1e-7)
  fn = jax.jit(jax.value_and_grad(
      lambda z: L.pixel_binary_cross_entropy(z, targets, ignore_mask=ignore)))
  value, grad = fn(logits)
  np.testing.assert_allclose(value, direct[~ignore].mean(), rtol=1e-5)
  assert (np.asarray(grad)[ignore] == 0).all()
  loss, valid = L.one_pixel_binary_cross_entropy(jnp.float32(2.0), jnp.float32(1.0), False)
  np.testing.assert_allclose(loss, math.log1p(math.exp(-2.0)), rtol=1e-6)
  assert bool(valid)


def grad_cases():
  """(name, function of float64 args, args) away from kinks, for check_grads."""
  rng = np.random.default_rng(6)
  xy = rng.uniform(0, 10, (2, 6, 2))
  boxes1, boxes2 = np.concatenate([xy, xy + rng.uniform(2, 8, (2, 6, 2))], -1)
  same_aspect = boxes1.copy()
  same_aspect[:, 2:] = boxes1[:, :2] + 1.3 * (boxes2[:, 2:] - boxes2[:, :2])
  labels = rng.integers(0, C, size=(B, H, W))
  labels[0, 0] = 255
  targets = rng.uniform(size=(B, H, W))
  onehot = np.eye(C)[labels % 255 % C]
  alpha = rng.uniform(0.5, 1.5, C)
  pred = rng.uniform(-3, 3, 8)
  pred = np.where(np.abs(np.abs(pred) - 1) < 0.1, 0.5, pred)  # away from |x| = beta
  return [
      ("smooth_l1", lambda p: L.smooth_l1_loss(p, np.zeros(8)), (pred,)),
      ("sigmoid_focal", lambda x: L.sigmoid_focal_loss(x, targets, gamma=1.5).sum(),
       (rng.normal(size=(B, H, W)),)),
      ("softmax_focal", lambda x: L.softmax_focal_loss(x, labels, alpha=alpha, ignore_label=255),
       (rng.normal(size=(B, H, W, C)),)),
      ("giou", lambda a, b: L.giou_loss(a, b, reduction="sum"), (boxes1, boxes2)),
      ("diou", lambda a, b: L.diou_loss(a, b, reduction="sum"), (boxes1, boxes2)),
      # CIoU's alpha is not differentiated (as torchvision), so the numerical derivative equals
      # the autodiff one only where the aspect term vanishes: boxes of equal aspect ratio.
      ("ciou", lambda a, b: L.ciou_loss(a, b, reduction="sum"), (same_aspect, boxes2)),
      ("dice", lambda x: L.dice_loss(x, onehot, activation="softmax"),
       (rng.normal(size=(B, H, W, C)),)),
      ("pixel_ce", lambda x: L.pixel_softmax_cross_entropy(x, labels),
       (rng.normal(size=(B, H, W, C)),)),
      ("pixel_bce", lambda x: L.pixel_binary_cross_entropy(x, targets, ignore_value=None),
       (rng.normal(size=(B, H, W)),)),
  ]


def test_gradients_match_finite_differences():
  with jax.enable_x64(True):
    for name, fn, args in grad_cases():
      args = tuple(jnp.asarray(a, jnp.float64) for a in args)
      try:
        check_grads(jax.jit(fn), args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
      except AssertionError as e:
        raise AssertionError(f"{name}: {e}") from None


def test_bad_input_raises():
  x = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match="unknown reduction 'avg'"):
    L.smooth_l1_loss(x, x, reduction="avg")
  with pytest.raises(ValueError, match="pred and target must have the same shape"):
    L.smooth_l1_loss(x, np.zeros((3, 2)))
  with pytest.raises(ValueError, match="beta must be >= 0"):
    L.smooth_l1_loss(x, x, beta=-1.0)
  with pytest.raises(ValueError, match="alpha must be in"):
    L.sigmoid_focal_loss(x, x, alpha=1.5)
  with pytest.raises(ValueError, match="gamma must be >= 0"):
    L.sigmoid_focal_loss(x, x, gamma=-1.0)
  with pytest.raises(ValueError, match="labels must be an integer array"):
    L.softmax_focal_loss(x, np.zeros(2, np.float32))
  with pytest.raises(ValueError, match="mismatched shapes"):
    L.softmax_focal_loss(x, np.zeros(3, np.int32))
  with pytest.raises(ValueError, match=r"alpha must have shape \[C\]"):
    L.softmax_focal_loss(x, np.zeros(2, np.int32), alpha=np.ones(4))
  with pytest.raises(ValueError, match=r"boxes2 must have shape \[\.\.\., 4\]"):
    L.giou_loss(np.zeros((2, 4)), np.zeros((2, 5)))
  with pytest.raises(ValueError, match="mismatched shapes"):
    L.ciou_loss(np.zeros((2, 4)), np.zeros((3, 4)))
  img = np.zeros((B, H, W, C), np.float32)
  with pytest.raises(ValueError, match="inputs and targets must have the same shape"):
    L.dice_loss(img, img[..., :2])
  with pytest.raises(ValueError, match="mask must have shape"):
    L.dice_loss(img, img, mask=np.ones((B, H)))
  with pytest.raises(ValueError, match="unknown activation 'relu'"):
    L.dice_loss(img, img, activation="relu")
  with pytest.raises(ValueError, match=r"logits must be \[B, H, W, C\] and labels \[B, H, W\]"):
    L.pixel_softmax_cross_entropy(img, np.zeros((B, H), np.int32))
  with pytest.raises(ValueError, match=r"logits must be \[B, H, W\] or \[B, H, W, 1\]"):
    L.pixel_binary_cross_entropy(img, img)
  with pytest.raises(ValueError, match="ignore_mask must have shape"):
    L.pixel_binary_cross_entropy(img[..., 0], img[..., 0], ignore_mask=np.zeros((B, H)))
  labels = np.array([[0, 4, 255], [5, -1, 2]])
  with pytest.raises(ValueError, match=r"labels outside \[0, 5\).*\[-1, 5\]"):
    L.check_labels(labels, 5)
  L.check_labels(np.array([0, 4, 255]), 5)  # fine: in range or ignored
  with pytest.raises(TypeError, match="needs concrete labels"):
    jax.jit(lambda y: L.check_labels(y, 5))(labels)
