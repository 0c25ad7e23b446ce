"""The course's two-layer MLP on scikit-learn's digits (8x8 upsampled to 32x32).

  python train.py --config configs/mlp_digits.py --workdir runs/mlp
"""
from configs.base import classification


def get_config():
  c = classification.get_config()
  c.model = dict(name="mlp", hidden=128)
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 0.0
  return c
