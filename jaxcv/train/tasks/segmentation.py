"""Semantic segmentation: per-pixel softmax cross-entropy (optional Dice); mIoU and accuracies.

Why: the dense tasks (this one and `dense.py`: depth, normals, image_to_image) share one
shape of problem: an image in, a vector per pixel out, a loss written for ONE pixel and
`jax.vmap`ped over width, height and batch, with an ignore mask. `DenseTask` holds what they
share (input normalisation, batch checks, aligning the target with a smaller output, the
pixel mask); `Segmentation` is the first user.

Conventions (docs/conventions.md): `batch["semantic"]` int32 `[B, H, W]`, class 0..C-1 with
C = `dataset.class_counts["semantic"]`, 255 = ignore. The model returns logits
`[B, h, w, C]` float32. When the output is smaller than the labels (a valid-padding U-Net),
the labels are centre-cropped to it (`center_crop`): the output of a valid-padding network is
the centre of its input. Pixels with `pixel_valid` False (padding added by an augmentation)
are ignored as well.

Config: `config.data.mean` / `config.data.std` normalise the image (default 0 / 1);
`config.loss.dice_weight` (default 0) adds `dice_weight * soft Dice` (softmax probabilities,
mean over images and classes, ignored pixels masked) to the cross-entropy.

Metrics (`result`): `miou` (mean IoU over the classes present in ground truth or prediction
of the whole split), `pixel_accuracy`, `mean_accuracy` (from a `[C, C]` confusion matrix
accumulated in `eval_update`, `jaxcv.metrics.segmentation`) and `loss` (mean cross-entropy
over the split's counted pixels).
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.metrics import segmentation as seg_metrics
from jaxcv.ops import losses
from jaxcv.train import tasks
from jaxcv.train.tasks.base import Task, apply_model

IGNORE_LABEL = 255

# Class colours for overlays (class 0, background, is not painted).
PALETTE = np.array([
    [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
], np.float32) / 255.0


def center_crop(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Centre crop of `x` `[B, H, W, ...]` to `[B, h, w, ...]` (offset `(H - h) // 2`).

  The output of a valid-padding network (U-Net) is the centre of its input, so its targets
  are cropped with this. ValueError if `size` is larger than `[H, W]`.
  """
  (h, w), (hh, ww) = tuple(size), x.shape[1:3]
  if h > hh or w > ww:
    raise ValueError(f"the model's output ({h}x{w}) is larger than the target ({hh}x{ww})")
  if (h, w) == (hh, ww):
    return x
  top, left = (hh - h) // 2, (ww - w) // 2
  return x[:, top:top + h, left:left + w]


def check_dense_batch(batch: Mapping[str, np.ndarray], input_key: str = "image",
                      channels: int = 3) -> tuple[int, int, int]:
  """Raises ValueError unless `batch[input_key]` is float `[B, H, W, channels]`; returns
  `(B, H, W)`. Also checks `pixel_valid` (bool `[B, H, W]`) when present."""
  x = batch.get(input_key)
  if x is None:
    raise ValueError(f"batch has no {input_key!r}; keys: {sorted(batch)}")
  x = np.asarray(x)
  if x.ndim != 4 or x.shape[-1] != channels:
    raise ValueError(f"batch {input_key!r} has shape {tuple(x.shape)}; expected "
                     f"[B, H, W, {channels}] (NHWC)")
  if not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"batch {input_key!r} has dtype {x.dtype}; expected float32 in [0, 1]")
  b, h, w = x.shape[:3]
  if "pixel_valid" in batch and np.shape(batch["pixel_valid"]) != (b, h, w):
    raise ValueError(f"batch 'pixel_valid' has shape {np.shape(batch['pixel_valid'])}; "
                     f"expected [B, H, W] = {(b, h, w)}")
  return b, h, w


def check_target(batch: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...],
                 floating: bool) -> np.ndarray:
  """`batch[key]` as NumPy; ValueError if it is missing, not of `shape` or of the wrong kind."""
  if key not in batch:
    raise ValueError(f"batch has no {key!r} (the task's target); keys: {sorted(batch)}; "
                     f"set config.data.keys to include {key!r}")
  t = np.asarray(batch[key])
  if tuple(t.shape) != tuple(shape):
    raise ValueError(f"batch {key!r} has shape {tuple(t.shape)}; expected {tuple(shape)}")
  ok = np.issubdtype(t.dtype, np.floating) if floating else np.issubdtype(t.dtype, np.integer)
  if not ok:
    raise ValueError(f"batch {key!r} has dtype {t.dtype}; expected "
                     f"{'float32' if floating else 'int32'}")
  return t


