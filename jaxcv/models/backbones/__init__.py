"""Backbones: the feature extractors that classifiers, segmentation models and detectors
share, each returning its named stage features (`stem`, `stage1`, ...; docs/conventions.md).

- `resnet`: the ResNet body (stem and residual stages, torchvision's layout and names, with
  output stride / `replace_stride_with_dilation`), as `resnet_body` (parameters in the
  calling module) and `ResNetBackbone` (a module of its own).
- `vgg`: the VGG conv stages (`vgg_body`, `ConvStage`, the stage tables).
"""
from jaxcv.models.backbones.resnet import (ResNetBackbone, Stem,  # noqa: F401
                                           dilation_for_output_stride, resnet_body)
from jaxcv.models.backbones.vgg import CONFIGS, STAGE_WIDTHS, ConvStage, vgg_body  # noqa: F401
