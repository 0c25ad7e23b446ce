"""DeepLabv3+ (atrous separable ASPP, decoder with stride-4 features) on a narrow ResNet-18,
semantic segmentation of the synthetic `shapes` scenes at 128x128 (6 classes: background and
5 shapes). Target: test `miou` >= 0.85 within 20 minutes on a 2-core CPU
(tests/test_deeplab_targets.py).

  python train.py --config configs/deeplabv3plus_shapes.py --workdir runs/deeplabv3plus_shapes
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "segmentation"
  # width 16: stage widths 16..128, ASPP and decoder 64 wide, 12 low-level channels.
  c.model = {"name": "deeplabv3plus_resnet18", "width": 16, "output_stride": 16}
  c.data = {"name": "shapes", "image_size": 128, "keys": ("semantic",), "train_split": "train",
            "eval_splits": ("test",), "split_sizes": {"train": 2000, "test": 200},
            "augmentation": ["random_hflip"], "mean": (0.5, 0.5, 0.5),
            "std": (0.25, 0.25, 0.25)}
  # cross-entropy + soft Dice: Dice weighs every class alike, which speeds up telling the
  # minority shape classes (circle / ellipse / ring) apart, which mIoU averages over
  c.loss = {"dice_weight": 1.0}
  c.batch_size = 8
  c.eval_batch_size = 40
  c.num_steps = 3600
  c.optimizer = {"name": "adamw", "learning_rate": 8e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8,
                 "weight_decay": 1e-4, "weight_decay_mask": "kernels", "grad_clip_norm": 1.0}
  c.schedule = {"name": "cosine", "warmup_steps": 150}
  c.transfer = {"frozen": (), "head": ("head",), "backbone_lr_mult": 1.0, "init_from": "",
                "init_exclude": ("head",)}
  c.dtype = "float32"
  c.eval_every = 600
  c.checkpoint_every = 600
  c.keep_checkpoints = 1
  c.log_every = 50
  c.best_metric = "miou"
  c.best_mode = "max"
  c.seed = 0
  c.progress_bar = True
  c.prefetch = 2
  c.data_workers = 1
  c.mesh = {"shape": {"data": -1}, "shard_params": False, "shard_params_min_size": 2**16}
  return c
