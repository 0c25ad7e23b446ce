"""Panoptic FPN (Mask R-CNN with a semantic FPN branch, small ResNet-18,
`configs.base.detection.panoptic_fpn`) on the `shapes` scenes at 128x128: the `panoptic`
task (things: the five shapes; stuff: wall and ground). The semantic loss weighs 0.5 as in
detectron2's Panoptic FPN configs. Target: test `pq` >= 0.6 within 30 minutes on a 2-core
CPU (tests/test_instance_targets.py).

  python train.py --config configs/panopticfpn_shapes.py --workdir runs/panopticfpn_shapes
"""
import ml_collections

from configs.base import detection


def get_config() -> ml_collections.ConfigDict:
  c = detection.with_keys(detection.get_config(), "masks", "panoptic", "segment_ids",
                          "segment_classes", "segment_isthing", "segment_iscrowd")
  c.task = "panoptic"
  c.data.max_segments = 16
  c.model = detection.panoptic_fpn()
  c.loss = {"loss_sem_seg": 0.5}
  c.best_metric = "pq"
  return c
