"""LeNet-5 on scikit-learn's handwritten digits (32x32), the quick-start job.

  python train.py --config configs/lenet_digits.py --workdir runs/lenet
"""
import ml_collections

from configs.base import classification


def get_config() -> ml_collections.ConfigDict:
  c = classification.get_config()  # digits, SGD + cosine, 1,500 steps of batch 32
  c.model = dict(name="lenet5")
  return c
