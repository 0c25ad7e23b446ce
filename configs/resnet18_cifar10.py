"""ResNet-18 on CIFAR-10 (tfds `cifar10`; needs the data set prepared, see README).

  python train.py --config configs/resnet18_cifar10.py --workdir runs/resnet18_cifar10

On several accelerators the batch is split over the `data` axis of the mesh; add
`--config.mesh.shape='{"data": 4, "model": 2}' --config.mesh.shard_params=True` to shard the
large parameters as well.
"""
from configs.base import classification


def get_config():
  c = classification.cifar10()  # data, batch 128, 40,000 steps, SGD with Nesterov momentum
  c.model = dict(name="resnet18")
  return c
