"""Sketch-to-image on `shapes` at 128x128: a U-Net (depth 4, width 8, BatchNorm, ONE input
channel: the edge sketch, normalised to [-1, 1]) maps the sketch to the RGB image with a
per-pixel L1 loss (output `sigmoid`). Colours are random per scene, so the model learns the
layout and the mean appearance of walls, ground and shapes; tests/test_unet.py checks that a
few dozen steps on a fixed batch halve the loss.

  python train.py --config configs/unet_sketch2image_shapes.py --workdir runs/unet_sketch2image
"""
from configs.base import shapes_dense


def get_config():
  c = shapes_dense.get_config()
  c.task = "image_to_image"
  c.model = shapes_dense.unet(in_channels=1)  # the sketch
  c.data.keys = ("sketch",)
  c.data.mean, c.data.std = (0.5,), (0.5,)
  c.loss = {}
  c.best_metric = "l1"
  c.best_mode = "min"
  return c