def _stat(data, key: str, channels: int, default: float) -> jax.Array:
  v = np.asarray(data.get(key, None) if data.get(key, None) is not None else default,
                 np.float32).reshape(-1)
  if v.size not in (1, channels):
    raise ValueError(f"config.data.{key} has {v.size} values; the model input has "
                     f"{channels} channels")
  return jnp.asarray(v)


class DenseTask(Task):
  """A task with one output vector per pixel. Subclasses set `input_key`, `input_channels`.

  `model_input` is `(batch[input_key] - data.mean) / data.std`; `pixel_mask(batch, shape)`
  is `example_valid` (eval) and `pixel_valid` (augmentation padding), cropped like targets.
  """
  input_key = "image"
  input_channels = 3

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    data = config.get("data", {})
    self.mean = _stat(data, "mean", self.input_channels, 0.0)
    self.std = _stat(data, "std", self.input_channels, 1.0)
    if not np.all(np.asarray(self.std) > 0):
      raise ValueError(f"config.data.std must be > 0; got {np.asarray(self.std).tolist()}")
    self.loss_config = dict(config.get("loss", None) or {})

  def check_batch(self, batch):
    return check_dense_batch(batch, self.input_key, self.input_channels)

  def model_input(self, batch):
    return (batch[self.input_key] - self.mean) / self.std

  def outputs(self, model, variables, batch, train, rng=None):
    """`(model output [B, h, w, K] float32, new batch_stats)`."""
    (out, _), stats = apply_model(model, variables, self.model_input(batch), train, rng)
    return out.astype(jnp.float32), stats

  def pixel_mask(self, batch, size: tuple[int, int]) -> jax.Array:
    """bool `[B, h, w]`: rows with `example_valid` and pixels with `pixel_valid` (if any)."""
    b = batch[self.input_key].shape[0]
    mask = jnp.ones((b, *size), bool)
    if "example_valid" in batch:
      mask &= batch["example_valid"][:, None, None]
    if "pixel_valid" in batch:
      mask &= center_crop(batch["pixel_valid"], size)
    return mask


def segmentation_pixel_loss(logits: jax.Array, label: jax.Array, valid: jax.Array
                            ) -> tuple[jax.Array, jax.Array]:
  """ONE pixel: logits float `[C]`, label int `[]`, valid bool `[]` -> `(loss [], counted [])`.

  Cross-entropy `-log softmax(logits)[label]` (`losses.softmax_cross_entropy_pixel`); 0 with
  `counted` False (and no gradient) for the ignore label 255, a label outside `[0, C)` or
  `valid` False."""
  label = jnp.where(valid, label, IGNORE_LABEL)
  return losses.one_pixel_softmax_cross_entropy(logits, label, IGNORE_LABEL)


_over_pixels = jax.vmap(jax.vmap(jax.vmap(segmentation_pixel_loss)))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _predict(task, model, variables, batch):
  out, _ = task.outputs(model, variables, batch, False)
  return task.prediction(out)


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.55) -> np.ndarray:
  """RGB `[H, W, 3]` in [0, 1]: `image` with classes > 0 (not 255) painted in `PALETTE`."""
  labels = np.asarray(labels)
  paint = (labels > 0) & (labels != IGNORE_LABEL)
  colour = PALETTE[np.where(paint, labels, 0) % len(PALETTE)]
  out = np.where(paint[..., None], (1 - alpha) * image + alpha * colour, image)
  return np.clip(out, 0, 1)


def save_grid(rows: list[list[np.ndarray]], titles: list[str], path: str) -> None:
  """Writes a PNG of `rows` (each a list of RGB or 2-D images) under column `titles`."""
  from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

  n, m = len(rows), len(titles)
  fig = Figure(figsize=(2.2 * m, 2.2 * n))
  axes = fig.subplots(n, m, squeeze=False)
  for i, row in enumerate(rows):
    for j, img in enumerate(row):
      ax = axes[i, j]
      ax.imshow(img, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(titles[j], fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=80)


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
    pred = np.asarray(_predict(self, model, variables, batch))
    images = np.asarray(batch["image"])
    labels = np.asarray(center_crop(np.asarray(batch["semantic"]), pred.shape[1:3]))
    images_c = np.asarray(center_crop(images, pred.shape[1:3]))
    rows = [[np.clip(images[i], 0, 1), overlay(images_c[i], labels[i]),
             overlay(images_c[i], pred[i])] for i in range(min(6, len(images)))]
    save_grid(rows, ["image", "ground truth", "prediction"], path)
