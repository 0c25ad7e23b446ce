"""What the dense tasks share: `DenseTask` and `center_crop`.

Why: the dense tasks (segmentation, depth, normals, image_to_image) share one shape of
problem: an image in, a vector per pixel out, a loss written for ONE pixel and `jax.vmap`ped
over width, height and batch, with an ignore mask. `DenseTask` holds what they share (input
normalisation, batch checks, aligning the target with a smaller output, the pixel mask);
each task module derives from it and none imports another.

When the output is smaller than the targets (a valid-padding U-Net), the targets are
centre-cropped to it (`center_crop`): the output of a valid-padding network is the centre
of its input. Pixels with `pixel_valid` False (padding added by an augmentation) are ignored.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.train.tasks.base import Task
from jaxcv.train.tasks.checks import check_dense_batch


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


def _stat(data, key: str, channels: int, default: float) -> jax.Array:
  v = np.asarray(data.get(key, None) if data.get(key, None) is not None else default,
                 np.float32).reshape(-1)
  if v.size not in (1, channels):
    raise ValueError(f"config.data.{key} has {v.size} values; the model input has "
                     f"{channels} channels")
  return jnp.asarray(v)


class DenseTask(Task):
  """A task with one output vector per pixel. Subclasses set `input_key`, `input_channels`
  and `prediction` (what `predict` and the pictures show).

  `model_input` is `(batch[input_key] - data.mean) / data.std`; `outputs` returns the
  model's output `[B, h, w, K]` as float32; `pixel_mask(batch, shape)` is `example_valid`
  (eval) and `pixel_valid` (augmentation padding), cropped like targets.
  """
  input_key = "image"
  input_channels = 3
  data_config_keys = ("mean", "std")  # input normalisation (`model_input`)

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
    out, stats = super().outputs(model, variables, batch, train, rng)
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

  def cropped(self, batch, key: str, size: tuple[int, int]) -> np.ndarray:
    """`batch[key]` as NumPy, centre-cropped to `size` (a prediction's `[h, w]`): the
    target a picture shows beside the prediction."""
    return np.asarray(center_crop(np.asarray(batch[key]), size))
