"""FCN-8s (VGG-16 layout at width 8 = the paper's 64 / 8, learned bilinear-initialised
up-convolutions, pool3/pool4 skips) segmenting the `shapes` scenes at 128x128. FCN-32s and
FCN-16s are the same config with `--config.model.name=fcn32s` / `fcn16s`. No target of its
own (tests/test_fcn_deeplab.py shows each variant halving its loss on a fixed batch).

  python train.py --config configs/fcn8s_shapes.py --workdir runs/fcn8s_shapes
"""
from configs.base import shapes_dense


def get_config():
  c = shapes_dense.get_config()  # data, CE + Dice, Adam + cosine, 2,000 steps of batch 8
  c.model = {"name": "fcn8s", "width": 8, "hidden": 64}
  return c
