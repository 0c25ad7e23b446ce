"""LeNet-5 on scikit-learn's handwritten digits (32x32), the quick-start job.

  python train.py --config configs/lenet_digits.py --workdir runs/lenet
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "classification"
  c.model = dict(name="lenet5")
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
