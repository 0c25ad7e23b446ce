"""Dense regression tasks: `depth`, `normals` and `image_to_image` (sketch-to-image).

Why: the same encoder-decoders that segment (U-Net, FCN, DeepLab) regress a vector per pixel
when the loss changes. Every per-pixel loss here is written for ONE pixel and `jax.vmap`ped
over width, height and batch; a pixel counts only where its target is valid, its example is
valid (`example_valid`) and `pixel_valid` (augmentation padding) allows it. Outputs smaller
than the targets (a valid-padding U-Net) are compared with the centre-cropped targets.
Input normalisation: `config.data.mean` / `config.data.std` (as classification), one value
per input channel (or one for all).

- `depth` (num_outputs 1): the prediction is `softplus(output) + MIN_DEPTH`, positive with a
  finite log. Valid pixels: ground-truth depth finite and > 0. Loss (`config.loss`):
  `l1_weight * mean |pred - gt|` (over the batch's valid pixels, default 1) +
  `silog_weight * SI-log` (default 0), the scale-invariant log loss of Eigen et al. (2014) per
  image: with `d = log pred - log gt` over its n valid pixels,
  `mean(d**2) - silog_lambda * mean(d)**2` (`silog_lambda` default 0.5 as in the paper's
  training), averaged over images that have valid pixels. Metrics over every valid pixel of
  the split (accumulated sums): `abs_rel` = mean |pred - gt| / gt, `rmse` = sqrt(mean
  (pred - gt)**2), `delta1` = share with max(pred / gt, gt / pred) < 1.25, and `loss`.
- `normals` (num_outputs 3): the prediction is the output normalised to a unit vector
  (`out / sqrt(|out|**2 + 1e-12)`). Valid pixels: ground truth finite with norm in
  [0.5, 1.5] (unit vectors; a zero vector marks "no normal"). Loss: mean over valid pixels of
  `1 - cos(pred, gt)`. Metrics, angles in degrees over the split's valid pixels:
  `angle_mean`, `angle_median` and the shares `within_11_25`, `within_22_5`, `within_30`
  (angle < threshold). The median is read from a jit-accumulated histogram of 3600 bins of
  0.05 degrees: the centre of the bin where the cumulative count first reaches half of the
  pixels, so it is within 0.025 degrees of the exact lower median (resolution 0.05 degrees).
- `image_to_image` (sketch-to-image, num_outputs 3): the model input is
  `batch["sketch"]` float `[B, H, W, 1]` (ONE channel, edges in [0, 1], normalised with
  `data.mean` / `data.std`, e.g. 0.5 / 0.5), the target `batch["image"]` `[B, H, W, 3]`; the
  prediction is `sigmoid(output)` in [0, 1]. Loss: per-pixel L1 (mean over the 3 channels),
  averaged over valid pixels. Metrics: `l1` (mean absolute error per pixel and channel over
  the split) and `psnr` (dB, data range 1, per image from its mean squared error over valid
  pixels, averaged over images; MSE floored at 1e-10, i.e. at most 100 dB).

Pictures (`jaxcv.viz`): image | depth GT | prediction colour-mapped (viridis, one range
per row: that of the row's valid ground truth); image | normals GT | prediction mapped to RGB
as `(n + 1) / 2`; sketch | target | output.
"""
from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import viz
from jaxcv.train import tasks
from jaxcv.train.tasks.checks import check_target
from jaxcv.train.tasks.dense_base import DenseTask, center_crop

MIN_DEPTH = 1e-3
NORMAL_EPS = 1e-12
ANGLE_BIN = 0.05  # degrees, the resolution of angle_median
ANGLE_BINS = round(180 / ANGLE_BIN)
THRESHOLDS = {"within_11_25": 11.25, "within_22_5": 22.5, "within_30": 30.0}
MAX_PSNR_MSE = 1e-10


def _over_pixels(fn):
  """`fn` of one pixel vmapped over width, height and batch (all arguments mapped)."""
  return jax.vmap(jax.vmap(jax.vmap(fn)))


# ------------------------------------------------------------------------------------------
# depth


def depth_prediction(output: jax.Array) -> jax.Array:
  """Positive depth from the raw output `[..., 1]` -> `[...]`: `softplus(x) + MIN_DEPTH`."""
  return jax.nn.softplus(output[..., 0]) + MIN_DEPTH


