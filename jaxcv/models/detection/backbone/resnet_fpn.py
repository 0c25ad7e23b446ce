"""A ResNet body with an FPN on top: torchvision's `resnet_fpn_backbone` /
`_resnet_fpn_extractor` (`BackboneWithFPN`), built inside a detector's `nn.compact` method
so that the ResNet's modules are the detector's top-level `stem`, `stage1`..`stage4` (the
parameter names of the ResNet classifiers: converted or jaxcv-trained ResNet weights load
into a detector's backbone as they are) and the FPN is its `fpn`.

`trainable_backbone_layers` (0..5) is torchvision's: the last that many of (stage4, stage3,
stage2, stage1, stem) train; the others get no gradient (`resnet_body`'s
`no_gradient_through`). Norm kinds: "frozen_batch" (torchvision's FrozenBatchNorm2d, its
choice for pretrained backbones; `norm_epsilon` 0.0 for its v1 COCO detector weights, see
`jaxcv.weights.torchvision`), "batch" (BatchNorm2d: torchvision's choice without pretrained
weights, and v2's), "group".
"""
from __future__ import annotations

from typing import Any, Sequence

import jax

from jaxcv.layers.norm import NORM_KINDS, batch_norm, norm_layer
from jaxcv.layers.residual import BasicBlock, BottleneckBlock
from jaxcv.models.backbones.resnet import resnet_body
from jaxcv.models.detection.backbone.fpn import FPN

# name -> (stage sizes, block): torchvision's resnet18/34/50/101.
RESNETS = {
    "resnet18": ((2, 2, 2, 2), BasicBlock), "resnet34": ((3, 4, 6, 3), BasicBlock),
    "resnet50": ((3, 4, 6, 3), BottleneckBlock), "resnet101": ((3, 4, 23, 3), BottleneckBlock),
}


def check_backbone(backbone: str, norm: str, trainable_layers: int, returned_stages,
                   model: str) -> None:
  """ValueErrors naming the problem for an unknown backbone or norm, a
  `trainable_backbone_layers` outside 0..5, or returned stages outside 1..4."""
  if backbone not in RESNETS:
    raise ValueError(f"{model}: unknown backbone {backbone!r}; known: {sorted(RESNETS)}")
  if norm not in NORM_KINDS or norm is None:
    raise ValueError(f"{model}: backbone_norm must be one of {list(NORM_KINDS[:-1])}; got "
                     f"{norm!r}")
  if not (isinstance(trainable_layers, int) and 0 <= trainable_layers <= 5):
    raise ValueError(f"{model}: trainable_backbone_layers must be an int in [0, 5] "
                     f"(torchvision's); got {trainable_layers!r}")
  if not returned_stages or any(s not in (1, 2, 3, 4) for s in returned_stages):
    raise ValueError(f"{model}: returned stages must be in 1..4; got {returned_stages!r}")


def resnet_fpn_features(x: jax.Array, *, backbone: str, width: int, norm: str,
                        norm_epsilon: float, num_groups: int, trainable_layers: int,
                        frozen_stages: Sequence[str], train: bool, fpn: FPN,
                        returned_stages: Sequence[int] = (1, 2, 3, 4),
                        dtype: Any = None, model: str = "detector") -> list[jax.Array]:
  """The FPN maps (finest first, then the FPN's extra levels) of a ResNet on `x`
  `[B, H, W, 3]`; called inside the detector's `nn.compact` method with its `fpn` module."""
  check_backbone(backbone, norm, trainable_layers, returned_stages, model)
  stage_sizes, block = RESNETS[backbone]

  def norm_of(stage):
    if norm == "batch":
      return batch_norm(train, stage, frozen_stages, dtype)
    return norm_layer(norm, train, dtype, num_groups=num_groups, epsilon=norm_epsilon)

  stages = resnet_body(x, stage_sizes=stage_sizes, block_cls=block, width=width, norm=norm_of,
                       dtype=dtype, no_gradient_through=5 - trainable_layers)
  return fpn([stages[f"stage{s}"] for s in returned_stages])
