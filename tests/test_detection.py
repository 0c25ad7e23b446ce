"""The detection task, the canvas preprocess and the detector's errors (fast, small model).

Parity with torchvision: tests/test_detection_torch.py; training, sharding and users' own
data end to end: tests/test_detection_train.py.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import jaxcv.models as models
from jaxcv.data import augment
from jaxcv.train.tasks.detection import Detection, to_original_pixels

SMALL = dict(num_classes=3, width=8, fpn_channels=16, representation_size=32,
             anchor_sizes=((8,), (16,), (32,), (64,), (128,)), rpn_pre_nms_top_n_train=200,
             rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=100,
             rpn_post_nms_top_n_test=50, box_batch_size_per_image=32)


@pytest.fixture(scope="module")
def small():
  model = models.create("fasterrcnn_resnet18_fpn", backbone_norm="batch",
                        trainable_backbone_layers=5, **SMALL)
  x = jnp.zeros((2, 64, 64, 3))
  variables = jax.jit(model.init)({"params": jax.random.key(0)}, x)
  loss = jax.jit(lambda v, x, t, k: model.apply(v, x, None, t, train=True,
                                                rngs={"sample": k},
                                                mutable=["batch_stats"])[0][0])
  grad = jax.jit(jax.grad(lambda p, v, x, t, k: sum(model.apply(
      {**v, "params": p}, x, None, t, train=True, rngs={"sample": k},
      mutable=["batch_stats"])[0][0].values())))
  return model, variables, loss, grad


def _targets(valid):
  boxes = np.tile(np.array([[8, 8, 40, 36], [30, 20, 60, 60], [0, 0, 0, 0]], np.float32),
                  (2, 1, 1))
  return {"boxes": jnp.asarray(boxes), "classes": jnp.asarray(np.tile([1, 3, 0], (2, 1))),
          "box_valid": jnp.asarray(valid)}


def test_images_without_objects_train(small):
  """An image without objects trains as all background: finite losses, zero box losses,
  finite gradients (torchvision's negative-example path)."""
  model, variables, loss, grad = small
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)), jnp.float32)
  none = np.zeros((2, 3), bool)
  losses = jax.device_get(loss(variables, x, _targets(none), jax.random.key(1)))
  assert all(np.isfinite(v) for v in losses.values()), losses
  assert losses["loss_rpn_box_reg"] == 0 and losses["loss_box_reg"] == 0
  assert losses["loss_objectness"] > 0 and losses["loss_classifier"] > 0
  g = grad(variables["params"], variables, x, _targets(none), jax.random.key(1))
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(jax.device_get(g)))
  some = np.array([[True, True, False], [False, False, False]])
  losses = jax.device_get(loss(variables, x, _targets(some), jax.random.key(1)))
  assert losses["loss_rpn_box_reg"] > 0 and losses["loss_box_reg"] >= 0


def test_frozen_backbone_layers_get_no_gradient(small):
  """trainable_backbone_layers=3 (torchvision's default with pretrained weights): stem and
  stage1 get exactly zero gradient, stage2 does not."""
  model, variables, _, _ = small
  frozen = model.clone(trainable_backbone_layers=3)
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)), jnp.float32)
  t = _targets(np.array([[True, True, False], [True, False, False]]))
  g = jax.jit(jax.grad(lambda p: sum(frozen.apply({**variables, "params": p}, x, None, t, train=True,
                                          rngs={"sample": jax.random.key(0)},
                                          mutable=["batch_stats"])[0][0].values())))(
      variables["params"])
  norm = {k: float(optax_norm(g[k])) for k in ("stem", "stage1", "stage2")}
  assert norm["stem"] == 0 and norm["stage1"] == 0 and norm["stage2"] > 0, norm


def optax_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


def test_eval_outputs_follow_the_contract(small):
  model, variables, _, _ = small
  x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)), jnp.float32)
  hw = jnp.array([[64, 64], [40, 52]], jnp.int32)
  dets, aux = jax.jit(lambda v, x, hw: model.apply(v, x, hw))(variables, x, hw)
  dets = jax.device_get(dets)
  assert dets["boxes"].shape == (2, 100, 4) and dets["valid"].dtype == bool
  for b, (h, w) in enumerate([(64, 64), (40, 52)]):
    v = dets["valid"][b]
    bx = dets["boxes"][b][v]
    assert (bx[:, 0] >= 0).all() and (bx[:, 2] <= w).all() and (bx[:, 3] <= h).all()
    assert ((dets["classes"][b][v] >= 1) & (dets["classes"][b][v] <= 3)).all()
    assert (np.diff(dets["scores"][b][v]) <= 0).all()  # sorted
    assert (dets["scores"][b][~v] == 0).all()
    props = jax.device_get(aux["proposals"][b])[jax.device_get(aux["proposal_valid"][b])]
    assert (props[:, 2] <= w + 1e-4).all() and (props[:, 3] <= h + 1e-4).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(anchor_sizes=((32,), (64,), (128,), (256,))), "anchor_sizes has 4 levels but the "
                                                         "backbone gives 5 feature maps"),
    (dict(backbone="resnet19"), "unknown backbone 'resnet19'"),
    (dict(trainable_backbone_layers=6), "trainable_backbone_layers must be an int in"),
    (dict(aspect_ratios=((0.5, 1.0), (1.0,), (1.0,), (1.0,), (1.0,))), "same number of anchors"),
    (dict(box_head="mlp"), "box_head must be"),
])
def test_bad_configs_name_the_problem(kwargs, match):
  model = models.create("fasterrcnn_resnet18_fpn", **{**SMALL, **kwargs})
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(model.init, {"params": jax.random.key(0)}, jnp.zeros((1, 64, 64, 3)))


