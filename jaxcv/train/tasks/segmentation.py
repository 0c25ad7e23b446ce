"""Semantic segmentation: per-pixel softmax cross-entropy (optional Dice); mIoU and accuracies.

A `DenseTask` (jaxcv/train/tasks/dense_base.py): the loss is written for ONE pixel and
`jax.vmap`ped over width, height and batch.

Conventions (docs/conventions.md): `batch["semantic"]` int32 `[B, H, W]`, class 0..C-1 with
C = `dataset.class_counts["semantic"]`, 255 = ignore. The model returns logits
`[B, h, w, C]` float32. When the output is smaller than the labels (a valid-padding U-Net),
the labels are centre-cropped to it (`center_crop`). Pixels with `pixel_valid` False
(padding added by an augmentation) are ignored as well.

Config: `config.data.mean` / `config.data.std` normalise the image (default 0 / 1);
`config.loss.dice_weight` (default 0) adds `dice_weight * soft Dice` (softmax probabilities,
mean over images and classes, ignored pixels masked) to the cross-entropy.

Metrics (`result`): `miou` (mean IoU over the classes present in ground truth or prediction
of the whole split), `pixel_accuracy`, `mean_accuracy` (from a `[C, C]` confusion matrix
accumulated in `eval_update`, `jaxcv.metrics.segmentation`) and `loss` (mean cross-entropy
over the split's counted pixels).

Pictures (`draw`): image | ground truth | prediction, labels painted with `jaxcv.viz.overlay`.
"""
from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import viz
from jaxcv.metrics import segmentation as seg_metrics
from jaxcv.ops import losses
from jaxcv.train import tasks
from jaxcv.train.tasks.checks import check_target
from jaxcv.train.tasks.dense_base import DenseTask, center_crop

IGNORE_LABEL = 255


def segmentation_pixel_loss(logits: jax.Array, label: jax.Array, valid: jax.Array
                            ) -> tuple[jax.Array, jax.Array]:
  """ONE pixel: logits float `[C]`, label int `[]`, valid bool `[]` -> `(loss [], counted [])`.

  Cross-entropy `-log softmax(logits)[label]` (`losses.one_pixel_softmax_cross_entropy`); 0 with
  `counted` False (and no gradient) for the ignore label 255, a label outside `[0, C)` or
  `valid` False."""
  label = jnp.where(valid, label, IGNORE_LABEL)
  return losses.one_pixel_softmax_cross_entropy(logits, label, IGNORE_LABEL)


_over_pixels = jax.vmap(jax.vmap(jax.vmap(segmentation_pixel_loss)))


@tasks.register("segmentation")
class Segmentation(DenseTask):
  """Per-pixel classification into `dataset.class_counts["semantic"]` classes."""
  metric_directions: ClassVar[dict[str, str]] = {
      "miou": "max", "pixel_accuracy": "max", "mean_accuracy": "max", "loss": "min"}

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    counts = getattr(dataset, "class_counts", None) or {}
    if "semantic" not in counts:
      raise ValueError(f"data set {getattr(dataset, 'name', '?')!r} has no 'semantic' label "
                       f"space (class_counts: {counts}); segmentation needs one")
    self.num_classes = self.num_outputs = int(counts["semantic"])
    self.dice_weight = float(self.loss_config.get("dice_weight", 0.0))
    if self.dice_weight < 0:
      raise ValueError(f"config.loss.dice_weight must be >= 0; got {self.dice_weight}")

  def check_batch(self, batch):
    b, h, w = super().check_batch(batch)
    labels = check_target(batch, "semantic", (b, h, w), floating=False)
    bad = ((labels < 0) | (labels >= self.num_classes)) & (labels != IGNORE_LABEL)
    if bad.any():
      i = np.argwhere(bad)[0]
      raise ValueError(f"semantic label {int(labels[tuple(i)])} at (row, y, x) = "
                       f"{tuple(int(v) for v in i)} is outside [0, {self.num_classes}) and not "
                       f"the ignore label {IGNORE_LABEL} (C = {self.num_classes} classes)")

  def prediction(self, logits):
    return jnp.argmax(logits, -1).astype(jnp.int32)

  def _pixel_losses(self, logits, batch):
    """`(ce [B, h, w], counted [B, h, w], labels [B, h, w])`, labels cropped to the output."""
    labels = center_crop(batch["semantic"], logits.shape[1:3])
    mask = self.pixel_mask(batch, logits.shape[1:3])
    ce, counted = _over_pixels(logits, labels, mask)
    return ce, counted, labels

  def loss(self, model, variables, batch, rng, train):
    logits, stats = self.outputs(model, variables, batch, train, rng)
    ce, counted, labels = self._pixel_losses(logits, batch)
    n = jnp.maximum(jnp.sum(counted), 1).astype(jnp.float32)
    ce_mean = jnp.sum(ce) / n
    loss = ce_mean
    metrics = {"cross_entropy": ce_mean}
    if self.dice_weight:
      onehot = jax.nn.one_hot(jnp.where(counted, labels, 0), logits.shape[-1])
      dice = losses.dice_loss(logits, onehot, mask=counted, activation="softmax")
      loss = loss + self.dice_weight * dice
      metrics["dice"] = dice
    pred = self.prediction(logits)
    metrics["pixel_accuracy"] = jnp.sum((pred == labels) & counted) / n
    return loss, (metrics, stats)

  def eval_init(self):
    return {"cm": jnp.zeros((self.num_classes, self.num_classes), jnp.int32),
            "loss": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.float32)}

  def eval_update(self, model, variables, batch, acc):
    logits, _ = self.outputs(model, variables, batch, False)
    ce, counted, labels = self._pixel_losses(logits, batch)
    cm = seg_metrics.update(acc["cm"], self.prediction(logits),
                            jnp.where(counted, labels, IGNORE_LABEL), IGNORE_LABEL)
    return {"cm": cm, "loss": acc["loss"] + jnp.sum(ce),
            "count": acc["count"] + jnp.sum(counted)}

  def result(self, acc):
    acc = jax.device_get(acc)
    m = seg_metrics.metrics(np.asarray(acc["cm"], np.int64))
    return {"miou": float(m["miou"]), "pixel_accuracy": float(m["pixel_accuracy"]),
            "mean_accuracy": float(m["mean_accuracy"]),
            "loss": float(acc["loss"]) / max(float(acc["count"]), 1.0)}

  def draw(self, model, variables, batch, path):
    """Up to 6 rows of image | ground-truth overlay | prediction overlay."""
    pred = self.compiled_predict(model, variables, batch)
    images = np.asarray(batch["image"])
    labels = self.cropped(batch, "semantic", pred.shape[1:3])
    images_c = self.cropped(batch, "image", pred.shape[1:3])
    paint = lambda img, lab: viz.overlay(img, lab, ignore_label=IGNORE_LABEL)
    rows = [[viz.as_rgb(images[i]), paint(images_c[i], labels[i]), paint(images_c[i], pred[i])]
            for i in range(min(6, len(images)))]
    viz.save_grid(rows, ["image", "ground truth", "prediction"], path)
