"""jaxcv.ops.losses against torch / torchvision: smooth L1, sigmoid focal, the box losses,
cross-entropy with ignore_index=255 and BCE with logits; max abs error <= 1e-5 in float32.
Skipped where torch is missing."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from torch_reference import import_torchvision

from jaxcv.ops import losses as L

torch, torchvision = import_torchvision()
F = torch.nn.functional
ATOL = 1e-5
REDUCTIONS = ("none", "mean", "sum")


def t(x):
  return torch.from_numpy(np.asarray(x))


def assert_close(got, want, atol=ATOL, rtol=1e-6):
  """abs err <= 1e-5 (elementwise values); rtol 1e-6 covers float32 summation order in sums."""
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape, (got.shape, want.shape)
  np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


SMOOTH_L1 = jax.jit(L.smooth_l1_loss, static_argnames=("beta", "reduction"))


@pytest.mark.parametrize("beta", [1.0, 0.5, 0.0])
def test_smooth_l1_matches_torch(beta):
  rng = np.random.default_rng(0)
  pred = rng.normal(size=(6, 4)).astype(np.float32) * 2
  target = rng.normal(size=(6, 4)).astype(np.float32)
  for reduction in REDUCTIONS:
    want = F.smooth_l1_loss(t(pred), t(target), beta=beta, reduction=reduction).numpy()
    assert_close(SMOOTH_L1(pred, target, beta=beta, reduction=reduction), want)


FOCAL = jax.jit(L.sigmoid_focal_loss, static_argnames=("alpha", "gamma", "reduction"))


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.0), (0.75, 1.5)])
def test_sigmoid_focal_loss_matches_torchvision(alpha, gamma):
  rng = np.random.default_rng(1)
  logits = (rng.normal(size=(8, 5)) * 4).astype(np.float32)
  logits[0, :4] = [30.0, -30.0, 60.0, -60.0]  # saturated sigmoids
  targets = (rng.uniform(size=(8, 5)) < 0.3).astype(np.float32)
  targets[0, :4] = [1, 0, 0, 1]
  targets[1] = rng.uniform(size=5)           # soft targets
  for reduction in REDUCTIONS:
    want = torchvision.ops.sigmoid_focal_loss(t(logits), t(targets), alpha=alpha, gamma=gamma,
                                              reduction=reduction).numpy()
    # torch's BCE keeps relative precision for the 60-logit entry: compare relatively as well
    assert_close(FOCAL(logits, targets, alpha=alpha, gamma=gamma, reduction=reduction), want,
                 rtol=1e-5)


def box_pairs(seed, n=16):
  rng = np.random.default_rng(seed)
  xy = rng.uniform(0, 40, (2, n, 2))
  wh = rng.uniform(0.5, 25, (2, n, 2))
  a, b = np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)
  b[0] = a[0]                                       # identical
  b[1] = a[1] + 100                                 # disjoint
  b[2] = [a[2, 0] + 1, a[2, 1] + 1, a[2, 2] - 0.1, a[2, 3] - 0.1]  # nested
  b[3] = [a[3, 2], a[3, 1], a[3, 2] + 4, a[3, 3]]   # touching
  return a, b


BOX_LOSSES = {
    "giou": (jax.jit(L.giou_loss, static_argnames=("reduction", "eps")),
             torchvision.ops.generalized_box_iou_loss),
    "diou": (jax.jit(L.diou_loss, static_argnames=("reduction", "eps")),
             torchvision.ops.distance_box_iou_loss),
    "ciou": (jax.jit(L.ciou_loss, static_argnames=("reduction", "eps")),
             torchvision.ops.complete_box_iou_loss),
}


@pytest.mark.parametrize("name", sorted(BOX_LOSSES))
def test_box_losses_match_torchvision(name):
  ours, ref = BOX_LOSSES[name]
  worst = 0.0
  for seed in range(4):
    a, b = box_pairs(seed)
    for reduction in REDUCTIONS:
      for eps in (1e-7, 1e-2):
        want = ref(t(a), t(b), reduction=reduction, eps=eps).numpy()
        got = np.asarray(ours(a, b, reduction=reduction, eps=eps))
        assert got.shape == want.shape
        worst = max(worst, float(np.abs(got - want).max()))
  assert worst <= ATOL, f"{name} loss: max abs err {worst}"
  # leading dims and the mean of no boxes (0, as torchvision)
  a, b = box_pairs(9)
  assert_close(ours(a.reshape(4, 4, 4), b.reshape(4, 4, 4)), ref(t(a), t(b)).numpy().reshape(4, 4))
  empty = np.zeros((0, 4), np.float32)
  assert float(ours(empty, empty, reduction="mean")) == 0.0
  assert float(ref(t(empty), t(empty), reduction="mean")) == 0.0


PIXEL_CE = jax.jit(L.pixel_softmax_cross_entropy, static_argnames=("ignore_label", "reduction"))


def test_pixel_cross_entropy_matches_torch_ignore_index():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(2, 5, 6, 4)).astype(np.float32) * 3
  labels = rng.integers(0, 4, size=(2, 5, 6)).astype(np.int32)
  labels[rng.uniform(size=labels.shape) < 0.3] = 255
  nchw = t(logits.transpose(0, 3, 1, 2))
  for reduction in REDUCTIONS:
    want = F.cross_entropy(nchw, t(labels).long(), ignore_index=255, reduction=reduction)
    assert_close(PIXEL_CE(logits, labels, reduction=reduction), want.numpy())


def test_softmax_focal_gamma0_weighted_sum_matches_torch_cross_entropy():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(32, 5)).astype(np.float32) * 2
  labels = rng.integers(0, 5, size=32).astype(np.int32)
  labels[:6] = 255
  alpha = rng.uniform(0.1, 2.0, size=5).astype(np.float32)
  want = F.cross_entropy(t(logits), t(labels).long(), weight=t(alpha), ignore_index=255,
                         reduction="sum").numpy()
  got = L.softmax_focal_loss(logits, labels, gamma=0.0, alpha=alpha, ignore_label=255,
                             reduction="sum")
  assert_close(got, want)


PIXEL_BCE = jax.jit(L.pixel_binary_cross_entropy, static_argnames=("ignore_value", "reduction"))


def test_pixel_bce_matches_torch_with_logits():
  rng = np.random.default_rng(4)
  logits = (rng.normal(size=(2, 5, 6, 1)) * 5).astype(np.float32)
  targets = rng.uniform(size=(2, 5, 6)).astype(np.float32)
  ref = F.binary_cross_entropy_with_logits(t(logits[..., 0]), t(targets), reduction="none")
  ref = ref.numpy()
  for reduction in REDUCTIONS:
    want = {"none": ref, "mean": ref.mean(), "sum": ref.sum()}[reduction]
    assert_close(PIXEL_BCE(logits, targets, reduction=reduction), want)
  ignore = rng.uniform(size=targets.shape) < 0.4
  with_ignore = np.where(ignore, np.float32(255), targets)
  want_mean = ref[~ignore].mean()  # torch: mean over the kept pixels
  assert_close(PIXEL_BCE(logits, with_ignore, ignore_value=255.0), want_mean)
  assert_close(PIXEL_BCE(logits, with_ignore, ignore_value=255.0, reduction="none"),
               np.where(ignore, 0, ref))


@pytest.mark.parametrize("name", sorted(BOX_LOSSES))
def test_box_loss_gradients_match_torch_autograd(name):
  """CIoU's alpha is under no_grad in torchvision and under stop_gradient here."""
  _, ref = BOX_LOSSES[name]
  ours = {"giou": L.giou_loss, "diou": L.diou_loss, "ciou": L.ciou_loss}[name]
  a, b = box_pairs(11)
  a_t = t(a).requires_grad_(True)
  ref(a_t, t(b), reduction="sum").backward()
  got = jax.jit(jax.grad(lambda x: ours(x, b, reduction="sum")))(a)
  assert_close(got, a_t.grad.numpy())


def test_sigmoid_focal_gradient_matches_torch_autograd():
  rng = np.random.default_rng(12)
  logits = (rng.normal(size=(6, 5)) * 3).astype(np.float32)
  targets = (rng.uniform(size=(6, 5)) < 0.3).astype(np.float32)
  x_t = t(logits).requires_grad_(True)
  torchvision.ops.sigmoid_focal_loss(x_t, t(targets), reduction="sum").backward()
  got = jax.jit(jax.grad(lambda x: L.sigmoid_focal_loss(x, targets, reduction="sum")))(logits)
  assert_close(got, x_t.grad.numpy())
