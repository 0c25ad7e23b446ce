"""FCOS (small ResNet-18 FPN, `configs.base.detection.fcos`) detecting the five shape classes
of the `shapes` scenes at 128x128: anchor-free points with centre sampling, focal + GIoU +
centre-ness losses, torchvision's test-time score. Target: test `map50` >= 0.85 within 30
minutes on a 2-core CPU (tests/test_detection_targets.py).

  python train.py --config configs/fcos_shapes.py --workdir runs/fcos_shapes
"""
import ml_collections

from configs.base import detection


def get_config() -> ml_collections.ConfigDict:
  return detection.one_stage_config(detection.fcos())
