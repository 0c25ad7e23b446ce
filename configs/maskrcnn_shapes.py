"""Mask R-CNN with FPN (small ResNet-18, `configs.base.detection.mask_rcnn`) on the `shapes`
scenes at 128x128: the `instance` task (box `map` and `mask_map`). Target: test `mask_map`
>= 0.55 with box `map` >= 0.55 within 30 minutes on a 2-core CPU
(tests/test_instance_targets.py).

  python train.py --config configs/maskrcnn_shapes.py --workdir runs/maskrcnn_shapes
"""
import ml_collections

from configs.base import detection


def get_config() -> ml_collections.ConfigDict:
  c = detection.with_keys(detection.get_config(), "masks")
  c.task = "instance"
  c.model = detection.mask_rcnn()
  c.best_metric = "mask_map"
  return c
