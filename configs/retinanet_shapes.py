"""RetinaNet (small ResNet-18 FPN, `configs.base.detection.retinanet`) detecting the five
shape classes of the `shapes` scenes at 128x128: focal loss, torchvision's matcher (0.5 /
0.4) and test-time selection. Target: test `map50` >= 0.85 within 30 minutes on a 2-core
CPU (tests/test_detection_targets.py).

  python train.py --config configs/retinanet_shapes.py --workdir runs/retinanet_shapes
"""
import ml_collections

from configs.base import detection


def get_config() -> ml_collections.ConfigDict:
  return detection.one_stage_config(detection.retinanet())
