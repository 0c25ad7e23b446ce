"""Faster R-CNN with FPN (small ResNet-18, `configs.base.detection.faster_rcnn`) detecting the
five shape classes of the `shapes` scenes at 128x128. Target: test `map50` >= 0.85 and `map`
>= 0.55 within 30 minutes on a 2-core CPU (tests/test_detection_targets.py).

  python train.py --config configs/fasterrcnn_shapes.py --workdir runs/fasterrcnn_shapes
"""
import ml_collections

from configs.base import detection


def get_config() -> ml_collections.ConfigDict:
  c = detection.get_config()
  c.model = detection.faster_rcnn()
  return c
