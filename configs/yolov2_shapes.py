"""YOLOv2 (darknet's yolov2-voc.cfg at a quarter of its width: Darknet-19 of 8..256 channels,
the passthrough of 16 reorganised to 64, `jaxcv.models.detection.meta_arch.yolov2`)
detecting the five shape classes of the `shapes` scenes, upsampled from 128 to a 192x192
canvas so that the stride-32 grid has 6x6 cells (4x4 at 128 px puts several of a scene's up
to six objects in one cell; 8x8 at 256 px cost 2.6x the step time). Five anchors from
k-means with distance 1 - IoU on the training boxes; darknet's region loss (yolov2-voc's
scales, rescore, thresh .6), its decode and class-aware NMS. 4,000 steps of batch 8: 3.4
steps/s on the 2-core CPU at load 5 (a 50-step run), about 20 minutes. Target: test `map50`
>= 0.75 within 30 minutes on a 2-core CPU.

  python train.py --config configs/yolov2_shapes.py --workdir runs/yolov2_shapes

The anchors (`ANCHORS_CELLS`) are the output of `python -m configs.yolov2_shapes`:
`jaxcv.ops.anchors.kmeans_anchors` (k 5, key 0, 100 iterations) on the (w, h) of the
non-crowd boxes of the 2,000 training scenes, scaled to the canvas, divided by 32 (darknet's
[region] unit), rounded to 4 decimals; it also prints their mean IoU with the boxes beside
that of darknet's VOC priors (tests/test_yolov2.py checks them on a subset).
"""
import ml_collections
import numpy as np

from configs.base import detection

CANVAS = 192
K = 5
# python -m configs.yolov2_shapes (cells of 32 px on the 192 px canvas)
ANCHORS_CELLS = ((0.8369, 0.8728), (1.1765, 1.0931), (1.3203, 1.4491), (1.6701, 1.6092),
                 (1.9562, 1.9733))


def get_config() -> ml_collections.ConfigDict:
  c = detection.one_stage_config({"name": "yolov2", "width_mult": 0.25,
                                  "anchors": ANCHORS_CELLS, "detections_per_img": 100})
  c.data["preprocess"] = (("resize_to_canvas", {"min_size": CANVAS, "max_size": CANVAS,
                                                "canvas": CANVAS}),)
  c.num_steps = 4000
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.transfer.head = ("layer30",)          # the 1x1 prediction of yolov2-voc.cfg
  c.transfer.init_exclude = ("layer30",)
  return c


def shapes_boxes_wh(num_scenes: int = 2000, canvas: int = CANVAS, seed: int = 0,
                    image_size: int = 128) -> np.ndarray:
  """(w, h) in canvas pixels of the non-crowd boxes of the first `num_scenes` training
  scenes (what the region loss trains on)."""
  from jaxcv.data import shapes
  out = []
  for i in range(num_scenes):
    e = shapes.generate_example(seed, i, image_size, "train")
    b = e["boxes"][~e["iscrowd"]]
    out.append((b[:, 2:] - b[:, :2]) * (canvas / image_size))
  return np.concatenate(out).astype(np.float32)


def kmeans_report(wh: np.ndarray, k: int = K) -> dict:
  """k-means anchors of `wh` (pixels) in 32 px cells, and mean IoUs: theirs, and darknet's
  VOC priors (a) as cells of 32 px and (b) scaled to the same grid, i.e. the same fraction
  of the image (VOC's 13-cell grid at 416 px -> this canvas's grid)."""
  import jax
  import jax.numpy as jnp

  from jaxcv.ops.anchors import YOLOV2_VOC_ANCHORS_CELLS, kmeans_anchors
  from jaxcv.ops.box_coder import wh_iou
  cent, iou = kmeans_anchors(jnp.asarray(wh), k, jax.random.PRNGKey(0), num_iters=100)

  def mean_iou(px):
    return float(np.asarray(wh_iou(jnp.asarray(wh)[:, None], jnp.asarray(px, jnp.float32)[None]))
                 .max(1).mean())

  voc = np.asarray(YOLOV2_VOC_ANCHORS_CELLS, np.float64)
  return {"anchors_cells": np.round(np.asarray(cent, np.float64) / 32, 4),
          "kmeans_iou": float(iou), "voc_cells_iou": mean_iou(voc * 32),
          "voc_same_grid_iou": mean_iou(voc * (CANVAS / 32) / 13 * 32)}


if __name__ == "__main__":
  r = kmeans_report(shapes_boxes_wh())
  print("k-means anchors (cells):", tuple(map(tuple, r["anchors_cells"].tolist())))
  print(f"mean IoU: k-means {r['kmeans_iou']:.4f}, VOC priors as 32 px cells "
        f"{r['voc_cells_iou']:.4f}, VOC priors scaled to the same grid "
        f"{r['voc_same_grid_iou']:.4f}")
