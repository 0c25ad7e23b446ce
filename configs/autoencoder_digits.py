"""Convolutional autoencoder on scikit-learn's digits (32x32, gray value modelled), Bernoulli
reconstruction loss; `recon` = reconstruction cross-entropy in nats per image.

  python train.py --config configs/autoencoder_digits.py --workdir runs/autoencoder_digits
"""
from configs.base import latent


def get_config():
  c = latent.get_config()  # the VAE's network, data, optimizer and cadence; no KL term
  c.task = "autoencoder"
  c.model.name = "autoencoder"
  c.best_metric = "recon"
  c.best_mode = "min"
  return c
