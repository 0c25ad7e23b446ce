"""Object detection: a detector's own losses in training, COCO mAP on the host in evaluation.

Batches (docs/conventions.md): `image` float32 `[B, H, W, 3]` (the canvas: every image of a
config has the same padded size), `boxes [B, M, 4]` in canvas pixels, `classes [B, M]`
(1..C), `box_valid`, `iscrowd`, `area`, and, from the `resize_to_canvas` preprocess,
`image_hw` int32 `[B, 2]` (each image's valid height and width in the canvas) and `orig_hw`
(its size before resizing). Without `image_hw` the whole canvas is the image.

The model (`jaxcv.models.detection`) is built with `num_classes = C` (objects; the
background is the detector's index 0). It trains on the objects that are not crowd regions
(`box_valid & ~iscrowd`; the batch keys it needs are its `target_keys`, so Mask / Keypoint
R-CNN get `masks` / `keypoints` too). Its training output is a dict of losses; the task's
loss is their sum weighted by `config.loss.<name>` (default 1 each, as torchvision's
reference scripts). Evaluation (`HostEvalTask`): `predict` gives the padded detections
(`boxes`, `scores`, `classes`, `valid`); `host_update` maps detections and ground truth back
to the original image's pixels (`orig_hw / image_hw` per axis, areas by the product) and
feeds `jaxcv.metrics.coco.COCOEvaluator`: `map`, `map50`, `map75`, `map_small`,
`map_medium`, `map_large`, `mar100`. Pictures (`draw`): ground truth | predictions with
class names and scores (`jaxcv.viz.draw_boxes`), predictions above `draw_score_thresh`.
"""
from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import viz
from jaxcv.metrics.coco import COCOEvaluator
from jaxcv.train import tasks
from jaxcv.train.tasks.base import HostEvalTask
from jaxcv.train.tasks.checks import check_dense_batch, check_target

TARGET_KEYS = ("boxes", "classes", "box_valid")


def _stat(data, key: str, default: float) -> jax.Array:
  v = np.asarray(data.get(key, (default,) * 3), np.float32).reshape(-1)
  if v.size not in (1, 3):
    raise ValueError(f"config.data.{key} must be a number or 3 numbers; got {v.tolist()}")
  return jnp.asarray(np.broadcast_to(v, (3,)))


def to_original_pixels(boxes: np.ndarray, image_hw: np.ndarray, orig_hw: np.ndarray):
  """Boxes `[B, N, 4]` in canvas pixels -> the original images' pixels, and the area factor
  `[B, 1]` (torchvision's `transform.postprocess`: ratio of original to resized size)."""
  ratio = np.asarray(orig_hw, np.float64) / np.maximum(np.asarray(image_hw, np.float64), 1)
  sy, sx = ratio[:, :1], ratio[:, 1:]
  scale = np.stack([sx, sy, sx, sy], -1)  # [B, 1, 4]
  return (np.asarray(boxes, np.float64) * scale).astype(np.float32), (sx * sy)


