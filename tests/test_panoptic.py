"""Panoptic FPN and the `panoptic` task (fast, a tiny model on 64 px shapes scenes): the
losses (Mask R-CNN's plus `loss_sem_seg`), the semantic output left at 0 on padding, the
merge through `panoptic_outputs`, a perfect prediction scoring PQ 1 through the task, and a
panoptic map naming a segment without info. The parts against their references:
tests/test_panoptic_parts.py."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import jaxcv.data as data_lib
import jaxcv.models as models
from jaxcv.models.detection.meta_arch.panoptic_fpn import panoptic_outputs
from jaxcv.train.tasks.panoptic import Panoptic

KEYS = ("boxes", "classes", "iscrowd", "area", "masks", "panoptic", "segment_ids",
        "segment_classes", "segment_isthing", "segment_iscrowd")


@pytest.fixture(scope="module")
def data():
  ds = data_lib.load("shapes", "validation", image_size=64, keys=KEYS,
                     split_sizes={"validation": 4}, max_boxes=8, max_segments=16)
  batch = ds.get(np.arange(2))
  batch["example_valid"] = np.ones(2, bool)
  batch["image_hw"] = np.array([[64, 64], [48, 64]], np.int32)
  return ds, batch


def test_losses_and_outputs(data):
  ds, batch = data
  model = models.create("panopticfpn_resnet18_fpn", num_classes=5, width=8, fpn_channels=16,
                        representation_size=32, mask_layers=(8,) * 4, mask_dim_reduced=8,
                        sem_seg_conv_dims=32, stuff_classes=ds.stuff_classes,
                        backbone_norm="batch", trainable_backbone_layers=5,
                        rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50,
                        rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
                        box_batch_size_per_image=32, combine_stuff_area_thresh=16)
  x = jnp.asarray(batch["image"])
  v = jax.jit(model.init)({"params": jax.random.key(0)}, x)
  assert "sem_seg_head" in v["params"]
  targets = {k: jnp.asarray(batch[k]) for k in model.target_keys}
  losses = jax.jit(lambda v, x, hw, t: model.apply(
      v, x, hw, t, train=True, rngs={"sample": jax.random.key(1)},
      mutable=["batch_stats"])[0][0])(v, x, jnp.asarray(batch["image_hw"]), targets)
  losses = jax.device_get(losses)
  assert "loss_sem_seg" in losses and "loss_mask" in losses
  # detectron2's c2_msra_fill predictor starts with large logits: a large but finite loss
  assert np.isfinite(losses["loss_sem_seg"]) and losses["loss_sem_seg"] > 0.1, losses
  out = jax.device_get(jax.jit(lambda v, x, hw: panoptic_outputs(
      model, model.apply(v, x, hw)[0], x.shape[1:3]))(v, x, jnp.asarray(batch["image_hw"])))
  assert out["semantic"].shape == (2, 64, 64) and (out["semantic"][1, 48:] == 0).all()
  assert out["panoptic"].shape == (2, 64, 64) and out["masks"].shape[2:] == (64, 64)
  d = out["valid"].shape[1]
  assert out["segment_ids"].shape == (2, d + 2)
  # every id in the map is a valid segment, and every valid segment has pixels
  for i in range(2):
    ids = out["segment_ids"][i][out["segment_valid"][i]]
    assert set(np.unique(out["panoptic"][i])) - {0} <= set(ids.tolist())


def _task(ds):
  return Panoptic(ml_collections.ConfigDict({"data": {"mean": 0.5, "std": 0.25}}), ds)


def test_task_scores_a_perfect_prediction_and_checks_segments(data):
  ds, batch = data
  task = _task(ds)
  assert task.model_kwargs()["stuff_classes"] == (6, 7)
  task.check_batch(batch)
  bad = dict(batch, panoptic=np.where(batch["panoptic"] == 1, 99, batch["panoptic"]))
  with pytest.raises(ValueError, match=r"example 0: the panoptic map names segment ids \[99\]"):
    task.check_batch(bad)
  semantic = np.zeros((2, 64, 64), np.int32)  # the branch's labels: things 0, wall 1, ground 2
  for i in range(2):
    for sid, cls, valid in zip(batch["segment_ids"][i], batch["segment_classes"][i],
                               batch["segment_valid"][i]):
      if valid and cls in (6, 7):
        semantic[i][batch["panoptic"][i] == sid] = 1 + (cls == 7)
  semantic[1, 48:] = 0
  out = {"boxes": batch["boxes"], "scores": np.full(batch["classes"].shape, 0.9, np.float32),
         "classes": batch["classes"], "valid": batch["box_valid"] & ~batch["iscrowd"],
         "masks": batch["masks"], "panoptic": batch["panoptic"], "semantic": semantic,
         "segment_ids": batch["segment_ids"], "segment_classes": batch["segment_classes"],
         "segment_isthing": batch["segment_isthing"], "segment_valid": batch["segment_valid"],
         "segment_scores": np.ones(batch["segment_ids"].shape, np.float32),
         "segment_area": np.stack([[np.sum(batch["panoptic"][i] == s) for s in
                                    batch["segment_ids"][i]] for i in range(2)]),
         "segment_instance": np.zeros(batch["segment_ids"].shape, np.int32)}
  res = task.result(task.host_update(task.eval_init(), batch, out))
  for k in ("pq", "sq", "rq", "pq_things", "pq_stuff", "miou"):
    assert res[k] == pytest.approx(1.0), (k, res)
  assert res["map"] == pytest.approx(1.0) and res["mask_map"] == pytest.approx(1.0)
