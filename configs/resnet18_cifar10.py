"""ResNet-18 on CIFAR-10 (tfds `cifar10`; needs the data set prepared, see README).

  python train.py --config configs/resnet18_cifar10.py --workdir runs/resnet18_cifar10

On several accelerators the batch is split over the `data` axis of the mesh; add
`--config.mesh.shape='{"data": 4, "model": 2}' --config.mesh.shard_params=True` to shard the
large parameters as well.
"""
from configs import lenet_digits


def get_config():
  c = lenet_digits.get_config()
  c.model = dict(name="resnet18")
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
