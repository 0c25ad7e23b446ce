"""Variational autoencoder on scikit-learn's digits (32x32, gray value modelled), Bernoulli
decoder; test ELBO in nats per image (tests/test_latent_targets.py).

  python train.py --config configs/vae_digits.py --workdir runs/vae_digits
"""
import ml_collections

from configs.base import latent


def get_config() -> ml_collections.ConfigDict:
  c = latent.get_config()  # the network, digits, Adam + cosine, 2,000 steps of batch 64
  c.task = "vae"
  c.model.name = "vae"
  c.kl_weight = 1.0
  c.eval_samples = 4  # draws of z ~ q(z|x) per image for the evaluation ELBO
  c.eval_seed = 0
  c.best_metric = "elbo"
  c.best_mode = "max"
  return c
