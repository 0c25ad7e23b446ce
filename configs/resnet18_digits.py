"""A narrow ResNet-18 (BatchNorm, 4 stages) on digits: the CPU-sized ResNet run.

  python train.py --config configs/resnet18_digits.py --workdir runs/resnet18_digits
"""
from configs.base import classification


def get_config():
  c = classification.get_config()
  c.model = dict(name="resnet18", width=16)
  c.num_steps = 600
  c.eval_every = 200
  c.checkpoint_every = 200
  c.optimizer.learning_rate = 0.05
  return c
