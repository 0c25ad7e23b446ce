"""Convolutional autoencoder and variational autoencoder (VAE, Kingma & Welling 2014).

Registered as `autoencoder` (deterministic code `z = encoder(x)`) and `vae` (Gaussian
encoder q(z|x) = N(mean, diag(exp(logvar))), reparameterised `z = mean + exp(logvar / 2) *
eps`, prior p(z) = N(0, I)). Both are sized for small images such as `digits` (32x32).

Layout (`w = width`, `L = levels`, `S = image_size`, `s = S / 2**L`):
  encoder: conv3x3 w, then L convs 4x4 stride 2 of widths w*2, w*4, w*4, ... (ReLU), flatten,
           Dense `hidden` (ReLU)
  latent:  Dense `latent_dim` (autoencoder) or Dense `2 * latent_dim` -> (mean, logvar) (VAE)
  decoder: Dense `hidden`, Dense `s*s*C_L` (ReLU), reshape, L transposed convs 4x4 stride 2
           (ReLU; each exactly doubles the size)
  head:    conv3x3 to `num_classes` channels: the decoder's per-pixel output

Channels: `num_classes` is the number of image channels the model reconstructs (the task
sets it from `config.image_channels`): 1 models the gray value, the mean of the three RGB
channels (exact for `digits` and MNIST, which repeat the gray value in all three), 3 models
RGB. The input is always `[B, S, S, 3]` float RGB in [0, 1] (docs/conventions.md).

Decoder likelihood p(x|z) (`likelihood`):
- `bernoulli`: the head gives logits; each modelled pixel value x in [0, 1] is the target
  of a Bernoulli with probability sigmoid(logit): log p = x log p + (1 - x) log(1 - p) (the
  binary cross-entropy with soft targets; for non-binary x it is not a normalised density
  of x, the usual practice for MNIST-like data; its maximum over p is -H(x), not 0).
  The decoder's mean image is sigmoid(logits).
- `gaussian`: the head gives the mean; the standard deviation is `gaussian_std` when > 0
  (fixed), else learned: one scalar parameter `log_std` (top-level params key).
  log p = sum over pixels of log N(x; mean, std^2). The mean image is the head's output.

Randomness of the VAE's `z` (`__call__`): an explicit `eps` `[B, latent_dim]` when given;
else drawn from the `sample` rng stream when the caller passes one; else, in training, from
the `dropout` stream (the one the training loop passes); else (evaluation without an rng)
`z = mean`, the posterior mean, deterministic. The `vae` task passes `eps` explicitly, a
fixed function of the image id in evaluation (see jaxcv/train/tasks/latent.py).

Returns `(outputs [B, S, S, num_classes] float32, intermediates)`; intermediates hold `z`
`[B, latent_dim]`, `stage1`..`stageL` (encoder feature maps), `pre_latent` `[B, hidden]`,
for the VAE also `mean`, `logvar`, `eps`, and `log_std` (scalar) for a Gaussian decoder.

Methods (call through `model.apply(variables, ..., method=...)`): `encode(x)`
(`(mean, logvar)` for the VAE, `(z, None)` for the autoencoder), `decode(z)` (outputs),
`sample(num)` (prior samples, decoder means, needs the `sample` rng; VAE only),
`interpolate(x_a, x_b, num_steps)` (decoder means along the straight line between the
posterior means, `[B, num_steps, S, S, C]`). `sample_prior` and `interpolate` below wrap
the last two. Pure functions: `gaussian_kl`, `reparameterize`, `log_likelihood`,
`decoder_mean`, `image_target`.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.models import common
from jaxcv.models.registry import register

LIKELIHOODS = ("bernoulli", "gaussian")


def image_target(x: jax.Array, channels: int) -> jax.Array:
  """The modelled image: `[B, H, W, 3]` RGB -> `[B, H, W, channels]` (1: channel mean)."""
  if channels == 1:
    return jnp.mean(x, axis=-1, keepdims=True)
  if channels == 3:
    return x
  raise ValueError(f"channels (num_classes) must be 1 (gray) or 3 (RGB); got {channels}")


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, diag(exp(logvar))) || N(0, I)) in nats, summed over the last axis.

  = 0.5 * sum(mean^2 + exp(logvar) - 1 - logvar). `[..., D]` -> `[...]`, float32.
  """
  mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
  return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def reparameterize(mean: jax.Array, logvar: jax.Array, eps: jax.Array) -> jax.Array:
  """`z = mean + exp(logvar / 2) * eps`: differentiable in `mean` and `logvar`."""
  return mean + jnp.exp(0.5 * logvar) * eps


