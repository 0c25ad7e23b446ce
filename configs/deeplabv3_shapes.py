"""torchvision's DeepLabv3 (dilated ResNet-50 at width 8, ASPP, auxiliary FCN head on
layer3) segmenting the `shapes` scenes at 128x128. With `model.width=64` and `num_classes=21`
it is torchvision's `deeplabv3_resnet50`, whose weights convert with
`jaxcv.weights.torchvision.convert("deeplabv3_resnet50", state_dict)`. No target of its own.

  python train.py --config configs/deeplabv3_shapes.py --workdir runs/deeplabv3_shapes
"""
from configs import unet_shapes


def get_config():
  c = unet_shapes.shapes_dense_config()
  c.model = {"name": "deeplabv3_resnet50", "width": 8}
  c.batch_size = 8
  return c
