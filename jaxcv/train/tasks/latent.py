"""Latent-variable tasks: `autoencoder` (reconstruction) and `vae` (negative ELBO).

Models: `autoencoder` / `vae` of jaxcv/models/autoencoder.py (their `likelihood` picks the
decoder, Bernoulli or Gaussian). The modelled image is the gray value (mean of the RGB
channels; `digits` repeats it) when `config.image_channels` is 1 (default), else RGB (3);
the task passes it to the model as `num_classes`. Images must lie in [0, 1].

Metrics (nats per image, each image's pixels summed, means over the valid images):
- `recon` (min): the reconstruction negative log-likelihood -log p(x|z) under the model's
  decoder (Bernoulli: the binary cross-entropy of the modelled pixels with soft targets
  summed over the image; Gaussian: the Gaussian negative log-density). For the autoencoder
  z is its code; for the VAE z ~ q(z|x), so `recon` = -E_q[log p(x|z)].
- `mse`: mean over pixels of (decoder mean - x)^2, for reading, not a likelihood.
- VAE only: `kl` = KL(q(z|x) || N(0, I)), analytic; `elbo` (max) = E_q[log p(x|z)] - KL, a
  lower bound on log p(x), negative; the loss is -elbo (with `config.kl_weight` on the KL,
  default 1; the reported `elbo` always has weight 1).

Randomness of the VAE: the loss draws eps ~ N(0, I) `[B, latent_dim]` from the step's rng
(the loop's rng of the step) and passes it to the model. Evaluation has no rng: eps of
example `i` and draw `k` (k < `config.eval_samples`, default 1) is
normal(fold_in(fold_in(key(config.eval_seed), k), image_id[i])), so an evaluation is
deterministic and an image's estimate does not depend on the batch it lands in; the E_q
term is the mean over the `eval_samples` draws.

Pictures (`draw(model, variables, batch, path)`): `path` gets originals (top row) above
their reconstructions (decoder means at z = posterior mean); the VAE also writes, next to
it, `<stem>_samples.png` (an 8x8 grid of decoder means of z ~ N(0, I), a fixed key so that
steps compare) and `<stem>_interpolations.png` (one row per pair (0, 1), (2, 3), ... of the
batch: the first image, 8 decoder means at evenly spaced points on the line between the
two posterior means, ends included, the second image).
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import viz
from jaxcv.models import autoencoder as ae
from jaxcv.train import tasks
from jaxcv.train.tasks.base import Task
from jaxcv.train.tasks.checks import check_image_batch


def check_unit_images(batch: Mapping[str, np.ndarray], image_shape) -> None:
  """`image` float `[B, *image_shape]` with every value in [0, 1] (Bernoulli targets)."""
  check_image_batch(batch, image_shape)
  img = np.asarray(batch["image"])
  bad = ~((img >= 0) & (img <= 1))  # NaN counts as bad
  if bad.any():
    i = int(np.argmax(bad.reshape(len(img), -1).any(-1)))
    raise ValueError(f"batch 'image' row {i} has values outside [0, 1] (min "
                     f"{np.nanmin(img[i])}, max {np.nanmax(img[i])}); the decoder's "
                     "likelihood models pixel values in [0, 1]")


def _suffixed(path: str | Path, suffix: str) -> Path:
  path = Path(path)
  return path.with_name(f"{path.stem}_{suffix}{path.suffix or '.png'}")


@functools.partial(jax.jit, static_argnums=(0, 3))
def _samples(model, variables, rng, num):
  return ae.sample_prior(model, variables, rng, num)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _interpolations(model, variables, x_a, x_b, num_steps):
  return ae.interpolate(model, variables, x_a, x_b, num_steps)


class _LatentTask(Task):
  """Shared by `autoencoder` and `vae`: input checks, targets, reconstruction pictures."""

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    self.image_shape = tuple(dataset.image_shape)
    self.channels = int(config.get("image_channels", 1))
    if self.channels not in (1, 3):
      raise ValueError(f"image_channels must be 1 (gray) or 3 (RGB); got {self.channels}")
    self.num_outputs = self.channels
    self.eval_seed = int(config.get("eval_seed", 0))

  def model_kwargs(self):
    """The latent models' `num_classes` is the number of image channels they reconstruct
    (`image_channels`: 1 gray, 3 RGB), not a label space."""
    return {"num_classes": self.channels}

  def check_batch(self, batch):
    check_unit_images(batch, self.image_shape)

  def target(self, batch):
    return ae.image_target(batch["image"].astype(jnp.float32), self.channels)

  def _recon_terms(self, model, outputs, inter, target):
    """`(log p(x|z) [B], squared error [B] per pixel mean)`."""
    ll = ae.log_likelihood(outputs, target, model.likelihood, inter.get("log_std"))
    err = ae.decoder_mean(outputs, model.likelihood) - target
    return ll, jnp.mean(jnp.square(err).reshape(err.shape[0], -1), -1)

  def predict(self, model, variables, batch):
    """Reconstructions `[B, H, W, channels]`: the decoder's means (VAE: at z = the posterior
    mean). Overrides the base `predict`, as the decoder mean depends on `model.likelihood`."""
    out, _ = model.apply(variables, self.model_input(batch), train=False)
    return ae.decoder_mean(out, model.likelihood)

  def draw(self, model, variables, batch, path):
    """Originals over reconstructions at `path` (see the module docstring)."""
    x = np.asarray(batch["image"])
    n = min(16, len(x))
    rec = self.compiled_predict(model, variables, {"image": x[:n]})
    orig = np.asarray(ae.image_target(jnp.asarray(x[:n]), self.channels))
    viz.save_png(path, viz.tile(np.concatenate([orig, rec]), 2, n), scale=2)


@tasks.register("autoencoder")
class Autoencoder(_LatentTask):
  """Deterministic autoencoder; loss = mean `recon` (nats per image)."""
  metric_directions: ClassVar[Mapping[str, str]] = {"recon": "min", "mse": "min"}

  def loss(self, model, variables, batch, rng, train):
    del rng  # deterministic model
    outputs, inter = model.apply(variables, self.model_input(batch), train=train)
    ll, mse = self._recon_terms(model, outputs, inter, self.target(batch))
    loss = -jnp.mean(ll)
    return loss, ({"recon": loss, "mse": jnp.mean(mse)}, variables.get("batch_stats", {}))

  def eval_init(self):
    z = jnp.zeros((), jnp.float32)
    return {"recon": z, "mse": z, "count": z}

  def eval_update(self, model, variables, batch, acc):
    outputs, inter = model.apply(variables, self.model_input(batch), train=False)
    ll, mse = self._recon_terms(model, outputs, inter, self.target(batch))
    w = batch["example_valid"].astype(jnp.float32)
    return {"recon": acc["recon"] - jnp.sum(w * ll), "mse": acc["mse"] + jnp.sum(w * mse),
            "count": acc["count"] + jnp.sum(w)}

  def result(self, acc):
    acc = jax.device_get(acc)
    n = max(float(acc["count"]), 1.0)
    return {"recon": float(acc["recon"]) / n, "mse": float(acc["mse"]) / n}


@tasks.register("vae")
class VAE(_LatentTask):
  """Variational autoencoder; loss = -ELBO per image (KL weighted by `config.kl_weight`)."""
  metric_directions: ClassVar[Mapping[str, str]] = {
      "elbo": "max", "recon": "min", "kl": "min", "mse": "min"}

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    self.kl_weight = float(config.get("kl_weight", 1.0))
    self.eval_samples = int(config.get("eval_samples", 1))
    if self.eval_samples < 1:
      raise ValueError(f"eval_samples must be >= 1; got {self.eval_samples}")

  def terms(self, model, variables, batch, eps, train=False):
    """Per-image `(log p(x|z), KL, squared error)`, each `[B]`, for noise `eps [B, D]`."""
    outputs, inter = model.apply(variables, self.model_input(batch), train=train, eps=eps)
    if "logvar" not in inter:
      raise ValueError(f"task 'vae' needs a variational model (the 'vae'); got "
                       f"{type(model).__name__} with variational={model.variational}")
    ll, mse = self._recon_terms(model, outputs, inter, self.target(batch))
    return ll, ae.gaussian_kl(inter["mean"], inter["logvar"]), mse

  def eval_eps(self, batch, k: int, latent_dim: int) -> jax.Array:
    """Evaluation noise `[B, latent_dim]` of draw `k`, a function of each row's image id."""
    b = batch["image"].shape[0]
    ids = batch["image_id"] if "image_id" in batch else jnp.arange(b)
    key = jax.random.fold_in(jax.random.key(self.eval_seed), k)
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (latent_dim,)))(
        ids.astype(jnp.uint32))

  def loss(self, model, variables, batch, rng, train):
    b = batch["image"].shape[0]
    eps = jax.random.normal(rng, (b, model.latent_dim), jnp.float32)
    ll, kl, mse = self.terms(model, variables, batch, eps, train)
    loss = jnp.mean(self.kl_weight * kl - ll)
    metrics = {"elbo": jnp.mean(ll - kl), "recon": -jnp.mean(ll), "kl": jnp.mean(kl),
               "mse": jnp.mean(mse)}
    return loss, (metrics, variables.get("batch_stats", {}))

  def eval_init(self):
    z = jnp.zeros((), jnp.float32)
    return {"elbo": z, "recon": z, "kl": z, "mse": z, "count": z}

  def eval_update(self, model, variables, batch, acc):
    ll = mse = 0.0
    for k in range(self.eval_samples):
      eps = self.eval_eps(batch, k, model.latent_dim)
      ll_k, kl, mse_k = self.terms(model, variables, batch, eps)
      ll, mse = ll + ll_k / self.eval_samples, mse + mse_k / self.eval_samples
    w = batch["example_valid"].astype(jnp.float32)
    return {"elbo": acc["elbo"] + jnp.sum(w * (ll - kl)), "recon": acc["recon"] - jnp.sum(w * ll),
            "kl": acc["kl"] + jnp.sum(w * kl), "mse": acc["mse"] + jnp.sum(w * mse),
            "count": acc["count"] + jnp.sum(w)}

  def result(self, acc):
    acc = jax.device_get(acc)
    n = max(float(acc["count"]), 1.0)
    return {k: float(acc[k]) / n for k in ("elbo", "recon", "kl", "mse")}

  def draw(self, model, variables, batch, path):
    """Reconstructions at `path`, prior samples and interpolations next to it."""
    super().draw(model, variables, batch, path)
    samples = np.asarray(_samples(model, variables, jax.random.key(self.eval_seed), 64))
    viz.save_png(_suffixed(path, "samples"), viz.tile(samples, 8, 8), scale=2)
    x = np.asarray(batch["image"])
    pairs = min(8, len(x) // 2)
    if pairs == 0:
      return
    xa, xb = x[0:2 * pairs:2], x[1:2 * pairs:2]
    steps = 8
    mid = np.asarray(_interpolations(model, variables, jnp.asarray(xa), jnp.asarray(xb), steps))
    ta = np.asarray(ae.image_target(jnp.asarray(xa), self.channels))
    tb = np.asarray(ae.image_target(jnp.asarray(xb), self.channels))
    rows = np.concatenate([ta[:, None], mid, tb[:, None]], axis=1)
    viz.save_png(_suffixed(path, "interpolations"),
                 viz.tile(rows.reshape(-1, *rows.shape[2:]), pairs, steps + 2), scale=2)
