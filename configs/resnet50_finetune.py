"""Transfer learning, the course's three recipes, on a torchvision-pretrained ResNet-50.

First convert torchvision weights (needs the `torch` extra and a downloaded .pth):

  python -m jaxcv.weights.torchvision resnet50 resnet50-11ad3fa6.pth runs/resnet50_imagenet.msgpack

Then, fine-tuning with a 10x lower learning rate for the backbone (default here):

  python train.py --config configs/resnet50_finetune.py --workdir runs/r50_ft \
      --config.transfer.init_from=runs/resnet50_imagenet.msgpack

Frozen feature extractor with a new head (BatchNorm of the frozen stages in inference mode):

  ... --config.transfer.frozen='("stem","stage1","stage2","stage3","stage4")'

Frozen lower stages only: `--config.transfer.frozen='("stem","stage1","stage2")'`.
"""
from configs.base import classification

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config():
  c = classification.cifar10()
  c.model = dict(name="resnet50")
  c.data.mean, c.data.std = IMAGENET_MEAN, IMAGENET_STD
  c.data.image_size = 32
  c.batch_size = 64
  c.num_steps = 5000
  c.optimizer.learning_rate = 0.01
  c.schedule.warmup_steps = 200
  c.transfer.backbone_lr_mult = 0.1  # the backbone learns at a tenth of the head's rate
  return c
