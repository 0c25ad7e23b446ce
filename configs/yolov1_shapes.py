"""YOLOv1 (narrow, BatchNorm: `yolov1_w8`) detecting the five shape classes of the `shapes`
scenes at 128x128 on an 8x8 grid (stride 16: the paper's network without its last two
downsampling steps), B=2 boxes per cell, the paper's sum-squared-error loss.

  python train.py --config configs/yolov1_shapes.py --workdir runs/yolov1_shapes
"""
import ml_collections

from configs.base import detection


def get_config() -> ml_collections.ConfigDict:
  c = detection.one_stage_config({"name": "yolov1_w8", "image_size": 128, "grid_size": 8,
                                  "hidden": 2048, "dropout": 0.5})
  return c