def depth_pixel(pred: jax.Array, gt: jax.Array, valid: jax.Array):
  """ONE pixel: predicted depth `[]` (> 0), ground truth `[]`, valid bool `[]` ->
  `(abs error, log difference d, counted)`, both 0 (no gradient) where not counted.
  Counted: `valid` and gt finite and > 0."""
  ok = valid & jnp.isfinite(gt) & (gt > 0)
  g = jnp.where(ok, gt, 1.0)
  err = jnp.where(ok, jnp.abs(pred - g), 0.0)
  d = jnp.where(ok, jnp.log(pred) - jnp.log(g), 0.0)
  return err, d, ok


def silog(d: jax.Array, counted: jax.Array, lam: float = 0.5) -> jax.Array:
  """Scale-invariant log loss per image, averaged over images with valid pixels:
  `d`, `counted` `[B, H, W]` -> `[]`."""
  n = jnp.sum(counted, axis=(1, 2)).astype(jnp.float32)
  nn_ = jnp.maximum(n, 1.0)
  per = jnp.sum(d * d, axis=(1, 2)) / nn_ - lam * (jnp.sum(d, axis=(1, 2)) / nn_) ** 2
  has = n > 0
  return jnp.sum(jnp.where(has, per, 0.0)) / jnp.maximum(jnp.sum(has), 1)


@tasks.register("depth")
class Depth(DenseTask):
  """Monocular depth: one positive value per pixel (see the module docstring)."""
  metric_directions: ClassVar[dict[str, str]] = {
      "abs_rel": "min", "rmse": "min", "delta1": "max", "loss": "min"}

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    self.num_outputs = 1
    lc = self.loss_config
    self.l1_weight = float(lc.get("l1_weight", 1.0))
    self.silog_weight = float(lc.get("silog_weight", 0.0))
    self.silog_lambda = float(lc.get("silog_lambda", 0.5))
    if self.l1_weight < 0 or self.silog_weight < 0 or self.l1_weight + self.silog_weight <= 0:
      raise ValueError(f"config.loss: l1_weight ({self.l1_weight}) and silog_weight "
                       f"({self.silog_weight}) must be >= 0 and not both 0")
    if not 0 <= self.silog_lambda <= 1:
      raise ValueError(f"config.loss.silog_lambda must be in [0, 1]; got {self.silog_lambda}")

  def check_batch(self, batch):
    b, h, w = super().check_batch(batch)
    check_target(batch, "depth", (b, h, w), floating=True)

  def prediction(self, output):
    return depth_prediction(output)

  def _pixels(self, output, batch):
    pred = self.prediction(output)
    gt = center_crop(batch["depth"], pred.shape[1:3])
    err, d, ok = _over_pixels(depth_pixel)(pred, gt, self.pixel_mask(batch, pred.shape[1:3]))
    return pred, gt, err, d, ok

  def _loss(self, err, d, ok):
    n = jnp.maximum(jnp.sum(ok), 1).astype(jnp.float32)
    terms = {}
    if self.l1_weight:
      terms["l1"] = jnp.sum(err) / n
    if self.silog_weight:
      terms["silog"] = silog(d, ok, self.silog_lambda)
    loss = self.l1_weight * terms.get("l1", 0.0) + self.silog_weight * terms.get("silog", 0.0)
    return loss, terms

  def loss(self, model, variables, batch, rng, train):
    out, stats = self.outputs(model, variables, batch, train, rng)
    _, _, err, d, ok = self._pixels(out, batch)
    loss, terms = self._loss(err, d, ok)
    return loss, (terms, stats)

  def eval_init(self):
    z = jnp.zeros((), jnp.float32)
    return {"abs_rel": z, "sq": z, "delta1": z, "count": z, "loss": z, "batches": z}

  def eval_update(self, model, variables, batch, acc):
    out, _ = self.outputs(model, variables, batch, False)
    pred, gt, err, d, ok = self._pixels(out, batch)
    g = jnp.where(ok, gt, 1.0)
    ratio = jnp.maximum(pred / g, g / pred)
    loss, _ = self._loss(err, d, ok)
    return {"abs_rel": acc["abs_rel"] + jnp.sum(err / g),
            "sq": acc["sq"] + jnp.sum(err * err),
            "delta1": acc["delta1"] + jnp.sum(ok & (ratio < 1.25)),
            "count": acc["count"] + jnp.sum(ok),
            "loss": acc["loss"] + loss, "batches": acc["batches"] + 1}

  def result(self, acc):
    acc = jax.device_get(acc)
    n = max(float(acc["count"]), 1.0)
    return {"abs_rel": float(acc["abs_rel"]) / n, "rmse": float(np.sqrt(acc["sq"] / n)),
            "delta1": float(acc["delta1"]) / n,
            "loss": float(acc["loss"]) / max(float(acc["batches"]), 1.0)}

  def draw(self, model, variables, batch, path):
    """Up to 6 rows of image | ground-truth depth | predicted depth."""
    pred = self.compiled_predict(model, variables, batch)
    gt = self.cropped(batch, "depth", pred.shape[1:3])
    images = np.asarray(batch["image"])
    rows = []
    for i in range(min(6, len(pred))):
      # one scale per row, from the valid ground truth, so that errors show as colour shifts
      lo, hi = viz.value_range(np.where(gt[i] > 0, gt[i], np.nan))
      rows.append([viz.as_rgb(images[i]), viz.colormap(gt[i], lo, hi),
                   viz.colormap(pred[i], lo, hi)])
    viz.save_grid(rows, ["image", "depth (ground truth)", "depth (prediction)"], path)


