"""U-Net (depth 4, width 8 = the paper's 64 / 8, BatchNorm, same padding) segmenting the
`shapes` scenes at 128x128 into background + 5 shape classes. Target: test `miou` >= 0.90
(tests/test_dense_targets.py).

  python train.py --config configs/unet_shapes.py --workdir runs/unet_shapes
"""
import ml_collections

from configs.base import shapes_dense


def get_config() -> ml_collections.ConfigDict:
  c = shapes_dense.get_config()
  c.model = shapes_dense.unet()
  # 10,000 training scenes, each generated once and then read from memory (about 650 MB),
  # and 5,000 steps: with 2,000 scenes and 2,000 steps test miou stalled at 0.83
  c.data.split_sizes.train = 10000
  c.data.cache = True
  c.num_steps = 5000
  c.eval_every = c.checkpoint_every = 1000
  return c
