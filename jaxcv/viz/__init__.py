"""Drawing: pictures of images, labels and predictions as NumPy arrays and PNG files.

Every task's `draw` and the notebooks draw with these. Like `jaxcv.metrics`, this package
sits beside the models and the training code and imports none of them: NumPy, matplotlib
(colour maps and `Figure` with its own Agg canvas, never pyplot or `matplotlib.use`) and
PIL only, so it can be used in a notebook without touching its backend.

Images are RGB float `[H, W, 3]` in [0, 1] (gray `[H, W]` or `[H, W, 1]` is repeated);
coordinates are those of docs/conventions.md.

- `color`: `PALETTE`, `class_colors`, `as_rgb`, `colormap` (depth, errors), `value_range`,
  `normals_to_rgb`.
- `grid`: `tile` (images side by side, pixel for pixel), `render_grid` / `save_grid` (a
  figure with column titles), `save_png`, `to_uint8`.
- `overlay`: `overlay` (a semantic label map), `draw_masks` (instance masks), `blend`,
  `mask_edges`.
- `annotate`: `draw_boxes` (with class names and scores), `draw_keypoints` (with a
  skeleton, e.g. `COCO_SKELETON`).
"""
from jaxcv.viz.annotate import COCO_SKELETON, draw_boxes, draw_keypoints
from jaxcv.viz.color import (
  PALETTE,
  as_rgb,
  class_colors,
  colormap,
  normals_to_rgb,
  value_range,
)
from jaxcv.viz.grid import render_grid, save_grid, save_png, tile, to_uint8
from jaxcv.viz.overlay import blend, draw_masks, mask_edges, overlay

__all__ = [
    "COCO_SKELETON", "PALETTE", "as_rgb", "blend", "class_colors", "colormap", "draw_boxes",
    "draw_keypoints", "draw_masks", "mask_edges", "normals_to_rgb", "overlay", "render_grid",
    "save_grid", "save_png", "tile", "to_uint8", "value_range",
]
