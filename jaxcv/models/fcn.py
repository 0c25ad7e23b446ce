"""Fully convolutional networks: FCN-32s/16s/8s on VGG-16 (Long et al. 2015) and torchvision's
`fcn_resnet50` (dilated ResNet-50, FCNHead, auxiliary head), layer for layer.

Every model maps float NHWC images `[B, H, W, 3]` (raw, normalised by the task) to
`(logits [B, H, W, num_classes] float32, intermediates)`: a score per class and pixel at the
input resolution, with the backbone's stage outputs in `intermediates`.

FCN-32s/16s/8s (`fcn32s`, `fcn16s`, `fcn8s`): VGG-16's five conv stages (`stage1`..`stage5`,
`jaxcv.models.backbones.vgg_body`, same parameter names as `vgg16`), fc6 as a 7x7 conv
(padding 3) and fc7 as a 1x1 conv (ReLU, dropout 0.5 each), a 1x1 class scoring layer
(`head`) at stride 32, then learned transposed convolutions initialised to bilinear
upsampling (`jaxcv.layers ConvTranspose`, `bilinear_upsample_init`, no bias, as the paper's
Caffe nets):
- 32s: `upscore` (k 64, stride 32) straight to the input size.
- 16s: `upscore2` (k 4, stride 2) to stride 16, plus `score_pool4` (1x1 on pool4), then
  `upscore16` (k 32, stride 16).
- 8s: as 16s to stride 16, `upscore_pool4` (k 4, stride 2) to stride 8, plus `score_pool3`
  (1x1 on pool3), then `upscore8` (k 16, stride 8).
Score layers are zero-initialised, as in the paper (sec. 4.3).

Crop alignment: the paper pads conv1 by 100 pixels and computes crop offsets from that; here
conv1 has VGG's padding 1 (so an input must have H and W divisible by 32, checked) and every
up-convolution with kernel 2s and stride s gives `(n - 1) s + 2s = n s + s` pixels, whose
first `s / 2` are cropped (the "Crop" layer of the paper's nets, taking `n s` pixels from
offset `s / 2`). With that offset the centre of coarse pixel `i`, `i s + (s - 1) / 2` on the
fine grid, is where the bilinear kernel centred on it peaks, so coarse and fine maps align
pixel centre on pixel centre; the crop equals torch `ConvTranspose2d(padding=s // 2)`.

`fcn_resnet50`: torchvision's `fcn_resnet50(weights=None, aux_loss=True)`
(`jaxcv.models.simple_segmentation`): ResNet-50 with
`replace_stride_with_dilation=(False, True, True)` (output stride 8), `FCNHead` (`head`: 3x3
conv 2048 -> 512, BN, ReLU, dropout 0.1, 1x1 conv with bias) on stage4, the auxiliary FCNHead
(`aux`, 1024 -> 256) on stage3 when `aux_loss`, each upsampled to the input size with
`F.interpolate(bilinear, align_corners=False)` (`jaxcv.layers.resize`). The auxiliary logits
come back as `intermediates["aux"]`. `jaxcv.weights.torchvision.convert("fcn_resnet50",
state_dict)` loads torchvision's weights.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers import ConvTranspose, bilinear_upsample_init
from jaxcv.models import common
from jaxcv.models.backbones.vgg import CONFIGS, vgg_body
from jaxcv.models.registry import register
from jaxcv.models.simple_segmentation import SimpleSegmentation

_zeros = nn.initializers.zeros_init()


def _crop(x: jax.Array, offset: int, like: jax.Array | tuple[int, int]) -> jax.Array:
  """`x[:, offset:offset + h, offset:offset + w]` with `(h, w)` of `like` (the paper's Crop)."""
  h, w = like.shape[1:3] if hasattr(like, "shape") else like
  return x[:, offset:offset + h, offset:offset + w]


class FCNVGG(nn.Module):
  """FCN-32s/16s/8s on VGG-16 (see the module docstring). `x`: `[B, H, W, 3]`, H and W
  divisible by 32.

  Returns `(logits [B, H, W, num_classes] float32, intermediates)` with `stage1`..`stage5`
  (VGG's pooled stage outputs, strides 2..32), `fc7` (`[B, H/32, W/32, hidden]`) and the
  class scores before each upsampling: `score32` (`head`), `score16` (16s, 8s: upscore2 +
  score_pool4), `score8` (8s: upscore_pool4 + score_pool3), in the computation dtype.
  `skips`: 0 (32s), 1 (16s, pool4) or 2 (8s, pool4 and pool3). `width` scales VGG's conv
  widths (64 in the paper); `hidden` is the fc6/fc7 width (default 4096 * width / 64).
  """
  skips: int = 0
  num_classes: int = 21
  width: int = 64
  hidden: int | None = None
  batch_norm: bool = False
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  @property
  def model_name(self) -> str:
    return f"FCN-{(32, 16, 8)[self.skips]}s"

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.skips not in (0, 1, 2):
      raise ValueError(f"FCNVGG skips must be 0 (32s), 1 (16s) or 2 (8s); got {self.skips}")
    common.check_image(x, self.model_name, 32)
    names = [f"stage{i + 1}" for i in range(5)]
    ups = {0: ["upscore"], 1: ["upscore2", "upscore16"],
           2: ["upscore2", "upscore_pool4", "upscore8"]}[self.skips]
    scores = ["score_pool4", "score_pool3"][:self.skips]
    common.check_frozen(self.frozen_stages, names + ["fc6", "fc7", "head"] + scores + ups,
                        self.model_name)

    def norm(stage):  # None: VGG without BatchNorm, as the paper's
      return (common.batch_norm(train, stage, self.frozen_stages, self.dtype)
              if self.batch_norm else None)

    out = vgg_body(x, stage_sizes=CONFIGS["vgg16"], width=self.width, norm=norm,
                   dtype=self.dtype)
    x = out["stage5"]
    hidden = self.hidden or 4096 * self.width // 64
    dropout = nn.Dropout(0.5, deterministic=not train)
    x = nn.relu(nn.Conv(hidden, (7, 7), padding=((3, 3), (3, 3)), dtype=self.dtype,
                        kernel_init=common.kaiming_fan_out, name="fc6")(x))
    x = nn.relu(nn.Conv(hidden, (1, 1), dtype=self.dtype, kernel_init=common.kaiming_fan_out,
                        name="fc7")(dropout(x)))
    x = out["fc7"] = dropout(x)

    def score(name, y):
      return nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, kernel_init=_zeros,
                     name=name)(y)

    def up(name, y, s, like):
      y = ConvTranspose(self.num_classes, 2 * s, s, use_bias=False, dtype=self.dtype,
                        kernel_init=bilinear_upsample_init, name=name)(y)
      return _crop(y, s // 2, like)

    x = out["score32"] = score("head", x)
    if self.skips >= 1:
      x = out["score16"] = (up("upscore2", x, 2, out["stage4"])
                            + score("score_pool4", out["stage4"]))
    if self.skips >= 2:
      x = out["score8"] = (up("upscore_pool4", x, 2, out["stage3"])
                           + score("score_pool3", out["stage3"]))
    s = (32, 16, 8)[self.skips]
    x = up(ups[-1], x, s, (x.shape[1] * s, x.shape[2] * s))
    return x.astype(jnp.float32), out


FCN32s = register("fcn32s", functools.partial(FCNVGG, skips=0))
FCN16s = register("fcn16s", functools.partial(FCNVGG, skips=1))
FCN8s = register("fcn8s", functools.partial(FCNVGG, skips=2))


class FCNResNet(SimpleSegmentation):
  """torchvision's FCN on a dilated ResNet (output stride 8): `SimpleSegmentation` with an
  `FCNHead` (`head`) on stage4. `x`: `[B, H, W, 3]`, any size.

  Returns `(out [B, H, W, num_classes] float32, intermediates)`: `aux` (the auxiliary head's
  logits on stage3, `[B, H, W, num_classes]` float32, only when `aux_loss`), `stem`,
  `stage1`..`stage4`. `width` scales the backbone (64 as torchvision); the heads take a
  quarter of their input's channels, as torchvision's.
  """
  model_name = "fcn_resnet"  # in error messages


FCNResNet50 = register("fcn_resnet50", FCNResNet)
