"""Image classification: softmax cross-entropy; accuracy, top-5 and loss."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcv import viz
from jaxcv.ops import image_augment
from jaxcv.train import tasks
from jaxcv.train.tasks.base import Task, apply_model
from jaxcv.train.tasks.checks import check_image_batch


@tasks.register("classification")
class Classification(Task):
  metric_directions = {"accuracy": "max", "top5": "max", "loss": "min"}
  data_config_keys = ("mean", "std")  # input normalisation (`model_input`)

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    self.image_shape = tuple(dataset.image_shape)
    data = config.get("data", {})
    self.mean = jnp.asarray(data.get("mean", (0.0, 0.0, 0.0)), jnp.float32)
    self.std = jnp.asarray(data.get("std", (1.0, 1.0, 1.0)), jnp.float32)
    self.label_smoothing = float(config.get("label_smoothing", 0.0))
    aug = config.get("augment", {})
    self.crop_pad = int(aug.get("crop_pad", 0))
    self.hflip = bool(aug.get("hflip", False))

  def check_batch(self, batch):
    check_image_batch(batch, self.image_shape)
    labels = np.asarray(batch["label"])
    bad = (labels < 0) | (labels >= self.num_classes)
    if bad.any():
      i = int(np.argmax(bad))
      raise ValueError(f"label {int(labels[i])} (row {i} of the batch) is outside "
                       f"[0, {self.num_classes})")

  def model_input(self, batch):
    return (batch["image"] - self.mean) / self.std

  def prediction(self, logits):
    """Class ids `[B]` int32."""
    return jnp.argmax(logits, -1).astype(jnp.int32)

  def _cross_entropy(self, logits, labels):
    onehot = jax.nn.one_hot(labels, logits.shape[-1])
    if self.label_smoothing:
      onehot = optax.smooth_labels(onehot, self.label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot)

  def augment(self, rng, images):
    """Training-time augmentation (`config.augment.crop_pad`, `config.augment.hflip`)."""
    crop_rng, flip_rng = jax.random.split(rng)
    images = image_augment.random_crop_with_padding(crop_rng, images, self.crop_pad)
    return image_augment.random_flip_left_right(flip_rng, images) if self.hflip else images

  def loss(self, model, variables, batch, rng, train):
    aug_rng, rng = jax.random.split(rng)
    x = self.model_input(batch)
    if train:
      x = self.augment(aug_rng, x)
    (logits, _), stats = apply_model(model, variables, x, train, rng)
    loss = jnp.mean(self._cross_entropy(logits, batch["label"]))
    acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, ({"loss": loss, "accuracy": acc}, stats)

  def eval_init(self):
    z = jnp.zeros((), jnp.float32)
    return {"correct": z, "top5": z, "loss": z, "count": z}

  def eval_update(self, model, variables, batch, acc):
    logits, _ = self.outputs(model, variables, batch, False)
    w = batch["example_valid"].astype(jnp.float32)
    labels = batch["label"]
    k = min(5, logits.shape[-1])
    topk = jax.lax.top_k(logits, k)[1]
    return {
        "correct": acc["correct"] + jnp.sum(w * (jnp.argmax(logits, -1) == labels)),
        "top5": acc["top5"] + jnp.sum(w * jnp.any(topk == labels[:, None], -1)),
        "loss": acc["loss"] + jnp.sum(w * self._cross_entropy(logits, labels)),
        "count": acc["count"] + jnp.sum(w),
    }

  def result(self, acc):
    acc = jax.device_get(acc)
    n = max(float(acc["count"]), 1.0)
    return {"accuracy": float(acc["correct"]) / n, "top5": float(acc["top5"]) / n,
            "loss": float(acc["loss"]) / n}

  def draw(self, model, variables, batch, path):
    """A grid of the first 16 images with predicted and true labels (red where wrong)."""
    pred = self.compiled_predict(model, variables, batch)
    images, labels = np.asarray(batch["image"]), np.asarray(batch["label"])
    n = min(16, len(images))
    cols = (n + 1) // 2
    idx = [range(r, min(r + cols, n)) for r in (0, cols) if r < n]  # two rows of images
    viz.save_grid([[viz.as_rgb(images[i]) for i in r] for r in idx], None, path,
                  cell_titles=[[f"{pred[i]} / {labels[i]}" for i in r] for r in idx],
                  cell_colors=[["black" if pred[i] == labels[i] else "red" for i in r]
                               for r in idx],
                  suptitle="predicted / true", cell_inches=1.0)