@tasks.register("detection")
class Detection(HostEvalTask):
  """Boxes and classes of objects, the model's own losses (Faster R-CNN and later)."""
  metric_directions: ClassVar[dict[str, str]] = {
      "map": "max", "map50": "max", "map75": "max", "map_small": "max", "map_medium": "max",
      "map_large": "max", "mar100": "max"}
  data_config_keys = ("mean", "std")

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    counts = getattr(dataset, "class_counts", None) or {}
    self.num_classes = self.num_outputs = int(counts.get("classes", dataset.num_classes))
    names = getattr(dataset, "class_names", None)
    self.class_names = (("background",) + tuple(names)
                        if names is not None and len(names) == self.num_classes else None)
    data = config.get("data", {})
    self.mean, self.std = _stat(data, "mean", 0.0), _stat(data, "std", 1.0)
    if not np.all(np.asarray(self.std) > 0):
      raise ValueError(f"config.data.std must be > 0; got {np.asarray(self.std).tolist()}")
    self.loss_weights = dict(config.get("loss", None) or {})
    self.draw_score_thresh = float(config.get("draw_score_thresh", 0.5))

  def check_batch(self, batch):
    b, h, w = check_dense_batch(batch)
    boxes = check_target(batch, "boxes", (b,) + np.shape(batch.get("boxes"))[1:2] + (4,),
                         floating=True)
    m = boxes.shape[1]
    classes = check_target(batch, "classes", (b, m), floating=False)
    if "box_valid" not in batch or np.shape(batch["box_valid"]) != (b, m):
      raise ValueError(f"batch needs 'box_valid' bool [B, M] = {(b, m)}; got "
                       f"{np.shape(batch.get('box_valid'))}")
    valid = np.asarray(batch["box_valid"], bool)
    bad = valid & ((classes < 1) | (classes > self.num_classes))
    if bad.any():
      i, j = np.argwhere(bad)[0]
      raise ValueError(f"object class {int(classes[i, j])} (row {i}, object {j}) is outside "
                       f"1..{self.num_classes} (0 is the background, never an object)")
    for key in ("image_hw", "orig_hw"):
      if key in batch and np.shape(batch[key]) != (b, 2):
        raise ValueError(f"batch {key!r} must be int [B, 2] = {(b, 2)}; got "
                         f"{np.shape(batch[key])}")
    if "image_hw" in batch:
      hw = np.asarray(batch["image_hw"])
      if (hw < 1).any() or (hw[:, 0] > h).any() or (hw[:, 1] > w).any():
        raise ValueError(f"batch 'image_hw' must lie in [1, canvas {h}x{w}]; got {hw.tolist()}")

  def model_input(self, batch):
    return (batch["image"] - self.mean) / self.std

  def _image_hw(self, batch):
    return batch.get("image_hw")

  def loss(self, model, variables, batch, rng, train):
    targets = {k: batch[k] for k in getattr(model, "target_keys", TARGET_KEYS)}
    if "iscrowd" in batch:  # crowd regions never train (torchvision's and detectron2's rule)
      targets["box_valid"] = batch["box_valid"] & ~batch["iscrowd"]
    sample, dropout = jax.random.split(rng)
    args = (self.model_input(batch), self._image_hw(batch), targets)
    has_stats = "batch_stats" in variables
    if has_stats:
      (losses, _), updates = model.apply(variables, *args, train=True,
                                         rngs={"sample": sample, "dropout": dropout},
                                         mutable=["batch_stats"])
      stats = updates["batch_stats"]
    else:
      losses, _ = model.apply(variables, *args, train=True,
                              rngs={"sample": sample, "dropout": dropout})
      stats = {}
    unknown = sorted(set(self.loss_weights) - set(losses))
    if unknown:
      raise ValueError(f"config.loss names {unknown}, which the model does not compute; its "
                       f"losses: {sorted(losses)}")
    total = sum(float(self.loss_weights.get(k, 1.0)) * v for k, v in losses.items())
    return total, (dict(losses), stats)

  def predict(self, model, variables, batch):
    dets, _ = model.apply(variables, self.model_input(batch), self._image_hw(batch))
    return dets

  def eval_init(self):
    return COCOEvaluator(num_classes=self.num_classes)

  def host_update(self, acc, batch, outputs):
    batch, outputs = dict(batch), dict(outputs)
    if "image_hw" in batch and "orig_hw" in batch:
      outputs["boxes"], _ = to_original_pixels(outputs["boxes"], batch["image_hw"],
                                               batch["orig_hw"])
      batch["boxes"], factor = to_original_pixels(batch["boxes"], batch["image_hw"],
                                                  batch["orig_hw"])
      if "area" in batch:
        batch["area"] = (np.asarray(batch["area"], np.float64) * factor).astype(np.float32)
      batch.pop("image", None)  # COCOEvaluator reads the image size only for masks
    acc.update(batch, outputs)
    return acc

  def result(self, acc):
    return acc.compute()

  def draw(self, model, variables, batch, path):
    """Up to 6 rows of ground truth | predictions (score >= draw_score_thresh)."""
    out = self.compiled_predict(model, variables, batch)
    images = np.asarray(batch["image"])
    rows = []
    for i in range(min(6, len(images))):
      img = viz.as_rgb(images[i])
      gt = viz.draw_boxes(img, batch["boxes"][i], batch["classes"][i],
                          valid=batch["box_valid"][i], class_names=self.class_names, scale=2)
      keep = out["valid"][i] & (out["scores"][i] >= self.draw_score_thresh)
      pred = viz.draw_boxes(img, out["boxes"][i], out["classes"][i], out["scores"][i],
                            valid=keep, class_names=self.class_names, scale=2)
      rows.append([gt, pred])
    viz.save_grid(rows, ["ground truth", "predictions"], path)
