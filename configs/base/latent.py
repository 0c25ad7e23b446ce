"""The latent models on scikit-learn's digits (32x32, the gray value modelled).

What `vae_digits` and `autoencoder_digits` share: the network (`model.*` but its name),
the data, Adam with a cosine schedule, 2,000 steps of batch 64. Experiments set `task`,
`model.name`, their task's keys and `best_metric`.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # likelihood "gaussian" with gaussian_std > 0 (fixed) or 0 (learned) for a Gaussian decoder
  c.model = {"latent_dim": 16, "width": 16, "hidden": 256, "levels": 3, "image_size": 32,
             "likelihood": "bernoulli", "gaussian_std": 0.0}
  c.data = {"name": "digits", "image_size": 32, "train_split": "train",
            "eval_splits": ("validation", "test")}
  c.image_channels = 1  # the gray value (digits repeats it in R, G and B)
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
  c.seed = 0
  c.progress_bar = True
  c.prefetch = 2
  c.mesh = {"shape": {"data": -1}, "shard_params": False, "shard_params_min_size": 2**16}
  return c
