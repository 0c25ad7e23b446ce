"""SegNet (VGG-16 layout, width 8 = the paper's 64 / 8) segmenting the `shapes` scenes at
128x128 into background + 5 shape classes; the decoder upsamples with the encoder's pooling
indices. No target of its own (its test halves the loss on a fixed batch).

  python train.py --config configs/segnet_shapes.py --workdir runs/segnet_shapes
"""
from configs.base import shapes_dense


def get_config():
  c = shapes_dense.get_config()  # data, CE + Dice, Adam + cosine, 2,000 steps of batch 8
  c.model = {"name": "segnet", "width": 8}
  return c
