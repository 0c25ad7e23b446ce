"""RetinaNet and the shared dense-detector parts (`jaxcv.models.detection.dense_heads`):

- the test-time selection (`dense_detections`) equals a NumPy loop written from
  torchvision's `RetinaNet.postprocess_detections` (per level: threshold, top-k; then
  class-aware greedy NMS, the best D) on random heads;
- the losses on hand-made cases: an image without objects has a finite classification loss
  and no box loss; the focal loss of a single matched anchor against its analytic value;
- bad input: anchors that do not fit the feature levels, an unknown box loss, training
  without targets: ValueErrors naming the problem;
- (slow, .ci/run) one train step of `configs/retinanet_shapes.py` on 8 simulated devices
  equals the one-device step.

Parity with torchvision: tests/test_retinanet_torch.py.
"""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

import jaxcv.models as models
from jaxcv.models.detection.dense_heads.anchor_assignment import anchor_matches
from jaxcv.models.detection.dense_heads.postprocess import dense_detections
from jaxcv.models.detection.dense_heads.retinanet_loss import retinanet_losses

TINY = {"width": 8, "fpn_channels": 16, "num_groups": 4}
X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 96, 3)), jnp.float32)


def numpy_iou(a, b):
  lt = np.maximum(a[:, None, :2], b[None, :, :2])
  rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = np.prod(np.clip(rb - lt, 0, None), -1)
  area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
  return inter / (area(a)[:, None] + area(b)[None] - inter)


def reference_selection(scores, boxes, level_sizes, hw, thresh, topk, nms, d):
  """One image, NumPy: torchvision's per-level selection then class-aware greedy NMS."""
  h, w = hw
  boxes = np.stack([np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h),
                    np.clip(boxes[:, 2], 0, w), np.clip(boxes[:, 3], 0, h)], -1)
  k = scores.shape[1]
  cs, cb, cc, start = [], [], [], 0
  for n in level_sizes:
    flat = scores[start:start + n].reshape(-1)
    idx = np.nonzero(flat > thresh)[0]
    idx = idx[np.argsort(-flat[idx], kind="stable")][:topk]
    cs.append(flat[idx])
    cb.append(boxes[start + idx // k])
    cc.append(idx % k + 1)
    start += n
  s, b, c = np.concatenate(cs), np.concatenate(cb), np.concatenate(cc)
  order = np.argsort(-s, kind="stable")
  keep = []
  # suppressed where IoU > nms_thresh, as torchvision's kernel: boxes clipped to zero area
  # have IoU 0/0 = NaN with each other, which suppresses nothing
  with np.errstate(invalid="ignore"):
    for i in order:
      if not any(c[j] == c[i] and numpy_iou(b[i:i + 1], b[j:j + 1])[0, 0] > nms for j in keep):
        keep.append(i)
  keep = keep[:d]
  return b[keep], s[keep], c[keep]


@pytest.mark.parametrize("seed", range(3))
def test_selection_equals_a_numpy_loop(seed):
  rng = np.random.default_rng(seed)
  level_sizes, k = (60, 30, 10), 4
  n = sum(level_sizes)
  scores = rng.uniform(0, 1, (2, n, k)).astype(np.float32) ** 3  # many below the threshold
  xy = rng.uniform(0, 80, (2, n, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(4, 40, (2, n, 2))], -1).astype(np.float32)
  hw = np.array([[64, 96], [50, 70]], np.int32)
  out = jax.jit(lambda s, b, h: dense_detections(
      s, b, level_sizes, h, score_thresh=0.05, topk_candidates=20, nms_thresh=0.5,
      detections_per_img=25))(scores, boxes, hw)
  for i in range(2):
    rb, rs, rc = reference_selection(scores[i], boxes[i], level_sizes, hw[i], 0.05, 20, 0.5, 25)
    v = np.asarray(out["valid"][i])
    assert v.sum() == len(rs) > 5
    np.testing.assert_allclose(np.asarray(out["scores"][i])[v], rs, rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(out["boxes"][i])[v], rb, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["classes"][i])[v], rc)


def test_losses_on_hand_made_cases():
  anchors = jnp.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 70]], jnp.float32)
  gt = jnp.array([[[0, 0, 10, 10], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]], jnp.float32)
  valid = jnp.array([[True, False], [False, False]])
  classes = jnp.array([[2, 0], [0, 0]])
  matches = anchor_matches(anchors, gt, valid, 0.5, 0.4)
  np.testing.assert_array_equal(matches, [[0, -1, -1], [-1, -1, -1]])
  logits = jnp.zeros((2, 3, 4))
  losses = retinanet_losses(logits, jnp.zeros((2, 3, 4)), anchors, matches, gt, classes)
  # at logit 0, p = 1/2: focal = alpha_t * (1/2)^2 * log 2 per entry; image 0 has one target
  # entry (alpha 0.25) and 11 background ones (0.75), over 1 foreground anchor; image 1 has
  # 12 background entries over max(1, 0) = 1
  unit = 0.25 * np.log(2)
  expected = ((0.25 + 11 * 0.75) * unit + 12 * 0.75 * unit) / 2
  np.testing.assert_allclose(losses["classification"], expected, rtol=1e-6)
  np.testing.assert_allclose(losses["bbox_regression"], 0.0, atol=1e-7)  # exact anchor = gt
  assert np.isfinite(np.asarray(jax.tree.leaves(losses))).all()


def test_anchor_levels_must_fit_the_feature_levels():
  m = models.create("retinanet_resnet18_fpn", num_classes=3, **TINY,
                    anchor_sizes=((8,), (16,), (32,), (64,)))
  with pytest.raises(ValueError, match="anchor_sizes has 4 levels but the backbone gives 5"):
    m.init(jax.random.key(0), X)
  m = models.create("retinanet_resnet18_fpn", num_classes=3, **TINY,
                    anchor_sizes=((8,), (16, 20), (32,), (64,), (128,)))
  with pytest.raises(ValueError, match="same number of anchors per location"):
    m.init(jax.random.key(0), X)


def test_bad_configuration_and_inputs_are_named():
  m = models.create("retinanet_resnet18_fpn", num_classes=3, **TINY, box_loss="iou")
  with pytest.raises(ValueError, match="box_loss must be one of"):
    m.init(jax.random.key(0), X)
  m = models.create("retinanet_resnet18_fpn", num_classes=3, **TINY)
  v = m.init(jax.random.key(0), X)
  with pytest.raises(ValueError, match="in training needs targets with keys"):
    m.apply(v, X, None, None, train=True, mutable=["batch_stats"])
  with pytest.raises(ValueError, match="divisible by 32"):
    m.apply(v, X[:, :50])


@pytest.mark.slow
def test_retinanet_step_on_8_devices_equals_one_device():
  from test_detection_train import check_step_on_8_devices, small_config  # noqa: PLC0415
  m1 = check_step_on_8_devices(small_config("retinanet_shapes", model=TINY))
  assert {"classification", "bbox_regression"} <= set(m1)


def test_a_dense_detector_without_its_hooks_is_named():
  from jaxcv.models.detection.meta_arch.dense_detector import DenseDetector

  class Headless(DenseDetector):
    pass

  with pytest.raises(TypeError, match="Headless is a DenseDetector without its own "
                                      r"head_outputs\(\)"):
    jax.eval_shape(Headless(num_classes=3, backbone="resnet18", **TINY).init,
                   jax.random.key(0), X)
