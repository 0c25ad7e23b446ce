"""SSD (torchvision's SSD VGG-16 design, `configs.base.detection.ssd`: width 16, three small
extra blocks for 128 px) detecting the five shape classes of the `shapes` scenes at 128x128,
with SSD's augmentation (photometric distortion, zoom out, IoU crop, flip). Target: test
`map50` >= 0.80 within 30 minutes on a 2-core CPU (BENCHMARKS.md).

  python train.py --config configs/ssd_shapes.py --workdir runs/ssd_shapes
"""
import ml_collections

from configs.base import detection


def get_config() -> ml_collections.ConfigDict:
  c = detection.one_stage_config(detection.ssd())
  c.data["augmentation"] = detection.SSD_AUGMENTATION
  c.num_steps = 4000
  c.eval_every = 1000
  c.checkpoint_every = 1000
  return c