# ------------------------------------------------------------------------------------------
# normals


def normals_prediction(output: jax.Array) -> jax.Array:
  """Unit vectors `[..., 3]` from the raw output `[..., 3]`."""
  return output / jnp.sqrt(jnp.sum(output * output, -1, keepdims=True) + NORMAL_EPS)


def normal_pixel(pred: jax.Array, gt: jax.Array, valid: jax.Array):
  """ONE pixel: unit prediction `[3]`, ground truth `[3]`, valid bool `[]` ->
  `(1 - cos, cos clipped to [-1, 1], counted)`; 0 and no gradient where not counted.
  Counted: `valid`, gt finite with norm in [0.5, 1.5]."""
  norm = jnp.sqrt(jnp.sum(jnp.where(jnp.isfinite(gt), gt, 0.0) ** 2))
  ok = valid & jnp.all(jnp.isfinite(gt)) & (norm >= 0.5) & (norm <= 1.5)
  g = jnp.where(ok, gt, 0.0)
  cos = jnp.sum(pred * g)
  return jnp.where(ok, 1.0 - cos, 0.0), jnp.clip(jnp.where(ok, cos, 1.0), -1.0, 1.0), ok


@tasks.register("normals")
class Normals(DenseTask):
  """Surface normals: a unit vector per pixel (see the module docstring)."""
  metric_directions: ClassVar[dict[str, str]] = {
      "angle_mean": "min", "angle_median": "min", "within_11_25": "max",
      "within_22_5": "max", "within_30": "max", "loss": "min"}

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    self.num_outputs = 3

  def check_batch(self, batch):
    b, h, w = super().check_batch(batch)
    check_target(batch, "normals", (b, h, w, 3), floating=True)

  def prediction(self, output):
    return normals_prediction(output)

  def _pixels(self, output, batch):
    pred = self.prediction(output)
    gt = center_crop(batch["normals"], pred.shape[1:3])
    return _over_pixels(normal_pixel)(pred, gt, self.pixel_mask(batch, pred.shape[1:3]))

  def loss(self, model, variables, batch, rng, train):
    out, stats = self.outputs(model, variables, batch, train, rng)
    l, cos, ok = self._pixels(out, batch)
    n = jnp.maximum(jnp.sum(ok), 1).astype(jnp.float32)
    angle = jnp.degrees(jnp.arccos(jax.lax.stop_gradient(cos)))
    return jnp.sum(l) / n, ({"angle_mean": jnp.sum(jnp.where(ok, angle, 0)) / n}, stats)

  def eval_init(self):
    z = jnp.zeros((), jnp.float32)
    return {"hist": jnp.zeros((ANGLE_BINS,), jnp.int32), "angle": z, "count": z, "loss": z,
            **{k: z for k in THRESHOLDS}}

  def eval_update(self, model, variables, batch, acc):
    out, _ = self.outputs(model, variables, batch, False)
    l, cos, ok = self._pixels(out, batch)
    angle = jnp.degrees(jnp.arccos(cos))
    bins = jnp.clip(jnp.floor(angle / ANGLE_BIN).astype(jnp.int32), 0, ANGLE_BINS - 1)
    hist = acc["hist"] + jnp.zeros((ANGLE_BINS,), jnp.int32).at[bins.ravel()].add(
        ok.ravel().astype(jnp.int32))
    new = {"hist": hist, "angle": acc["angle"] + jnp.sum(jnp.where(ok, angle, 0)),
           "count": acc["count"] + jnp.sum(ok), "loss": acc["loss"] + jnp.sum(l)}
    for k, t in THRESHOLDS.items():
      new[k] = acc[k] + jnp.sum(ok & (angle < t))
    return new

  def result(self, acc):
    acc = jax.device_get(acc)
    n = max(float(acc["count"]), 1.0)
    hist = np.asarray(acc["hist"], np.int64)
    total = int(hist.sum())
    if total:
      k = int(np.searchsorted(np.cumsum(hist), (total + 1) // 2))  # lower median's bin
      median = (k + 0.5) * ANGLE_BIN
    else:
      median = float("nan")
    out = {"angle_mean": float(acc["angle"]) / n, "angle_median": median,
           "loss": float(acc["loss"]) / n}
    out.update({k: float(acc[k]) / n for k in THRESHOLDS})
    return out

  def draw(self, model, variables, batch, path):
    """Up to 6 rows of image | ground-truth normals | predicted normals, as RGB."""
    pred = self.compiled_predict(model, variables, batch)
    gt = self.cropped(batch, "normals", pred.shape[1:3])
    images = np.asarray(batch["image"])
    rows = [[viz.as_rgb(images[i]), viz.normals_to_rgb(gt[i]), viz.normals_to_rgb(pred[i])]
            for i in range(min(6, len(pred)))]
    viz.save_grid(rows, ["image", "normals (ground truth)", "normals (prediction)"], path)


# ------------------------------------------------------------------------------------------
# image_to_image


def l1_pixel(pred: jax.Array, target: jax.Array, valid: jax.Array):
  """ONE pixel: prediction `[C]`, target `[C]`, valid bool `[]` -> `(mean |pred - target|
  over C, squared error mean over C, valid)`; 0 and no gradient where not valid."""
  t = jnp.where(valid, target, 0.0)
  diff = jnp.where(valid, pred - t, 0.0)
  return jnp.mean(jnp.abs(diff)), jnp.mean(diff * diff), valid


@tasks.register("image_to_image")
class ImageToImage(DenseTask):
  """Sketch-to-image: `batch["sketch"]` `[B, H, W, 1]` in, `batch["image"]` out."""
  input_key = "sketch"
  input_channels = 1
  metric_directions: ClassVar[dict[str, str]] = {"l1": "min", "psnr": "max", "loss": "min"}

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    self.num_outputs = 3

  def check_batch(self, batch):
    b, h, w = super().check_batch(batch)
    check_target(batch, "image", (b, h, w, 3), floating=True)

  def prediction(self, output):
    return jax.nn.sigmoid(output)

  def _pixels(self, output, batch):
    pred = self.prediction(output)
    target = center_crop(batch["image"], pred.shape[1:3])
    return _over_pixels(l1_pixel)(pred, target, self.pixel_mask(batch, pred.shape[1:3]))

  def loss(self, model, variables, batch, rng, train):
    out, stats = self.outputs(model, variables, batch, train, rng)
    l1, _, ok = self._pixels(out, batch)
    loss = jnp.sum(l1) / jnp.maximum(jnp.sum(ok), 1).astype(jnp.float32)
    return loss, ({"l1": loss}, stats)

  def eval_init(self):
    z = jnp.zeros((), jnp.float32)
    return {"l1": z, "count": z, "psnr": z, "images": z}

  def eval_update(self, model, variables, batch, acc):
    out, _ = self.outputs(model, variables, batch, False)
    l1, sq, ok = self._pixels(out, batch)
    n_img = jnp.sum(ok, axis=(1, 2)).astype(jnp.float32)
    mse = jnp.sum(sq, axis=(1, 2)) / jnp.maximum(n_img, 1.0)
    psnr = -10.0 * jnp.log10(jnp.maximum(mse, MAX_PSNR_MSE))
    has = n_img > 0
    return {"l1": acc["l1"] + jnp.sum(l1), "count": acc["count"] + jnp.sum(ok),
            "psnr": acc["psnr"] + jnp.sum(jnp.where(has, psnr, 0.0)),
            "images": acc["images"] + jnp.sum(has)}

  def result(self, acc):
    acc = jax.device_get(acc)
    l1 = float(acc["l1"]) / max(float(acc["count"]), 1.0)
    return {"l1": l1, "psnr": float(acc["psnr"]) / max(float(acc["images"]), 1.0), "loss": l1}

  def draw(self, model, variables, batch, path):
    """Up to 6 rows of sketch | target image | output."""
    pred = self.compiled_predict(model, variables, batch)
    sketch = np.asarray(batch["sketch"])
    target = self.cropped(batch, "image", pred.shape[1:3])
    rows = [[viz.as_rgb(sketch[i]), viz.as_rgb(target[i]), viz.as_rgb(pred[i])]
            for i in range(min(6, len(pred)))]
    viz.save_grid(rows, ["sketch", "target", "output"], path)
