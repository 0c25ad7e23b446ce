"""U-Net (Ronneberger, Fischer & Brox 2015): the paper's encoder-decoder with skip connections.

Layout (paper, `depth` = 4, `width` = 64): each level has two 3x3 convs + ReLU (optional
BatchNorm between conv and ReLU); the contracting path goes down with 2x2 max pooling
(stride 2) and doubles the channels per level; the expanding path goes up with a 2x2
up-convolution (transposed conv, stride 2) that halves the channels, concatenates the
encoder features of the same level (centre-cropped to the decoder's size under valid
padding), and applies two 3x3 convs; a 1x1 conv maps to `num_classes`. Level i has
`width * 2**i` channels, the bottleneck `width * 2**depth`.

Padding:
- "same" (the default, used by the shapes configs): 3x3 convs pad by 1, so the output has
  the input's size. H and W must be divisible by `2**depth`.
- "valid" (the paper): unpadded convs, the output is smaller than the input and is its
  centre (targets are centre-cropped, see `jaxcv.train.tasks.segmentation.center_crop`; or
  mirror-pad the input by `(s - out) / 2` per side, the paper's overlap-tile strategy). Each
  level's two convs take 4 pixels and the pooling needs an even size, so a size s is accepted
  iff `(s + 4) % 2**depth == 0` and `s > 12 * 2**depth - 8`, and the output is
  `s - (12 * 2**depth - 8)`: 572 -> 388 for `depth` 4 (the paper's figure); 188 -> 4 is
  the smallest at depth 4, 44 -> 4 at depth 2. `unet_output_size(s, depth, padding)` and
  `valid_input_sizes(depth)` compute it.

Params (top-level modules are the stages): `enc0`..`enc{depth-1}` (`conv1`, [`bn1`],
`conv2`, [`bn2`]), `bottleneck`, `up{depth-1}`..`up0` (`upconv`, `conv1`, ..., the decoder
level that comes back to encoder level i), `head` (the 1x1 conv). Intermediates: the same
names (each stage's output; `enc*` before pooling) and `pre_logits` (= `up0`).
Initialisation: He normal (fan-in, the paper's sqrt(2 / N)).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.layers import ConvTranspose
from jaxcv.models import common
from jaxcv.models.registry import register

PADDINGS = ("same", "valid")
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _check_padding(padding: str) -> None:
  if padding not in PADDINGS:
    raise ValueError(f"U-Net padding must be one of {PADDINGS}; got {padding!r}")


def unet_output_size(size: int, depth: int, padding: str = "same") -> int:
  """Output size of a U-Net for input size `size` along one axis; ValueError if the
  architecture cannot take it (rule in the module docstring)."""
  _check_padding(padding)
  if depth < 1:
    raise ValueError(f"U-Net depth must be >= 1; got {depth}")
  if padding == "same":
    if size < 2**depth or size % 2**depth:
      raise ValueError(f"U-Net (depth {depth}, same padding) needs H and W divisible by "
                       f"2**{depth} = {2**depth}; got {size}")
    return size
  loss = 12 * 2**depth - 8
  if (size + 4) % 2**depth or size <= loss:
    raise ValueError(f"U-Net (depth {depth}, valid padding) cannot take size {size}: it needs "
                     f"(size + 4) divisible by {2**depth} and size > {loss} (every level's "
                     f"size before pooling even, and a positive output); accepted sizes near "
                     f"it: {valid_input_sizes(depth, near=size)}")
  return size - loss


def valid_input_sizes(depth: int, near: int | None = None, count: int = 4) -> list[int]:
  """`count` sizes a valid-padding U-Net of `depth` takes: the smallest ones, or with `near`
  the ones closest to it."""
  step, smallest = 2**depth, 12 * 2**depth - 7  # (s + 4) % step == 0 and s > the loss
  start = smallest if near is None else max(smallest, near - count * step)
  start += (-(start + 4)) % step
  sizes = [start + k * step for k in range(2 * count)]
  if near is not None:
    sizes.sort(key=lambda s: (abs(s - near), s))
  return sorted(sizes[:count])


class DoubleConv(nn.Module):
  """Two 3x3 convs, each followed by [BatchNorm] and ReLU."""
  features: int
  padding: str = "same"
  norm: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    pad = ((1, 1), (1, 1)) if self.padding == "same" else ((0, 0), (0, 0))
    for i in (1, 2):
      x = nn.Conv(self.features, (3, 3), padding=pad, use_bias=self.norm is None,
                  dtype=self.dtype, kernel_init=he_normal, name=f"conv{i}")(x)
      if self.norm is not None:
        x = self.norm(name=f"bn{i}")(x)
      x = nn.relu(x)
    return x


class UpLevel(nn.Module):
  """2x2 up-convolution halving the channels, concatenation with the (centre-cropped) skip
  features, then `DoubleConv`."""
  features: int
  padding: str = "same"
  norm: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, skip):
    x = ConvTranspose(self.features, kernel_size=2, strides=2, dtype=self.dtype,
                      kernel_init=he_normal, name="upconv")(x)
    h, w = x.shape[1:3]
    top, left = (skip.shape[1] - h) // 2, (skip.shape[2] - w) // 2
    skip = skip[:, top:top + h, left:left + w]
    x = jnp.concatenate([skip.astype(x.dtype), x], axis=-1)
    return DoubleConv(self.features, self.padding, self.norm, self.dtype, name="double")(x)


class UNet(nn.Module):
  """U-Net. `x`: float `[B, H, W, in_channels]` (normalised image).

  Returns `(logits [B, h, w, num_classes] float32, intermediates)`: `h, w` = `H, W` for
  "same" padding, smaller for "valid" (`unet_output_size`). `depth` poolings (4 in the
  paper), `width` channels at the top level (64 in the paper), `batch_norm` adds BatchNorm
  after each 3x3 conv, `dropout` (rate) before the bottleneck's pooling input as in the
  paper's "drop-out layers at the end of the contracting path" (0 = off).
  """
  num_classes: int = 2
  depth: int = 4
  width: int = 64
  padding: str = "same"
  batch_norm: bool = False
  dropout: float = 0.0
  in_channels: int = 3
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()

  def stage_names(self) -> list[str]:
    return ([f"enc{i}" for i in range(self.depth)] + ["bottleneck"]
            + [f"up{i}" for i in reversed(range(self.depth))] + ["head"])

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(f"U-Net expects input of shape [B, H, W, {self.in_channels}] (NHWC, "
                       f"in_channels={self.in_channels}); got shape {tuple(x.shape)}")
    if self.width < 1:
      raise ValueError(f"U-Net width must be >= 1; got {self.width}")
    for size in x.shape[1:3]:
      unet_output_size(int(size), self.depth, self.padding)
    common.check_frozen(self.frozen_stages, self.stage_names(), "U-Net")

    def norm(stage):
      if not self.batch_norm:
        return None
      return common.batch_norm(train, stage, self.frozen_stages, self.dtype)

    out, skips = {}, []
    for i in range(self.depth):
      name = f"enc{i}"
      x = out[name] = DoubleConv(self.width * 2**i, self.padding, norm(name), self.dtype,
                                 name=name)(x)
      skips.append(x)
      x = common.max_pool(x, 2, 2)
    if self.dropout:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = out["bottleneck"] = DoubleConv(self.width * 2**self.depth, self.padding,
                                       norm("bottleneck"), self.dtype, name="bottleneck")(x)
    for i in reversed(range(self.depth)):
      name = f"up{i}"
      x = out[name] = UpLevel(self.width * 2**i, self.padding, norm(name), self.dtype,
                              name=name)(x, skips[i])
    out["pre_logits"] = x
    logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, kernel_init=he_normal,
                     name="head")(x)
    return logits.astype(jnp.float32), out


register("unet", UNet)
