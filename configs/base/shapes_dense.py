"""Dense prediction on the `shapes` scenes at 128x128 (`get_config`), and the U-Net (`unet`).

`get_config()` is what the dense shapes experiments share: the data (2,000 training scenes,
horizontal flips), segmentation with cross-entropy + soft Dice, Adam with a cosine
schedule, 2,000 steps of batch 8. It sets no model: each experiment names its own (the
U-Net ones with `unet(...)`), and the depth, normals and sketch-to-image ones change the
task, the label key and the loss.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "segmentation"
  c.data = {"name": "shapes", "image_size": 128, "keys": ("semantic",),
            "split_sizes": {"train": 2000, "validation": 100, "test": 200}, "seed": 0,
            "train_split": "train", "eval_splits": ("validation", "test"),
            "augmentation": ("random_hflip",), "preprocess": (),
            "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
  # cross-entropy + soft Dice (per image and class): Dice weighs every class alike, which
  # speeds up learning the minority shape classes that mIoU averages over
  c.loss = {"dice_weight": 1.0}
  c.batch_size = 8
  c.eval_batch_size = 50
  c.num_steps = 2000
  c.optimizer = {"name": "adam", "learning_rate": 3e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8,
                 "weight_decay": 0.0, "weight_decay_mask": "kernels", "grad_clip_norm": 1.0}
  c.schedule = {"name": "cosine", "warmup_steps": 50}
  c.transfer = {"frozen": (), "head": ("head",), "backbone_lr_mult": 1.0, "init_from": "",
                "init_exclude": ("head",)}
  c.dtype = "float32"
  c.eval_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.log_every = 25
  c.best_metric = "miou"
  c.best_mode = "max"
  c.seed = 0
  c.progress_bar = True
  c.prefetch = 2
  c.data_workers = 1
  c.mesh = {"shape": {"data": -1}, "shard_params": False, "shard_params_min_size": 2**16}
  return c


def unet(**changes) -> dict:
  """The U-Net of the shapes experiments: depth 4, width 8 (the paper's 64 / 8), BatchNorm,
  same padding; `changes` override (e.g. `width=4`, `in_channels=1`)."""
  return {"name": "unet", "depth": 4, "width": 8, "padding": "same", "batch_norm": True,
          **changes}
