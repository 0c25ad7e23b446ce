"""Image classification runs: digits (`get_config`) and CIFAR-10 (`cifar10`), no model.

`get_config()` is the CPU-sized run on scikit-learn's digits at 32x32 (SGD with momentum and
a cosine schedule, 1,500 steps of batch 32, random 2-pixel translation) that
`lenet_digits`, `mlp_digits` and `resnet18_digits` share; `cifar10()` is the CIFAR-10
recipe (40,000 steps of batch 128, SGD with Nesterov momentum) of `resnet18_cifar10` and
`resnet50_finetune`. Experiments set `model` and what else differs.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "classification"
  c.data = dict(name="digits", image_size=32, train_split="train",
                eval_splits=("validation", "test"))
  # Random translation by up to 2 pixels; no flips (a mirrored 2 is not a 2).
  c.augment = dict(crop_pad=2, hflip=False)
  c.batch_size = 32
  c.eval_batch_size = 120
  c.num_steps = 1500
  c.optimizer = dict(name="sgd", learning_rate=0.05, momentum=0.9, nesterov=False,
                     weight_decay=5e-3, weight_decay_mask="kernels", grad_clip_norm=0.0)
  c.schedule = dict(name="cosine", warmup_steps=50)
  c.transfer = dict(frozen=(), head=("head",), backbone_lr_mult=1.0, init_from="",
                    init_exclude=("head",))
  c.label_smoothing = 0.0
  c.dtype = "float32"
  c.eval_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.log_every = 50
  c.best_metric = "accuracy"
  c.best_mode = "max"
  c.seed = 0
  c.progress_bar = True
  c.prefetch = 2
  c.mesh = dict(shape={"data": -1}, shard_params=False, shard_params_min_size=2**16)
  return c


def cifar10() -> ml_collections.ConfigDict:
  """CIFAR-10 (tfds `cifar10`, prepared beforehand, see README) over `get_config()`."""
  c = get_config()
  c.data = dict(name="cifar10", train_split="train", eval_splits=("validation", "test"),
                mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
  c.batch_size = 128
  c.eval_batch_size = 500
  c.num_steps = 40_000
  c.optimizer = dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=True,
                     weight_decay=5e-4, weight_decay_mask="kernels", grad_clip_norm=0.0)
  c.schedule = dict(name="cosine", warmup_steps=1000)
  c.eval_every = 2000
  c.checkpoint_every = 2000
  c.log_every = 100
  return c
