"""Mask R-CNN and Keypoint R-CNN trained through the loop (marked `slow`): one train step on
8 simulated devices equals the one-device step, for each. The 30-minute shapes targets:
tests/test_instance_targets.py."""
import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from conftest import load_config
from jaxcv.train.loop import Trainer
from jaxcv.train.mesh import global_batch
from test_detection_train import CANVAS, SMALL_MODEL
from test_train import host_batch, tree_allclose

pytestmark = pytest.mark.slow

BRANCH = {"maskrcnn_shapes": {"mask_layers": (16,) * 4, "mask_dim_reduced": 16},
          "panopticfpn_shapes": {"mask_layers": (16,) * 4, "mask_dim_reduced": 16,
                                 "sem_seg_conv_dims": 32},
          "keypointrcnn_shapes": {"keypoint_layers": (16,) * 8}}


def small_config(name):
  c = load_config(name)
  c.model.update(SMALL_MODEL)
  c.model.update(BRANCH[name])
  c.data.image_size = 64
  c.data.preprocess = CANVAS
  c.data.split_sizes = {"train": 64, "validation": 16, "test": 16}
  c.batch_size, c.eval_batch_size = 8, 16
  c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = 20, 0, 0, 10
  c.progress_bar = False
  c.mesh.shape = {"data": 1}
  return c


@pytest.mark.parametrize("name", sorted(BRANCH))
def test_one_step_on_8_devices_equals_one_device(name):
  assert len(jax.devices()) >= 8
  cfg = small_config(name)
  one = Trainer(cfg, mesh=Mesh(np.asarray(jax.devices()[:1]), ("data",)))
  eight = Trainer(cfg, mesh=Mesh(np.asarray(jax.devices()[:8]), ("data",)))
  state = one.new_state()
  batches = iter(one.batches(0))
  for _ in range(60):  # past the RPN's near-tied objectness (tests/test_detection_train.py)
    state, _ = one.train_step(state, next(batches))
  batch = host_batch(one, step=60)
  state8 = jax.device_put(jax.device_get(state), eight.state_sharding)
  s1, m1 = one.train_step(state, global_batch(batch, one.mesh))
  s8, m8 = eight.train_step(state8, global_batch(batch, eight.mesh))
  m1, m8 = jax.device_get((m1, m8))
  assert len(jax.tree.leaves(s8.params)[0].sharding.device_set) == 8
  assert ("loss_keypoint" if name.startswith("keypoint") else "loss_mask") in m1
  for k in m1:
    np.testing.assert_allclose(m8[k], m1[k], rtol=1e-3 if k == "grad_norm" else 1e-5,
                               err_msg=k)
  tree_allclose(jax.device_get(s8.params), jax.device_get(s1.params), rtol=1e-5, atol=1e-6)
  tree_allclose(jax.device_get(s8.batch_stats), jax.device_get(s1.batch_stats), rtol=1e-5,
                atol=1e-6)


@pytest.mark.parametrize("name", ["maskrcnn_shapes", "keypointrcnn_shapes"])
def test_predict_writes_masks_and_keypoints_that_score_as_pycocotools(name, tmp_path):
  """A briefly trained run, `jaxcv.predict` on a folder of PNGs with a COCO json of them
  (`jaxcv.data.export.to_coco`), then jaxcv's COCO evaluation of the segm / keypoints
  results equal to pycocotools' on the same files (segm scored without the boxes, as
  `python -m jaxcv.metrics.coco --iou-type segm` and detectron2 do)."""
  import contextlib
  import io
  import json

  from PIL import Image
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  import jaxcv.data as data_lib
  from jaxcv.data import export
  from jaxcv.metrics import coco
  from jaxcv.predict import predict_folder
  from jaxcv.train.loop import train_and_evaluate

  cfg = small_config(name)
  cfg.num_steps = 40
  train_and_evaluate(cfg, tmp_path / "run")
  ds = data_lib.load("shapes", "test", image_size=64, keys=tuple(cfg.data["keys"]),
                     split_sizes={"test": 8}, max_boxes=8)
  kp_names = ds.keypoint_names if name.startswith("keypoint") else None
  gt = export.to_coco(ds, keypoint_names=kp_names)
  folder = tmp_path / "images"
  folder.mkdir()
  for i, im in enumerate(gt["images"]):
    im["file_name"] = f"{im['id']}.png"
    Image.fromarray((ds.example(i)["image"] * 255).round().astype(np.uint8)).save(
        folder / im["file_name"])
  gt_path = tmp_path / "gt.json"
  gt_path.write_text(json.dumps(gt))
  preds = predict_folder(tmp_path / "run", folder, tmp_path / "preds.json",
                         annotations=str(gt_path), score_thresh=0.0)
  field, iou_type = (("segmentation", "segm") if name.startswith("mask") else
                     ("keypoints", "keypoints"))
  assert preds and all(field in p for p in preds)
  dets = [{k: v for k, v in p.items() if not (k == "bbox" and iou_type == "segm")}
          for p in preds]
  sigmas = np.asarray(ds.oks_sigmas) if iou_type == "keypoints" else None
  ours = coco.evaluate(gt, dets, iou_type, kpt_oks_sigmas=sigmas)
  with contextlib.redirect_stdout(io.StringIO()):
    ref_gt = COCO()
    ref_gt.dataset = gt
    ref_gt.createIndex()
    ev = COCOeval(ref_gt, ref_gt.loadRes(dets), iou_type)
    if sigmas is not None:
      ev.params.kpt_oks_sigmas = sigmas
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  np.testing.assert_allclose(ours, ev.stats, atol=1e-12)
  print(f"\n{name}: {len(preds)} results, {iou_type} AP {ours[0]:.4f} (pycocotools "
        f"{ev.stats[0]:.4f})")