def test_bad_inputs_name_the_problem(small):
  model, variables, _, _ = small
  with pytest.raises(ValueError, match="divisible by 32"):
    jax.eval_shape(model.apply, variables, jnp.zeros((2, 60, 64, 3)))
  with pytest.raises(ValueError, match="image_hw must be"):
    jax.eval_shape(model.apply, variables, jnp.zeros((2, 64, 64, 3)), jnp.zeros((3, 2)))
  with pytest.raises(ValueError, match="needs targets"):
    jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 64, 64, 3)), train=True,
                                         rngs={"sample": jax.random.key(0)},
                                         mutable=["batch_stats"]), variables)


def test_converter_rejects_another_architecture():
  from jaxcv.weights.torchvision import load
  rng = np.random.default_rng(0)
  fake = {"backbone.body.conv1.weight": rng.normal(size=(64, 3, 7, 7)),
          "rpn.head.cls_logits.weight": rng.normal(size=(3, 256, 1, 1)),
          "roi_heads.box_predictor.cls_score.weight": rng.normal(size=(4, 1024))}
  for k in range(1, 5):  # a resnet18 body: 2 basic blocks per stage
    for i in range(2):
      fake[f"backbone.body.layer{k}.{i}.conv1.weight"] = np.zeros((1, 1, 1, 1))
  with pytest.raises(ValueError, match="has a resnet50 backbone, but this state_dict's "
                                       "backbone.body is resnet18"):
    load("fasterrcnn_resnet50_fpn", fake)
  with pytest.raises(ValueError, match="no 'roi_heads.box_predictor.cls_score.weight'"):
    load("fasterrcnn_resnet50_fpn", {"fc.weight": np.zeros((10, 512))})


def test_resize_to_canvas_sizes():
  img = np.random.default_rng(0).uniform(0, 1, (60, 90, 3)).astype(np.float32)
  ex = {"image": img, "boxes": np.array([[9, 6, 45, 30]], np.float32),
        "classes": np.array([2], np.int32), "area": np.array([36 * 24.0], np.float32)}
  fn = augment.build([("resize_to_canvas", {"min_size": 64, "max_size": 96, "canvas": 96})])
  out = fn(ex)
  # scale = min(64 / 60, 96 / 90) = 1.0667 -> floor: 64 x 96
  assert out["image"].shape == (96, 96, 3)
  assert out["image_hw"].tolist() == [64, 96] and out["orig_hw"].tolist() == [60, 90]
  assert (out["image"][64:] == 0).all()
  back, factor = to_original_pixels(out["boxes"][None], out["image_hw"][None],
                                    out["orig_hw"][None])
  np.testing.assert_allclose(back[0], ex["boxes"], rtol=1e-5)
  np.testing.assert_allclose(out["area"] * factor[0], ex["area"], rtol=1e-5)
  small = augment.build([("resize_to_canvas", {"min_size": 64, "max_size": 96,
                                               "canvas": 64})])
  with pytest.raises(ValueError, match="larger than the canvas 64x64"):
    small(ex)


class _Data:
  num_classes = 3
  class_counts = {"classes": 3}
  class_names = ("a", "b", "c")


def _task():
  return Detection(ml_collections.ConfigDict({"data": {"mean": 0.5, "std": 0.25}}), _Data())


def test_task_checks_batches():
  task = _task()
  assert task.model_kwargs() == {"num_classes": 3}
  assert task.class_names == ("background", "a", "b", "c")
  ok = {"image": np.zeros((2, 64, 64, 3), np.float32),
        "boxes": np.zeros((2, 4, 4), np.float32), "classes": np.ones((2, 4), np.int32),
        "box_valid": np.ones((2, 4), bool), "image_hw": np.full((2, 2), 64, np.int32)}
  task.check_batch(ok)
  with pytest.raises(ValueError, match=r"object class 4 \(row 0, object 1\) is outside 1..3"):
    task.check_batch({**ok, "classes": np.array([[1, 4, 1, 1], [1, 1, 1, 1]], np.int32)})
  with pytest.raises(ValueError, match="object class 0"):
    task.check_batch({**ok, "classes": np.zeros((2, 4), np.int32)})
  task.check_batch({**ok, "classes": np.zeros((2, 4), np.int32),
                    "box_valid": np.zeros((2, 4), bool)})  # padding rows: anything
  with pytest.raises(ValueError, match="image_hw"):
    task.check_batch({**ok, "image_hw": np.full((2, 2), 65, np.int32)})
  with pytest.raises(ValueError, match="batch has no 'boxes'"):
    task.check_batch({k: v for k, v in ok.items() if k != "boxes"})


def test_host_update_maps_both_sides_to_original_pixels():
  """Ground truth and detections scaled back alike: a perfect detection stays perfect and
  the areas (small/medium/large) are the original image's."""
  task = _task()
  acc = task.eval_init()
  boxes = np.array([[[10, 10, 30, 40]]], np.float32)  # in a canvas at scale 0.5
  batch = {"image_id": np.array([1]), "example_valid": np.array([True]), "boxes": boxes,
           "classes": np.array([[2]]), "box_valid": np.array([[True]]),
           "iscrowd": np.array([[False]]), "area": np.array([[600.0]], np.float32),
           "image_hw": np.array([[50, 60]]), "orig_hw": np.array([[100, 120]])}
  out = {"boxes": boxes, "scores": np.array([[0.9]], np.float32), "classes": np.array([[2]]),
         "valid": np.array([[True]])}
  acc = task.host_update(acc, batch, out)
  m = task.result(acc)
  assert m["map"] == pytest.approx(1.0)
  # 40x60 px = 2400 in the original image: "medium" (32^2..96^2), not "small" as in the canvas
  assert m["map_medium"] == pytest.approx(1.0) and m["map_small"] == -1.0
