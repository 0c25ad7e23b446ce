"""U-Net (depth 4, width 4, BatchNorm) predicting unit surface normals of the `shapes`
scenes at 128x128 with the cosine loss. Target: test `angle_mean` at most half of predicting
the training set's mean normal everywhere (tests/test_dense_targets.py computes that
baseline).

  python train.py --config configs/unet_normals_shapes.py --workdir runs/unet_normals_shapes
"""
from configs.base import shapes_dense


def get_config():
  c = shapes_dense.get_config()
  c.task = "normals"
  c.data.keys = ("normals",)
  c.loss = {}
  c.best_metric = "angle_mean"
  c.best_mode = "min"
  # a narrower net (width 4) and smaller batches than the segmentation config: geometry
  # regression needs less capacity, and this keeps the CPU run short
  c.model = shapes_dense.unet(width=4)
  c.batch_size = 8
  c.num_steps = 400
  c.eval_every = c.checkpoint_every = 200
  return c
