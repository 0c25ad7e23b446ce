"""Image-only augmentations as pure jnp functions of a PRNG key (run inside the train step).

Geometric augmentations that must also move boxes, masks or keypoints live with the data
pipeline; these are for classification, where only the image changes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def random_crop_with_padding(rng: jax.Array, images: jax.Array, pad: int) -> jax.Array:
  """Pads `[B, H, W, C]` images by `pad` pixels of zeros and crops each back to `[H, W]`
  at an independent random offset (the CIFAR "pad 4, random crop" recipe): a random
  translation by up to `pad` pixels."""
  if pad <= 0:
    return images
  b, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(rng, (b, 2), 0, 2 * pad + 1)

  def crop(img, off):
    return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

  return jax.vmap(crop)(padded, offsets)


def random_flip_left_right(rng: jax.Array, images: jax.Array) -> jax.Array:
  """Mirrors each `[B, H, W, C]` image horizontally with probability 1/2."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)
