"""Mask R-CNN / Keypoint R-CNN and the `instance` / `keypoints` tasks (fast, tiny models):
the output contract, losses that are finite and zero without positives, a perfect prediction
scoring 1.0 through the task's evaluation, and the bad inputs of the issue (masks of the
wrong size, a crowd region without a mask, keypoints outside the image, a flip without the
left/right pairs). Parity with torchvision: tests/test_instance_torch.py."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import jaxcv.data as data_lib
import jaxcv.models as models
from jaxcv.models.detection.meta_arch.mask_rcnn import paste_masks
from jaxcv.train.tasks.instance import (COCO_PERSON_KEYPOINTS, Instance, Keypoints,
                                        flip_pairs_from_names)

SMALL = dict(num_classes=3, width=8, fpn_channels=16, representation_size=32,
             anchor_sizes=((8,), (16,), (32,), (64,), (128,)), rpn_pre_nms_top_n_train=200,
             rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=100,
             rpn_post_nms_top_n_test=50, box_batch_size_per_image=32,
             backbone_norm="batch", trainable_backbone_layers=5)
HEADS = {"maskrcnn_resnet18_fpn": dict(mask_layers=(8,) * 4, mask_dim_reduced=8),
         "keypointrcnn_resnet18_fpn": dict(keypoint_layers=(8,) * 8, num_keypoints=4)}


@pytest.fixture(scope="module", params=sorted(HEADS))
def small(request):
  name = request.param
  model = models.create(name, **SMALL, **HEADS[name])
  x = jnp.zeros((2, 64, 64, 3))
  variables = jax.jit(model.init)({"params": jax.random.key(0)}, x)
  loss = jax.jit(lambda v, x, t: model.apply(v, x, None, t, train=True,
                                             rngs={"sample": jax.random.key(1)},
                                             mutable=["batch_stats"])[0][0])
  predict = jax.jit(lambda v, x: model.apply(v, x)[0])
  return name, model, variables, loss, predict


def _targets(valid):
  boxes = np.tile(np.array([[8, 8, 40, 36], [30, 20, 60, 60], [0, 0, 0, 0]], np.float32),
                  (2, 1, 1))
  masks = np.zeros((2, 3, 64, 64), bool)
  masks[:, 0, 10:34, 10:38] = True
  masks[:, 1, 22:58, 32:58] = True
  kps = np.zeros((2, 3, 4, 3), np.float32)
  kps[:, 0] = [[24, 8, 2], [24, 36, 2], [8, 20, 1], [40, 20, 2]]
  kps[:, 1] = [[45, 20, 2], [45, 60, 0], [30, 40, 2], [60, 40, 2]]
  return {"boxes": jnp.asarray(boxes), "classes": jnp.asarray(np.tile([1, 3, 0], (2, 1))),
          "box_valid": jnp.asarray(valid), "masks": jnp.asarray(masks),
          "keypoints": jnp.asarray(kps)}


def test_losses_and_outputs(small):
  name, model, variables, loss, predict = small
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)), jnp.float32)
  extra = "loss_mask" if name.startswith("mask") else "loss_keypoint"
  some = np.array([[True, True, False], [True, False, False]])
  losses = jax.device_get(loss(variables, x, _targets(some)))
  assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                         "loss_box_reg", extra}
  # the ground-truth boxes are candidates, so there are positives; at init the mask BCE is
  # near log 2 and the heatmap CE near log(56 * 56)
  assert (0.3 < losses[extra] < 1.5) if extra == "loss_mask" else \
      (0.5 * np.log(56 * 56) < losses[extra] < 2 * np.log(56 * 56)), losses
  none = jax.device_get(loss(variables, x, _targets(np.zeros((2, 3), bool))))
  assert none[extra] == 0.0 and all(np.isfinite(v) for v in none.values())
  dets = jax.device_get(predict(variables, x))
  b, d = dets["valid"].shape
  if extra == "loss_mask":
    assert dets["mask_probs"].shape == (b, d, 28, 28)
    assert ((dets["mask_probs"] >= 0) & (dets["mask_probs"] <= 1)).all()
    masks = jax.device_get(paste_masks(dets, (64, 64)))
    assert masks.shape == (b, d, 64, 64) and masks.dtype == bool
    assert not masks[~dets["valid"]].any()  # invalid detections paste nothing
  else:
    assert dets["keypoints"].shape == (b, d, 4, 3) and dets["keypoint_scores"].shape == (b, d, 4)
    v = dets["valid"]
    bx, kp = dets["boxes"][v], dets["keypoints"][v]
    # decoded inside the box (torchvision: (x_int + 0.5) * width / ceil(width) + x1)
    assert ((kp[..., 0] >= bx[:, None, 0] - 1e-3) & (kp[..., 0] <= bx[:, None, 2] + 1e-3)).all()
    assert ((kp[..., 1] >= bx[:, None, 1] - 1e-3) & (kp[..., 1] <= bx[:, None, 3] + 1e-3)).all()


def test_model_rejects_bad_targets(small):
  name, model, variables, _, _ = small
  x = jnp.zeros((2, 64, 64, 3))
  t = _targets(np.ones((2, 3), bool))
  if name.startswith("mask"):
    bad, match = {**t, "masks": t["masks"][:, :, :32]}, r"targets\['masks'\] must be"
  else:
    bad, match = {**t, "keypoints": t["keypoints"][:, :, :3]}, r"targets\['keypoints'\]"
  with pytest.raises(ValueError, match=match):
    model.apply(variables, x, None, bad, train=True, rngs={"sample": jax.random.key(0)},
                mutable=["batch_stats"])
  missing = {k: v for k, v in t.items() if k not in ("masks", "keypoints")}
  with pytest.raises(ValueError, match="needs targets with keys"):
    model.apply(variables, x, None, missing, train=True, rngs={"sample": jax.random.key(0)},
                mutable=["batch_stats"])


class _Data:
  num_classes = 3
  class_counts = {"classes": 3}
  class_names = ("a", "b", "c")
  keypoint_names = ("top", "bottom", "left", "right")
  keypoint_flip_pairs = ((2, 3),)
  oks_sigmas = (0.08,) * 4


def _config(**data):
  return ml_collections.ConfigDict({"data": {"mean": 0.5, "std": 0.25, **data}})


def _batch():
  t = jax.device_get(_targets(np.array([[True, True, False], [True, False, False]])))
  return {"image": np.zeros((2, 64, 64, 3), np.float32), "image_id": np.array([1, 2]),
          "example_valid": np.ones(2, bool), "iscrowd": np.zeros((2, 3), bool),
          "area": np.full((2, 3), 500.0, np.float32), **t}


def test_instance_task_checks_batches_and_scores_a_perfect_prediction():
  task = Instance(_config(), _Data())
  batch = _batch()
  task.check_batch(batch)
  with pytest.raises(ValueError, match=r"'masks' must be \[B, M, H, W\] = \(2, 3, 64, 64\)"):
    task.check_batch({**batch, "masks": batch["masks"][..., :32]})
  with pytest.raises(ValueError, match="add 'masks' to config.data.keys"):
    task.check_batch({k: v for k, v in batch.items() if k != "masks"})
  crowd = batch["iscrowd"].copy()
  crowd[1, 0] = True
  empty = batch["masks"].copy()
  empty[1, 0] = False
  with pytest.raises(ValueError, match=r"crowd region has no mask pixel.*\(example 1, object 0"):
    task.check_batch({**batch, "iscrowd": crowd, "masks": empty})
  out = {"boxes": batch["boxes"], "scores": np.full((2, 3), 0.9, np.float32),
         "classes": batch["classes"], "valid": batch["box_valid"], "masks": batch["masks"]}
  acc = task.host_update(task.eval_init(), batch, out)
  res = task.result(acc)
  assert res["map"] == pytest.approx(1.0) and res["mask_map"] == pytest.approx(1.0)


def test_keypoints_task_checks_batches_and_scores_a_perfect_prediction():
  task = Keypoints(_config(), _Data())
  assert task.model_kwargs() == {"num_classes": 3, "num_keypoints": 4}
  batch = _batch()
  task.check_batch(batch)
  kp = batch["keypoints"].copy()
  kp[0, 1, 2] = [70, 40, 2]
  with pytest.raises(ValueError, match=r"keypoint lies outside the 64x64 image \(give it "
                                       r"v = 0.*\(example 0, object 1\)"):
    task.check_batch({**batch, "keypoints": kp})
  kp[0, 1, 2, 2] = 0  # unlabelled: anywhere
  task.check_batch({**batch, "keypoints": kp})
  with pytest.raises(ValueError, match=r"'keypoints' float \[B, M, K, 3\] = \(2, 3, 4, 3\)"):
    task.check_batch({**batch, "keypoints": batch["keypoints"][:, :, :2]})
  out = {"boxes": batch["boxes"], "scores": np.full((2, 3), 0.9, np.float32),
         "classes": batch["classes"], "valid": batch["box_valid"],
         "keypoints": batch["keypoints"]}
  # canvas at half the original size: keypoints scale back with the boxes
  scaled = {**batch, "image_hw": np.full((2, 2), 64), "orig_hw": np.full((2, 2), 128)}
  res = task.result(task.host_update(task.eval_init(), scaled, out))
  assert res["map"] == pytest.approx(1.0) and res["kp_map"] == pytest.approx(1.0)


def test_keypoints_task_needs_flip_pairs_and_sigmas():
  with pytest.raises(ValueError, match=r"random_hflip with keypoints must swap.*"
                                       r"flip_pairs=\(\(2, 3\),\)"):
    Keypoints(_config(augmentation=("random_hflip",)), _Data())
  Keypoints(_config(augmentation=(("random_hflip", {"flip_pairs": ((2, 3),)}),)), _Data())

  class NoKeypoints(_Data):
    keypoint_names = None

  with pytest.raises(ValueError, match="needs a data set with keypoints"):
    Keypoints(_config(), NoKeypoints())

  class NoSigmas(_Data):
    oks_sigmas = None

  with pytest.raises(ValueError, match="OKS sigmas"):
    Keypoints(_config(), NoSigmas())

  class Person(NoSigmas):
    keypoint_names = COCO_PERSON_KEYPOINTS
    keypoint_flip_pairs = None

  person = Keypoints(_config(), Person())
  assert len(person.oks_sigmas) == 17 and person.oks_sigmas[0] == pytest.approx(0.026)


def test_flip_pairs_from_names():
  assert flip_pairs_from_names(COCO_PERSON_KEYPOINTS) == (
      (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
  assert flip_pairs_from_names(("top", "bottom", "left", "right")) == ((2, 3),)


def test_shapes_carries_keypoint_metadata():
  ds = data_lib.load("shapes", "train", image_size=64, keys=("boxes", "keypoints"),
                     split_sizes={"train": 2})
  assert ds.keypoint_names == ("top", "bottom", "left", "right")
  assert ds.keypoint_flip_pairs == ((2, 3),) and len(ds.oks_sigmas) == 4
