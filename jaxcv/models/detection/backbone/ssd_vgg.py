"""SSD's VGG-16 feature extractor (Liu et al. 2016), torchvision's `SSDFeatureExtractorVGG`:
the VGG-16 conv stages with the third pool in ceil mode, conv4_3 L2-normalised over channels
and rescaled by a learned per-channel weight (initial 20), then pool4, conv5_1..5_3, a 3x3
stride-1 max pool in place of pool5, fc6 as a 3x3 conv with dilation 6 and fc7 as a 1x1 conv
(1024 channels), and the extra layers (1x1 conv, 3x3 conv; SSD512 adds a 1x1 and a 4x4).

Built inside the detector's `nn.compact` method so its modules are the detector's top-level
`stage1`..`stage5` (the VGG classifiers' parameter names: `conv1`, `conv2`, ...; jaxcv or
converted VGG-16 weights load as they are), `fc` (`conv6`, `conv7`), `extra1`..`extra4`
(`extra5` for SSD512; `conv1`, `conv2`) and the L2Norm weight `scale_weight` at the top level.
The maps, for a 300x300 input: 38 (conv4_3), 19 (fc7), 10, 5, 3, 1; for 512x512 (torchvision's
highres layers): 64, 32, 16, 8, 6, 4, 1. `width` scales every width (64: torchvision's).

`trainable_layers` (0..5) is torchvision's `_vgg_extractor`'s: the last that many of the
five VGG stages train (its stage boundaries are the pools: the first "stage" is conv1_x);
the others get no gradient. The fc and extra layers always train.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers.conv_norm_act import torch_conv
from jaxcv.models import common
from jaxcv.models.backbones.vgg import CONFIGS, STAGE_WIDTHS, ConvStage

# (1x1 width, 3x3 width, kernel, stride, padding) of torchvision's extra blocks
EXTRAS_300 = ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 1, 0), (128, 256, 3, 1, 0))
EXTRA_512 = (128, 256, 4, 1, 0)
xavier = nn.initializers.xavier_uniform()


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """torch `F.normalize(x, dim=channels)`: `x / max(||x||_2, eps)` over the last axis."""
  norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True))
  return (x / jnp.maximum(norm, eps)).astype(x.dtype)


def check_extractor(trainable_layers: int, model: str) -> None:
  if not (isinstance(trainable_layers, int) and 0 <= trainable_layers <= 5):
    raise ValueError(f"{model}: trainable_backbone_layers must be an int in [0, 5] "
                     f"(torchvision's); got {trainable_layers!r}")


def extra_specs(highres: bool, extra_layers=None) -> tuple:
  """The extra blocks' `(1x1 width, kxk width, k, stride, padding)`: `extra_layers` where
  given (at full width; e.g. fewer, smaller blocks for inputs below SSD300's ~270 px), else
  torchvision's SSD300 blocks, plus SSD512's where `highres`."""
  if extra_layers is not None:
    return tuple(tuple(int(v) for v in spec) for spec in extra_layers)
  return EXTRAS_300 + ((EXTRA_512,) if highres else ())


def ssd_vgg_features(module: nn.Module, x: jax.Array, *, width: int = 64, highres: bool = False,
                     extra_layers=None, trainable_layers: int = 5, dtype: Any = jnp.float32,
                     model: str = "SSD", norm: Callable[[str], Any] = lambda stage: None
                     ) -> list[jax.Array]:
  """The SSD maps, finest first, built in `module`'s compact method (see the module doc).
  `norm(module name)`: a norm constructor put after every conv of that module (`bn{i}`,
  `bn6`/`bn7`, `bn1`/`bn2`), or None (torchvision's SSD: no norm)."""
  check_extractor(trainable_layers, model)
  scale = lambda c: c * width // 64
  frozen = 5 - trainable_layers
  sizes = CONFIGS["vgg16"]
  for i in range(4):  # conv1..conv4 stages; pool3 in ceil mode; conv4_3 not pooled
    x = ConvStage(sizes[i], scale(STAGE_WIDTHS[i]), norm(f"stage{i + 1}"), dtype, pool=i < 3,
                  ceil_mode=i == 2, name=f"stage{i + 1}")(x)
    if i < frozen:
      x = jax.lax.stop_gradient(x)
  weight = module.param("scale_weight", nn.initializers.constant(20.0), (x.shape[-1],))
  maps = [weight.astype(x.dtype) * l2_normalize(x)]
  x = ConvStage(sizes[4], scale(STAGE_WIDTHS[4]), norm("stage5"), dtype, pool=False,
                name="stage5")(common.max_pool(x, 2, 2))
  if frozen >= 5:
    x = jax.lax.stop_gradient(x)
  x = common.max_pool(x, 3, 1, padding=1)
  x = FC67(scale(1024), dtype, norm("fc"), name="fc")(x)
  maps.append(x)
  for k, spec in enumerate(extra_specs(highres, extra_layers)):
    x = ExtraBlock(scale(spec[0]), scale(spec[1]), *spec[2:], dtype=dtype,
                   norm=norm(f"extra{k + 1}"), name=f"extra{k + 1}")(x)
    maps.append(x)
  return maps


def _normed(x, norm, name):
  return x if norm is None else norm(name=name)(x)


class FC67(nn.Module):
  """fc6 (3x3, dilation 6, padding 6) and fc7 (1x1) as convs, each with [norm and] ReLU."""
  features: int
  dtype: Any = jnp.float32
  norm: Any = None

  @nn.compact
  def __call__(self, x):
    x = torch_conv(self.features, 3, dilation=6, use_bias=True, dtype=self.dtype,
                   kernel_init=xavier, name="conv6")(x)
    x = nn.relu(_normed(x, self.norm, "bn6"))
    x = torch_conv(self.features, 1, use_bias=True, dtype=self.dtype, kernel_init=xavier,
                   name="conv7")(x)
    return nn.relu(_normed(x, self.norm, "bn7"))


class ExtraBlock(nn.Module):
  """1x1 conv + ReLU, then a `kernel` conv (`stride`, `padding`) + ReLU (xavier init)."""
  squeeze: int
  features: int
  kernel: int
  stride: int
  padding: int
  dtype: Any = jnp.float32
  norm: Any = None

  @nn.compact
  def __call__(self, x):
    if min(x.shape[1:3]) + 2 * self.padding < self.kernel:
      raise ValueError(f"SSD extra layer {self.name}: a {tuple(x.shape[1:3])} map is smaller "
                       f"than its {self.kernel}x{self.kernel} kernel (the input image is too "
                       f"small for this SSD)")
    x = nn.Conv(self.squeeze, (1, 1), dtype=self.dtype, kernel_init=xavier, name="conv1")(x)
    x = nn.relu(_normed(x, self.norm, "bn1"))
    p = self.padding
    x = nn.Conv(self.features, (self.kernel,) * 2, (self.stride,) * 2, padding=((p, p), (p, p)),
                dtype=self.dtype, kernel_init=xavier, name="conv2")(x)
    return nn.relu(_normed(x, self.norm, "bn2"))
