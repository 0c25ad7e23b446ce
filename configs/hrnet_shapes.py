"""HRNetV2-W18 layout made small (branch widths 8, 16, 32, 64; stem 16; HR modules 1, 1, 2, 1;
2 blocks per branch) segmenting the `shapes` scenes at 128x128 into background + 5 shape
classes. No target of its own (its test halves the loss on a fixed batch).

  python train.py --config configs/hrnet_shapes.py --workdir runs/hrnet_shapes
"""
from configs.base import shapes_dense


def get_config():
  c = shapes_dense.get_config()  # data, CE + Dice, Adam + cosine, 2,000 steps of batch 8
  c.model = {"name": "hrnet_w18", "width": 8, "stem_width": 16, "num_modules": (1, 1, 2, 1),
             "num_blocks": (2, 2, 2, 2)}
  return c