def log_likelihood(outputs: jax.Array, target: jax.Array, likelihood: str = "bernoulli",
                   log_std: jax.Array | float | None = None) -> jax.Array:
  """log p(target | z) in nats per image: `[B, H, W, C]` each -> `[B]`, summed over pixels.

  `outputs` are the head's logits (`bernoulli`) or means (`gaussian`, with `log_std` the
  log standard deviation, a scalar or broadcastable array). Formulas in the module docstring.
  """
  if outputs.shape != target.shape:
    raise ValueError(f"outputs {tuple(outputs.shape)} and target {tuple(target.shape)} differ")
  outputs = outputs.astype(jnp.float32)
  target = target.astype(jnp.float32)
  if likelihood == "bernoulli":
    # x log sigmoid(l) + (1 - x) log sigmoid(-l) = x l - softplus(l), stable for any l
    ll = target * outputs - jax.nn.softplus(outputs)
  elif likelihood == "gaussian":
    if log_std is None:
      raise ValueError("a gaussian likelihood needs log_std")
    log_std = jnp.asarray(log_std, jnp.float32)
    ll = (-0.5 * jnp.square((target - outputs) * jnp.exp(-log_std)) - log_std
          - 0.5 * math.log(2 * math.pi))
  else:
    raise ValueError(f"unknown likelihood {likelihood!r}; known: {list(LIKELIHOODS)}")
  return jnp.sum(ll.reshape(ll.shape[0], -1), axis=-1)


def decoder_mean(outputs: jax.Array, likelihood: str = "bernoulli") -> jax.Array:
  """The decoder's mean image: sigmoid(logits) (`bernoulli`) or the outputs (`gaussian`)."""
  if likelihood == "bernoulli":
    return jax.nn.sigmoid(outputs.astype(jnp.float32))
  if likelihood == "gaussian":
    return outputs.astype(jnp.float32)
  raise ValueError(f"unknown likelihood {likelihood!r}; known: {list(LIKELIHOODS)}")


