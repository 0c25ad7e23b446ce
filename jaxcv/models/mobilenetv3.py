"""MobileNetV3 Large and Small (Howard et al. 2019), layer for layer as torchvision's
`mobilenet_v3_large` / `mobilenet_v3_small`, so that converted torchvision weights
(`jaxcv.weights.torchvision`) give the same outputs.

Layout (torchvision's `features` Sequential, and its index is the jaxcv name's number):
`stem` (features.0: 3x3/2 conv, BN, Hardswish), `block1`..`blockN` (features.1..N, the
inverted residual blocks; N = 15 Large, 11 Small), `last_conv` (features.N+1: 1x1 conv to
6x the last block's channels, BN, Hardswish), global average pool, `classifier` (Linear
960 -> 1280 Large, 576 -> 1024 Small, Hardswish, dropout) and `head` (the last Linear).

A block (`InvertedResidual`, torchvision's `block` Sequential in this order): `expand`
(1x1 conv, BN, act; absent when the expanded width equals the input width, as in
torchvision, whose later `block.i` indices then shift down by one), `depthwise` (kxk conv
with groups = channels, BN, act), `se` (optional squeeze-excitation: `fc1`, `fc2`, 1x1 convs
with bias, ReLU between, hardsigmoid gate; squeeze width `make_divisible(expanded // 4, 8)`),
`project` (1x1 conv, BN, no act); residual add when stride 1 and in == out channels. `act`
is ReLU or Hardswish as the paper's tables say. Convs pad `(k - 1) // 2 * dilation` on each
side, as torch (flax 'SAME' would pad stride-2 convs asymmetrically). `dilated=True`
(torchvision's argument) turns the last stride-2 block's stride into dilation 2 for it and
the blocks after it (output stride 16); `reduced_tail=True` halves the widths of the last
three blocks and of `classifier` (Table 6 of the paper; SSDlite without an ImageNet
backbone); `width_mult` scales every width with torchvision's `_make_divisible` rounding.

BatchNorm (`TorchBatchNorm`) is torch's `BatchNorm2d` with MobileNetV3's hyperparameters,
eps 0.001 and momentum 0.01 (SSDlite: 0.03; fields `norm_epsilon`, `norm_momentum`, the
momentum in torch's sense): in training the running variance moves towards the *unbiased*
batch variance, as torch's, where `nn.BatchNorm` (jaxcv's other models) uses the biased one.

Intermediates (`(output, intermediates)`): `stem`, every `blockK`, `blockK_expand` (the
output of block K's expansion conv + BN + act, for each block that has one), `last_conv`,
and `pre_logits` (the input of `head`: `classifier`'s output after Hardswish and dropout).

SSDlite's taps (torchvision `detection/ssdlite.py::_mobilenet_extractor`): C4 is
`backbone[:c4_pos]` plus `backbone[c4_pos].block[0]`, the expansion layer of the last
stride-2 block (torchvision's `_is_cn`), i.e. `block13_expand` for Large (features.13, the
112 -> 672 expansion, stride 16) and `block9_expand` for Small; the second tap is
`last_conv`. `c4_tap(arch)` / `MobileNetV3.c4_tap` give the name, `is_cn(arch)` /
`MobileNetV3.is_cn` the per-block stride-2 flags and `c_blocks` the names of those blocks
(Large: block2, block4, block7, block13; Small: block1, block2, block4, block9).

`include_head=False` skips the pooling, `classifier` and `head` (no such parameters) and
returns `last_conv`'s features `[B, H/32, W/32, C]` (stride 16 with `dilated`) as the output,
for detection backbones.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxcv.layers.conv_norm_act import ConvNormAct, kaiming_fan_out, torch_conv
from jaxcv.models import common
from jaxcv.models.registry import register

ModuleDef = Any
ARCHS = ("large", "small")


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
  """torchvision's `_make_divisible`: `v` rounded to the nearest multiple of `divisor`
  (at least `min_value`, default `divisor`), rounding up when rounding down would lose more
  than 10%."""
  min_value = divisor if min_value is None else min_value
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


@dataclasses.dataclass(frozen=True)
class BlockConfig:
  """One inverted residual block (torchvision's `InvertedResidualConfig`, widths adjusted)."""
  in_channels: int
  kernel: int
  expanded: int
  out_channels: int
  use_se: bool
  use_hs: bool  # Hardswish; ReLU otherwise
  stride: int
  dilation: int

  @property
  def has_expand(self) -> bool:
    return self.expanded != self.in_channels

  @property
  def is_cn(self) -> bool:
    """torchvision's `_is_cn`: a strided block (C1..C4), whether or not `dilated` made its
    depthwise conv dilated instead."""
    return self.stride > 1

  @property
  def residual(self) -> bool:
    return self.stride == 1 and self.in_channels == self.out_channels

  @property
  def squeeze(self) -> int:
    return make_divisible(self.expanded // 4, 8)


# Tables 1 and 2 of the paper as torchvision: (in, kernel, expanded, out, SE, HS, stride,
# tail): `tail` widths are halved by `reduced_tail` and `tail` blocks dilate with `dilated`.
_TABLES = {
    "large": [
        (16, 3, 16, 16, False, False, 1, 0),
        (16, 3, 64, 24, False, False, 2, 0),  # C1
        (24, 3, 72, 24, False, False, 1, 0),
        (24, 5, 72, 40, True, False, 2, 0),  # C2
        (40, 5, 120, 40, True, False, 1, 0),
        (40, 5, 120, 40, True, False, 1, 0),
        (40, 3, 240, 80, False, True, 2, 0),  # C3
        (80, 3, 200, 80, False, True, 1, 0),
        (80, 3, 184, 80, False, True, 1, 0),
        (80, 3, 184, 80, False, True, 1, 0),
        (80, 3, 480, 112, True, True, 1, 0),
        (112, 3, 672, 112, True, True, 1, 0),
        (112, 5, 672, 160, True, True, 2, 1),  # C4 (out halved)
        (160, 5, 960, 160, True, True, 1, 2),  # (all halved)
        (160, 5, 960, 160, True, True, 1, 2),
    ],
    "small": [
        (16, 3, 16, 16, True, False, 2, 0),  # C1
        (16, 3, 72, 24, False, False, 2, 0),  # C2
        (24, 3, 88, 24, False, False, 1, 0),
        (24, 5, 96, 40, True, True, 2, 0),  # C3
        (40, 5, 240, 40, True, True, 1, 0),
        (40, 5, 240, 40, True, True, 1, 0),
        (40, 5, 120, 48, True, True, 1, 0),
        (48, 5, 144, 48, True, True, 1, 0),
        (48, 5, 288, 96, True, True, 2, 1),  # C4 (out halved)
        (96, 5, 576, 96, True, True, 1, 2),  # (all halved)
        (96, 5, 576, 96, True, True, 1, 2),
    ],
}
_LAST_CHANNEL = {"large": 1280, "small": 1024}


def _check_arch(arch: str) -> None:
  if arch not in ARCHS:
    raise ValueError(f"MobileNetV3 arch must be one of {list(ARCHS)}; got {arch!r}")


def block_configs(arch: str, width_mult: float = 1.0, reduced_tail: bool = False,
                  dilated: bool = False) -> tuple[tuple[BlockConfig, ...], int]:
  """`(blocks, last_channel)` as torchvision's `_mobilenet_v3_conf(arch, ...)`: block K of
  the model (features.K) is `blocks[K - 1]`; `last_channel` is `classifier`'s width."""
  _check_arch(arch)
  if not (isinstance(width_mult, (int, float)) and not isinstance(width_mult, bool)
          and width_mult > 0):
    raise ValueError(f"MobileNetV3 width_mult must be a number > 0; got {width_mult!r}")
  r = 2 if reduced_tail else 1
  dilation = 2 if dilated else 1

  def adjust(c):
    return make_divisible(c * width_mult, 8)

  blocks = []
  for cin, k, exp, cout, se, hs, stride, tail in _TABLES[arch]:
    if tail == 2:
      cin, exp = cin // r, exp // r
    if tail >= 1:
      cout = cout // r
    blocks.append(BlockConfig(adjust(cin), k, adjust(exp), adjust(cout), se, hs, stride,
                              dilation if tail else 1))
  return tuple(blocks), adjust(_LAST_CHANNEL[arch] // r)


def is_cn(arch: str) -> tuple[bool, ...]:
  """Per block (block1 first), torchvision's `_is_cn`: whether it is a strided "C" block."""
  return tuple(b.is_cn for b in block_configs(arch)[0])


def c_blocks(arch: str) -> tuple[str, ...]:
  """Names of the strided blocks (C1..C4): Large block2/4/7/13, Small block1/2/4/9."""
  return tuple(f"block{k}" for k, cn in enumerate(is_cn(arch), 1) if cn)


def c4_tap(arch: str) -> str:
  """SSDlite's C4 feature: the expansion output of the last strided block
  (`block13_expand` Large, `block9_expand` Small)."""
  return f"{c_blocks(arch)[-1]}_expand"


class TorchBatchNorm(nn.Module):
  """torch `BatchNorm2d` on NHWC features, with `nn.BatchNorm`'s variables (`params`
  `scale`, `bias`; `batch_stats` `mean`, `var`), so converted weights load unchanged.

  Inference (`use_running_average`): `(x - mean) / sqrt(var + eps) * scale + bias`, as
  `nn.BatchNorm`. Training: normalises with the batch mean and biased variance and, outside
  `init`, updates `mean <- (1 - momentum) * mean + momentum * batch_mean` and the same for
  `var` with the unbiased batch variance (`n / (n - 1)` times the biased one, n = B*H*W):
  torch's semantics, with torch's `momentum` (flax's `nn.BatchNorm` momentum is
  `1 - momentum`, and it moves towards the biased variance). Statistics in float32 (two-pass
  variance); output in `dtype`, or the promoted input dtype.
  """
  use_running_average: bool = True
  momentum: float = 0.01
  epsilon: float = 1e-3
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      axes = tuple(range(x.ndim - 1))
      x32 = jnp.asarray(x, jnp.float32)
      mean = jnp.mean(x32, axis=axes)
      var = jnp.mean(jnp.square(x32 - mean), axis=axes)
      if not self.is_initializing():
        n = x.size // c
        unbiased = var * (n / max(n - 1, 1))
        m = self.momentum
        ra_mean.value = (1 - m) * ra_mean.value + m * mean
        ra_var.value = (1 - m) * ra_var.value + m * unbiased
    y = (x - mean) * (lax.rsqrt(var + self.epsilon) * scale) + bias
    return jnp.asarray(y, jnp.result_type(x, scale) if self.dtype is None else self.dtype)


class SqueezeExcitation(nn.Module):
  """torchvision's `SqueezeExcitation` with a hardsigmoid gate: `x * hsig(fc2(relu(fc1(
  mean_hw(x)))))`; `fc1`, `fc2` are 1x1 convs with bias (torch Conv2d)."""
  squeeze: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.relu(torch_conv(self.squeeze, 1, use_bias=True, dtype=self.dtype, name="fc1")(s))
    s = torch_conv(x.shape[-1], 1, use_bias=True, dtype=self.dtype, name="fc2")(s)
    return x * jax.nn.hard_sigmoid(s)


class InvertedResidual(nn.Module):
  """torchvision's MobileNetV3 `InvertedResidual`: `(output, expansion output or None)`.
  Submodules `expand` (when `config.has_expand`), `depthwise`, `se` (when `use_se`),
  `project`, in torchvision's `block` order."""
  config: BlockConfig
  norm: ModuleDef
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    cfg = self.config
    act = nn.hard_swish if cfg.use_hs else nn.relu
    conv = functools.partial(ConvNormAct, norm=self.norm, kernel_init=kaiming_fan_out,
                             dtype=self.dtype)
    inputs, expanded = x, None
    if cfg.has_expand:
      x = expanded = conv(cfg.expanded, 1, act=act, name="expand")(x)
    stride = 1 if cfg.dilation > 1 else cfg.stride
    x = conv(cfg.expanded, cfg.kernel, stride, cfg.dilation, act=act, groups=cfg.expanded,
             name="depthwise")(x)
    if cfg.use_se:
      x = SqueezeExcitation(cfg.squeeze, dtype=self.dtype, name="se")(x)
    x = conv(cfg.out_channels, 1, act=None, name="project")(x)
    return (x + inputs if cfg.residual else x), expanded


class MobileNetV3(nn.Module):
  """MobileNetV3 classifier (`arch` "large" or "small"). `x`: float `[B, H, W, 3]`, any
  size >= 1 (torchvision's `min_size` (1, 1)).

  Returns `(logits [B, num_classes] float32, intermediates)` (see the module docstring for
  the intermediates, and `include_head`). Top-level modules: `stem`, `block1`..`blockN`,
  `last_conv`, `classifier`, `head` (the names `frozen_stages` takes).
  """
  arch: str = "large"
  num_classes: int = 1000
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()
  width_mult: float = 1.0
  reduced_tail: bool = False
  dilated: bool = False
  norm_epsilon: float = 1e-3
  norm_momentum: float = 0.01  # torch's sense: new = (1 - m) * old + m * batch
  dropout: float = 0.2
  include_head: bool = True

  @property
  def block_configs(self) -> tuple[BlockConfig, ...]:
    return block_configs(self.arch, self.width_mult, self.reduced_tail, self.dilated)[0]

  @property
  def is_cn(self) -> tuple[bool, ...]:
    """Per block (block1 first), torchvision's `_is_cn`."""
    return tuple(b.is_cn for b in self.block_configs)

  @property
  def c_blocks(self) -> tuple[str, ...]:
    return c_blocks(self.arch)

  @property
  def c4_tap(self) -> str:
    return c4_tap(self.arch)

  @property
  def stage_names(self) -> list[str]:
    blocks = [f"block{k}" for k in range(1, len(self.block_configs) + 1)]
    head = ["classifier", "head"] if self.include_head else []
    return ["stem", *blocks, "last_conv", *head]

  @nn.compact
  def __call__(self, x, train: bool = False):
    common.check_input(x, "MobileNetV3")
    blocks, last_channel = block_configs(self.arch, self.width_mult, self.reduced_tail,
                                         self.dilated)
    common.check_frozen(self.frozen_stages, self.stage_names, "MobileNetV3")

    def norm(stage):
      return functools.partial(
          TorchBatchNorm, use_running_average=not train or stage in self.frozen_stages,
          momentum=self.norm_momentum, epsilon=self.norm_epsilon, dtype=self.dtype)

    conv = functools.partial(ConvNormAct, act=nn.hard_swish, kernel_init=kaiming_fan_out,
                             dtype=self.dtype)
    out = {}
    x = out["stem"] = conv(blocks[0].in_channels, 3, 2, norm=norm("stem"), name="stem")(x)
    for k, cfg in enumerate(blocks, 1):
      name = f"block{k}"
      x, expanded = InvertedResidual(cfg, norm(name), self.dtype, name=name)(x)
      if expanded is not None:
        out[f"{name}_expand"] = expanded
      out[name] = x
    x = out["last_conv"] = conv(6 * blocks[-1].out_channels, 1, norm=norm("last_conv"),
                                name="last_conv")(x)
    if not self.include_head:
      return x, out
    dense = functools.partial(nn.Dense, dtype=self.dtype,
                              kernel_init=nn.initializers.normal(0.01))  # torchvision's init
    x = nn.hard_swish(dense(last_channel, name="classifier")(common.global_avg_pool(x)))
    x = out["pre_logits"] = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = dense(self.num_classes, name="head")(x)
    return logits.astype(jnp.float32), out


MobileNetV3Large = register("mobilenet_v3_large", functools.partial(MobileNetV3, arch="large"))
MobileNetV3Small = register("mobilenet_v3_small", functools.partial(MobileNetV3, arch="small"))
