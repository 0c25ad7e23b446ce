"""Variational autoencoder on scikit-learn's digits (32x32, gray value modelled), Bernoulli
decoder; test ELBO in nats per image (tests/test_latent_targets.py).

  python train.py --config configs/vae_digits.py --workdir runs/vae_digits
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "vae"
  # likelihood "gaussian" with gaussian_std > 0 (fixed) or 0 (learned) for a Gaussian decoder
  c.model = {"name": "vae", "latent_dim": 16, "width": 16, "hidden": 256, "levels": 3,
             "image_size": 32, "likelihood": "bernoulli", "gaussian_std": 0.0}
  c.data = {"name": "digits", "image_size": 32, "train_split": "train",
            "eval_splits": ("validation", "test")}
  c.image_channels = 1  # the gray value (digits repeats it in R, G and B)
  c.kl_weight = 1.0
  c.eval_samples = 4  # draws of z ~ q(z|x) per image for the evaluation ELBO
  c.eval_seed = 0
  c.batch_size = 64
  c.eval_batch_size = 120
  c.num_steps = 2000
  c.optimizer = {"name": "adam", "learning_rate": 2e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8,
                 "weight_decay": 0.0, "weight_decay_mask": "kernels", "grad_clip_norm": 0.0}
  c.schedule = {"name": "cosine", "warmup_steps": 100}
  c.transfer = {"frozen": (), "head": ("head",), "backbone_lr_mult": 1.0, "init_from": "",
                "init_exclude": ("head",)}
  c.dtype = "float32"
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.keep_checkpoints = 2
  c.log_every = 100
  c.best_metric = "elbo"
  c.best_mode = "max"
  c.seed = 0
  c.progress_bar = True
  c.prefetch = 2
  c.mesh = {"shape": {"data": -1}, "shard_params": False, "shard_params_min_size": 2**16}
  return c