class LatentAutoencoder(nn.Module):
  """Autoencoder (`variational=False`) or VAE (`variational=True`); see the module docstring.

  `x`: float `[B, image_size, image_size, 3]` RGB in [0, 1].
  """
  num_classes: int = 1
  latent_dim: int = 16
  width: int = 32
  hidden: int = 256
  levels: int = 3
  image_size: int = 32
  variational: bool = True
  likelihood: str = "bernoulli"
  gaussian_std: float = 0.0
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()  # no BatchNorm here; accepted for the common contract

  @property
  def model_name(self) -> str:
    return "vae" if self.variational else "autoencoder"

  @property
  def stages(self) -> tuple[str, ...]:
    learned = self.likelihood == "gaussian" and not self.gaussian_std
    return ("encoder", "latent", "decoder", "head") + (("log_std",) if learned else ())

  def _check_config(self):
    name = self.model_name
    if self.num_classes not in (1, 3):
      raise ValueError(f"{name}: num_classes is the number of modelled image channels, 1 "
                       f"(gray) or 3 (RGB); got {self.num_classes}")
    if self.likelihood not in LIKELIHOODS:
      raise ValueError(f"{name}: unknown likelihood {self.likelihood!r}; known: "
                       f"{list(LIKELIHOODS)}")
    if self.gaussian_std < 0:
      raise ValueError(f"{name}: gaussian_std must be >= 0 (0 = learned); got "
                       f"{self.gaussian_std}")
    for what in ("latent_dim", "width", "hidden", "levels"):
      if getattr(self, what) < 1:
        raise ValueError(f"{name}: {what} must be >= 1; got {getattr(self, what)}")
    if self.image_size % (2 ** self.levels):
      raise ValueError(f"{name}: image_size {self.image_size} is not divisible by "
                       f"2**levels = {2 ** self.levels}")
    common.check_frozen(self.frozen_stages, self.stages, name)

  def setup(self):
    self._check_config()
    w, d = self.width, self.dtype
    self.widths = tuple(w * min(2 ** (i + 1), 4) for i in range(self.levels))
    self.encoder = Encoder(w, self.widths, self.hidden, d)
    self.latent = nn.Dense(self.latent_dim * (2 if self.variational else 1), dtype=d)
    self.decoder = Decoder(self.widths, self.hidden, self.image_size // 2 ** self.levels, d)
    self.head = nn.Conv(self.num_classes, (3, 3), padding=1, dtype=d)
    if "log_std" in self.stages:
      self.log_std = self.param("log_std", nn.initializers.zeros, (), jnp.float32)

  def _check_input(self, x):
    common.check_input(x, self.model_name, exact_size=self.image_size)

  def _check_latent(self, z):
    if z.ndim != 2 or z.shape[-1] != self.latent_dim:
      raise ValueError(f"{self.model_name}: latent codes must be [B, {self.latent_dim}]; got "
                       f"shape {tuple(z.shape)}")

  def _log_std(self):
    if self.likelihood != "gaussian":
      return None
    if self.gaussian_std:
      return jnp.asarray(math.log(self.gaussian_std), jnp.float32)
    return self.log_std

  def _encode(self, x):
    self._check_input(x)
    h = image_target(x.astype(jnp.float32), self.num_classes) - 0.5
    h, feats = self.encoder(h.astype(self.dtype))
    out = self.latent(h).astype(jnp.float32)
    if self.variational:
      mean, logvar = jnp.split(out, 2, axis=-1)
    else:
      mean, logvar = out, None
    return mean, logvar, dict(feats, pre_latent=h)

  def encode(self, x):
    """`(mean, logvar)` `[B, latent_dim]` each for the VAE; `(z, None)` for the autoencoder."""
    mean, logvar, _ = self._encode(x)
    return mean, logvar

  def decode(self, z):
    """Head outputs `[B, S, S, num_classes]` float32 (logits or means) for codes `z`."""
    self._check_latent(z)
    return self.head(self.decoder(z.astype(self.dtype))).astype(jnp.float32)

  def __call__(self, x, train: bool = False, eps: jax.Array | None = None):
    mean, logvar, inter = self._encode(x)
    if self.variational:
      if eps is None:
        if self.has_rng("sample"):
          eps = jax.random.normal(self.make_rng("sample"), mean.shape, jnp.float32)
        elif train and self.has_rng("dropout"):
          eps = jax.random.normal(self.make_rng("dropout"), mean.shape, jnp.float32)
        else:
          eps = jnp.zeros_like(mean)
      if eps.shape != mean.shape:
        raise ValueError(f"vae: eps must have shape {tuple(mean.shape)}; got "
                         f"{tuple(eps.shape)}")
      z = reparameterize(mean, logvar, eps.astype(jnp.float32))
      inter.update(mean=mean, logvar=logvar, eps=eps)
    else:
      z = mean
    inter["z"] = z
    if self.likelihood == "gaussian":
      inter["log_std"] = self._log_std()
    return self.decode(z), inter

  def sample(self, num: int):
    """`num` prior samples: decoder means of z ~ N(0, I) (`sample` rng), `[num, S, S, C]`."""
    if not self.variational:
      raise ValueError("autoencoder has no prior to sample from; use the vae")
    z = jax.random.normal(self.make_rng("sample"), (num, self.latent_dim), jnp.float32)
    return decoder_mean(self.decode(z), self.likelihood)

  def interpolate(self, x_a, x_b, num_steps: int = 8):
    """Decoder means at `num_steps` evenly spaced points (ends included) on the straight
    line between the posterior means (codes) of `x_a` and `x_b` `[B, S, S, 3]`:
    `[B, num_steps, S, S, C]`."""
    if x_a.shape != x_b.shape:
      raise ValueError(f"x_a {tuple(x_a.shape)} and x_b {tuple(x_b.shape)} differ")
    if num_steps < 2:
      raise ValueError(f"num_steps must be >= 2; got {num_steps}")
    za, _ = self.encode(x_a)
    zb, _ = self.encode(x_b)
    t = jnp.linspace(0.0, 1.0, num_steps, dtype=jnp.float32)[None, :, None]
    z = (1.0 - t) * za[:, None] + t * zb[:, None]
    b = za.shape[0]
    out = decoder_mean(self.decode(z.reshape(b * num_steps, -1)), self.likelihood)
    return out.reshape(b, num_steps, *out.shape[1:])


class Encoder(nn.Module):
  """conv3x3 then stride-2 4x4 convs (ReLU), flatten, Dense `hidden` (ReLU)."""
  width: int
  widths: Sequence[int]
  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    feats = {}
    x = nn.relu(nn.Conv(self.width, (3, 3), padding=1, dtype=self.dtype, name="conv0")(x))
    for i, w in enumerate(self.widths, start=1):
      x = nn.relu(nn.Conv(w, (4, 4), (2, 2), padding=1, dtype=self.dtype, name=f"conv{i}")(x))
      feats[f"stage{i}"] = x
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc")(x.reshape(x.shape[0], -1)))
    return x, feats


class Decoder(nn.Module):
  """Dense `hidden`, Dense to a `size x size` map, stride-2 transposed convs (ReLU)."""
  widths: Sequence[int]
  hidden: int
  size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc0")(z))
    c = self.widths[-1]
    x = nn.relu(nn.Dense(self.size * self.size * c, dtype=self.dtype, name="fc1")(x))
    x = x.reshape(x.shape[0], self.size, self.size, c)
    outs = list(self.widths[-2::-1]) + [self.widths[0] // 2]
    for i, w in enumerate(outs, start=1):
      # kernel 4, stride 2, 'SAME': output exactly twice the input size
      x = nn.relu(nn.ConvTranspose(w, (4, 4), (2, 2), padding="SAME", dtype=self.dtype,
                                   name=f"deconv{i}")(x))
    return x


def sample_prior(model: LatentAutoencoder, variables, rng: jax.Array, num: int) -> jax.Array:
  """`num` images `[num, S, S, C]` decoded from z ~ N(0, I) (decoder means, in [0, 1] for
  the Bernoulli decoder)."""
  return model.apply(variables, num, method=LatentAutoencoder.sample, rngs={"sample": rng})


def interpolate(model: LatentAutoencoder, variables, x_a: jax.Array, x_b: jax.Array,
                num_steps: int = 8) -> jax.Array:
  """Decoder means `[B, num_steps, S, S, C]` along the line between the codes of x_a, x_b."""
  return model.apply(variables, x_a, x_b, num_steps, method=LatentAutoencoder.interpolate)


register("autoencoder", functools.partial(LatentAutoencoder, variational=False))
register("vae", functools.partial(LatentAutoencoder, variational=True))
