"""torchvision's DeepLabv3 (dilated ResNet-50 at width 8, ASPP, auxiliary FCN head on
layer3) segmenting the `shapes` scenes at 128x128. With `model.width=64` and `num_classes=21`
it is torchvision's `deeplabv3_resnet50`, whose weights convert with
`jaxcv.weights.torchvision.convert("deeplabv3_resnet50", state_dict)`. No target of its own.

  python train.py --config configs/deeplabv3_shapes.py --workdir runs/deeplabv3_shapes
"""
from configs.base import shapes_dense


def get_config():
  c = shapes_dense.get_config()  # data, CE + Dice, Adam + cosine, 2,000 steps of batch 8
  c.model = {"name": "deeplabv3_resnet50", "width": 8}
  c.batch_size = 8
  return c
