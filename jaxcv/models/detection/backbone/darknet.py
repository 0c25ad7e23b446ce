"""The network of a darknet cfg as Flax modules: `Darknet` (the raw outputs of its [yolo]
layers) and `darknet_outputs`, the same forward pass called inside another module's
`nn.compact` method (the YOLOv3 detector), so that both keep the parameters at the top level
as `layer{i}`, i the cfg layer index (`jaxcv.models.detection.backbone.darknet_cfg`).

Layers exactly as pytorchyolo's `create_modules` / `Darknet.forward` (eriklindernoren's
PyTorch-YOLOv3, the reference of the parity tests), NHWC:
- [convolutional]: `Conv` (`layer{i}/conv`: kernel `[k, k, in, out]`, a bias only without
  BatchNorm; symmetric padding `size // 2` when `pad=1`), then BatchNorm (`layer{i}/bn`:
  params `scale`, `bias`, batch_stats `mean`, `var`; eps 1e-5, torch momentum 0.1 = Flax
  0.9, as pytorchyolo's `BatchNorm2d(momentum=0.1, eps=1e-5)`), then the activation (`leaky`:
  LeakyReLU 0.1).
  Darknet's own BatchNorm divides by `sqrt(var) + 1e-6` instead of `sqrt(var + 1e-5)` (its
  `normalize_cpu` and `normalize_kernel`): a relative difference of about `5e-6 / var`,
  below the parity tolerance for variances near 1, larger for small ones. Its running
  statistics update with 0.99 / 0.01 where torch uses 0.9 / 0.1 (and torch keeps the
  unbiased batch variance, Flax the biased one): training-time only.
- [maxpool]: size 2 stride 1 (YOLOv3-tiny's layer 11) pads one row and column at the
  bottom / right, then takes 2x2 maxima: the spatial size stays. pytorchyolo pads with
  zeros (`ZeroPad2d((0, 1, 0, 1))`), which is the default here (`maxpool_pad_value=0.0`);
  darknet never lets the padding win (its max starts at `-FLT_MAX` and skips outside
  pixels): `maxpool_pad_value=-inf` reproduces that. The two differ where a window on the
  last row or column holds only negative values (LeakyReLU outputs can be negative). Other
  sizes: torch `MaxPool2d(size, stride, padding=(size - 1) // 2)` (-inf padding).
- [upsample]: nearest neighbour by the integer stride. [route]: channel concatenation
  (with `groups` / `group_id` slicing). [shortcut]: sum with layer `from`, then its
  activation.
- [yolo]: the previous output `[B, H, W, A * (5 + C)]` reshaped to `[B, H, W, A, 5 + C]`
  (channel `a * (5 + C) + k`, the order of pytorchyolo's `view(bs, A, 5 + C, H, W)`):
  `(tx, ty, tw, th, objectness, classes...)`, no activation applied. [region] (YOLOv2): the
  same, with `num` anchors.
- [reorg] (YOLOv2's passthrough): `reorg`, darknet's element order by default.

`frozen_stages` names `layer{i}` modules whose BatchNorm runs with its running statistics
even in training. Input: NHWC with `[net] channels` channels (any size whose strides fit:
the detector checks multiples of 32).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.models import common
from jaxcv.models.detection.backbone.darknet_cfg import DarknetCfg, parse_cfg

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9   # Flax's convention: torch's momentum 0.1


def activation(x: jax.Array, name: str) -> jax.Array:
  if name == "leaky":
    return jax.nn.leaky_relu(x, 0.1)
  if name == "linear":
    return x
  if name == "logistic":
    return jax.nn.sigmoid(x)
  if name == "mish":
    return x * jnp.tanh(jax.nn.softplus(x))
  if name == "swish":
    return jax.nn.silu(x)
  raise ValueError(f"unknown darknet activation {name!r}")


class DarknetConv(nn.Module):
  """One [convolutional] layer: `conv` (+ `bn`) + activation."""
  filters: int
  size: int
  stride: int
  padding: int
  batch_normalize: bool
  act: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    p = self.padding
    x = nn.Conv(self.filters, (self.size, self.size), (self.stride, self.stride),
                padding=((p, p), (p, p)), use_bias=not self.batch_normalize,
                dtype=self.dtype, name="conv")(x)
    if self.batch_normalize:
      x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                       epsilon=BN_EPSILON, dtype=self.dtype, name="bn")(x)
    return activation(x, self.act)


def _maxpool(x: jax.Array, size: int, stride: int, pad_value: float) -> jax.Array:
  if size == 2 and stride == 1:  # pytorchyolo's ZeroPad2d((0, 1, 0, 1)) + MaxPool2d(2, 1)
    x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=jnp.asarray(pad_value,
                                                                                  x.dtype))
    return common.max_pool(x, 2, 1, 0)
  return common.max_pool(x, size, stride, (size - 1) // 2)


REORG_ORDERS = ("darknet", "space_to_depth")


def reorg(x: jax.Array, stride: int, order: str = "darknet") -> jax.Array:
  """A [reorg] layer on NHWC `x` `[B, H, W, C]` -> `[B, H / s, W / s, C * s * s]`.

  `order="darknet"` (the default): pjreddie/darknet's element order, which the published
  YOLOv2 `.weights` were trained with. `forward_reorg_layer` calls `reorg_cpu(input, w, h, c,
  batch, s, forward=0, output)` with the INPUT's sizes, so it reads the NCHW input buffer as
  if it were `[C / s^2, H * s, W * s]`, gathers `out[k, j, i] = in'[k % C', j * s + (k / C')
  / s, i * s + (k / C') % s]` (C' = C / s^2) into a `[C, H, W]` buffer, and the next layer
  reads that buffer as `[C * s^2, H / s, W / s]`. The flat buffers are reinterpreted twice,
  so this is a fixed permutation of the elements that is NOT a space-to-depth (an output
  cell's channels come from several input rows); it needs C divisible by s^2.
  `order="space_to_depth"`: the spatially local rearrangement (`out[y, x, (dy * s + dx) * C
  + c] = in[y * s + dy, x * s + dx, c]`, tf.nn.space_to_depth's channel order, which is also
  what `reorg_cpu` gives when called with the OUTPUT's sizes, as some darknet forks do), any
  C."""
  b, h, w, c = x.shape
  s = int(stride)
  if h % s or w % s:
    raise ValueError(f"reorg: H and W ({h}x{w}) must be divisible by the stride {s}")
  if order == "space_to_depth":
    x = x.reshape(b, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // s, w // s, s * s * c)
  if order != "darknet":
    raise ValueError(f"reorg order must be one of {list(REORG_ORDERS)}; got {order!r}")
  if c % (s * s):
    raise ValueError(f"reorg (darknet's order): C={c} must be divisible by stride^2 = {s * s}")
  cc = c // (s * s)
  flat = x.transpose(0, 3, 1, 2).reshape(b, cc, h, s, w, s)   # in'[c2, j*s + dy, i*s + dx]
  out = flat.transpose(0, 3, 5, 1, 2, 4)                      # [b, dy, dx, c2, j, i]
  out = out.reshape(b, c * s * s, h // s, w // s)             # the buffer read by the next
  return out.transpose(0, 2, 3, 1)


def conv_layer_names(cfg: DarknetCfg) -> tuple[str, ...]:
  """The top-level module names (`layer{i}`) of `cfg`'s [convolutional] layers."""
  return tuple(f"layer{l['index']}" for l in cfg.conv_layers)


def darknet_outputs(cfg: DarknetCfg, x: jax.Array, *, train: bool,
                    frozen_stages: Sequence[str] = (), dtype: Any = jnp.float32,
                    maxpool_pad_value: float = 0.0, model: str = "Darknet",
                    reorg_order: str = "darknet"
                    ) -> tuple[list[jax.Array], dict[str, jax.Array]]:
  """Inside an `nn.compact` method: the forward pass of `cfg` on NHWC `x`, creating the
  `layer{i}` submodules in the calling module. Returns `(raw, layer_outputs)`: raw per
  [yolo] / [region] layer `[B, H, W, A, 5 + C]` float32, and every layer's output by
  `layer{i}` (a [yolo] layer's is its raw output). `reorg_order`: see `reorg`."""
  channels = cfg.net["channels"]
  if x.ndim != 4 or x.shape[-1] != channels:
    raise ValueError(f"{model}: input must be NHWC [B, H, W, {channels}] ([net] channels="
                     f"{channels}); got shape {tuple(x.shape)}")
  frozen = set(frozen_stages)
  x = x.astype(dtype)
  outs: list[jax.Array] = []
  raw: list[jax.Array] = []
  for l in cfg.layers:
    i, kind = l["index"], l["type"]
    where = f"{model}: layer {i} ([{kind}] at cfg line {l['line']})"
    if kind == "convolutional":
      name = f"layer{i}"
      x = DarknetConv(l["filters"], l["size"], l["stride"], l["padding"],
                      l["batch_normalize"], l["activation"], dtype, name=name)(
                          x, train=train and name not in frozen)
    elif kind == "maxpool":
      x = _maxpool(x, l["size"], l["stride"], maxpool_pad_value)
    elif kind == "upsample":
      s = l["stride"]
      x = jnp.repeat(jnp.repeat(x, s, axis=1), s, axis=2)
    elif kind == "route":
      parts = [outs[j] for j in l["layers"]]
      if len({p.shape[1:3] for p in parts}) > 1:
        raise ValueError(f"{where}: routes layers {list(l['layers'])} whose sizes differ: "
                         f"{[tuple(p.shape[1:3]) for p in parts]} (the input size does not "
                         f"fit this network's strides)")
      x = jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
      if l["groups"] > 1:
        g = x.shape[-1] // l["groups"]
        x = x[..., g * l["group_id"]:g * (l["group_id"] + 1)]
    elif kind == "shortcut":
      other = outs[l["from"]]
      if other.shape != x.shape:
        raise ValueError(f"{where}: adds layer {l['from']} of shape {tuple(other.shape)} to "
                         f"shape {tuple(x.shape)}")
      x = activation(x + other, l["activation"])
    elif kind == "reorg":
      try:
        x = reorg(x, l["stride"], reorg_order)
      except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    else:  # yolo, region
      b, h, w, c = x.shape
      a = len(l["mask"]) if kind == "yolo" else l["num"]
      x = x.reshape(b, h, w, a, c // a)
      raw.append(x.astype(jnp.float32))
    outs.append(x)
  return raw, {f"layer{i}": o for i, o in enumerate(outs)}


class Darknet(nn.Module):
  """The network of darknet cfg text `cfg`: `apply(variables, x, train=False)` returns
  `(raw, layer_outputs)`, raw a list of `[B, H, W, A, 5 + C]` per [yolo] layer (see
  `darknet_outputs`). Parameters `layer{i}` (`conv`, `bn`), batch_stats `layer{i}/bn`."""
  cfg: str
  dtype: Any = jnp.float32
  frozen_stages: Sequence[str] = ()
  maxpool_pad_value: float = 0.0
  reorg_order: str = "darknet"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    cfg = parse_cfg(self.cfg)
    common.check_frozen(self.frozen_stages, conv_layer_names(cfg), "Darknet")
    return darknet_outputs(cfg, x, train=train, frozen_stages=self.frozen_stages,
                           dtype=self.dtype, maxpool_pad_value=self.maxpool_pad_value,
                           reorg_order=self.reorg_order)
