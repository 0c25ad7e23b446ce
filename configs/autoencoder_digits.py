"""Convolutional autoencoder on scikit-learn's digits (32x32, gray value modelled), Bernoulli
reconstruction loss; `recon` = reconstruction cross-entropy in nats per image.

  python train.py --config configs/autoencoder_digits.py --workdir runs/autoencoder_digits
"""
from configs import vae_digits


def get_config():
  c = vae_digits.get_config()  # same network, data, optimizer and cadence, no KL term
  c.task = "autoencoder"
  c.model.name = "autoencoder"
  for key in ("kl_weight", "eval_samples", "eval_seed"):
    del c[key]
  c.best_metric = "recon"
  c.best_mode = "min"
  return c
