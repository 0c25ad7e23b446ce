"""U-Net (depth 4, width 8, BatchNorm) predicting unit surface normals of the `shapes`
scenes at 128x128 with the cosine loss, on 10,000 training scenes generated once and cached.
Targets (tests/test_dense_targets.py computes both baselines from the training split): test
`angle_mean` at most half of predicting the training set's per-pixel mean normal, and on
object pixels at most a third of both image-ignoring baselines there.

  python train.py --config configs/unet_normals_shapes.py --workdir runs/unet_normals_shapes
"""
from configs.base import shapes_dense


def get_config():
  c = shapes_dense.get_config()
  c.task = "normals"
  c.data.keys = ("normals",)
  # 10,000 scenes (cached in memory) and 4,000 steps: with width 4, 2,000 scenes
  # and 400 steps test angle_mean was 10.9 degrees, 14% better than the per-pixel mean normal
  # (12.6); objects, a tenth of the pixels, were still improving at 4,000 steps (18.6, 14.3,
  # 12.0 degrees at steps 1,000, 2,000, 4,000)
  c.data.split_sizes.train = 10000
  c.data.cache = True
  c.loss = {}
  c.best_metric = "angle_mean"
  c.best_mode = "min"
  c.model = shapes_dense.unet(width=8)
  c.batch_size = 8
  c.num_steps = 4000
  c.eval_every = c.checkpoint_every = 1000
  return c
