"""Convolutions for segmentation models with PyTorch's exact semantics, on NHWC features.

- `conv2d` / `Conv2d`: torch `F.conv2d` / `nn.Conv2d` with explicit symmetric padding,
  stride, dilation (DeepLab's atrous convolution) and groups.
- `conv_transpose` / `ConvTranspose`: torch `F.conv_transpose2d` / `nn.ConvTranspose2d`
  (FCN's learned upsampling), with `bilinear_upsample_kernel` (FCN's fixed bilinear filter).
- `separable_conv` / `SeparableConv`: depthwise k x k (groups = C) then pointwise 1x1
  (DeepLabv3+'s Xception, MobileNet), optionally BatchNorm and ReLU in between.

Kernel layout (flax's HWIO): `[kh, kw, in / groups, out]` for every convolution here,
transposed ones included. For a transposed convolution the kernel is stored in torch's
orientation (not flipped): input pixel `(i, j)` adds `x[i, j] * kernel[a, e]` to output pixel
`(i * s - p + a * d, j * s - p + e * d)`. `convert_torch_conv_weight` and
`convert_torch_conv_transpose_weight` turn torch weights into this layout.

Why not flax's `nn.ConvTranspose`: its padding and kernel orientation follow
`lax.conv_transpose`, not torch; here the output size is torch's
`(in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1`, so converted
torch weights give torch's outputs. All functions are pure, static-shaped, and usable under
`jax.jit`, `jax.vmap` and `jax.grad`; bad arguments raise ValueError at trace time.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcv.layers import conv as fast_conv
from jaxcv.ops.common import pair

__all__ = ["Conv2d", "ConvTranspose", "SeparableConv", "bilinear_upsample_init",
           "bilinear_upsample_kernel", "conv2d", "conv_transpose",
           "convert_torch_conv_transpose_weight", "convert_torch_conv_weight", "separable_conv"]

IntPair = int | Sequence[int]
_NHWC = ("NHWC", "HWIO", "NHWC")


def _check(fn: str, x: jax.Array, kernel: jax.Array, groups: int, in_per_group: bool = True):
  """Shapes of `x [B, H, W, C]` and `kernel [kh, kw, C / groups, out]`."""
  if x.ndim != 4:
    raise ValueError(f"{fn} expects features of shape [B, H, W, C] (NHWC); got shape "
                     f"{tuple(x.shape)}")
  if kernel.ndim != 4:
    raise ValueError(f"{fn} expects a kernel [kh, kw, in/groups, out] (HWIO); got shape "
                     f"{tuple(kernel.shape)}")
  if not isinstance(groups, (int, np.integer)) or groups < 1:
    raise ValueError(f"{fn}: groups must be a positive int; got {groups!r}")
  c, (kin, kout) = x.shape[-1], kernel.shape[2:]
  if c % groups or kout % groups:
    raise ValueError(f"{fn}: input channels {c} and output channels {kout} must be divisible "
                     f"by groups={groups}")
  if kin * groups != c:
    raise ValueError(f"{fn}: kernel {tuple(kernel.shape)} takes {kin} x {groups} groups input "
                     f"channels; features have {c}")


def _check_bias(fn: str, bias, out: int):
  if bias is not None and tuple(bias.shape) != (out,):
    raise ValueError(f"{fn}: bias must have shape ({out},); got {tuple(bias.shape)}")


def conv2d(x: jax.Array, kernel: jax.Array, stride: IntPair = 1, padding: IntPair = 0,
           dilation: IntPair = 1, groups: int = 1, *, bias: jax.Array | None = None,
           precision: Any = None) -> jax.Array:
  """torch `F.conv2d(x, w, bias, stride, padding, dilation, groups)` on NHWC features.

  Args:
    x: `[B, H, W, C]`.
    kernel: `[kh, kw, C / groups, out]` (torch's `[out, C / groups, kh, kw]` via
      `convert_torch_conv_weight`).
    stride, padding (zeros, both sides), dilation: ints or `(h, w)` pairs.
    groups: feature groups (C for a depthwise convolution).
    bias: optional `[out]`.
  Returns:
    `[B, oh, ow, out]`, `oh = floor((H + 2p - d(kh - 1) - 1) / s) + 1`.
  """
  _check("conv2d", x, kernel, groups)
  s = pair(stride, "conv2d stride", 1)
  p = pair(padding, "conv2d padding", 0)
  d = pair(dilation, "conv2d dilation", 1)
  _check_bias("conv2d", bias, kernel.shape[-1])
  for axis, size in enumerate(x.shape[1:3]):
    if size + 2 * p[axis] < d[axis] * (kernel.shape[axis] - 1) + 1:
      raise ValueError(f"conv2d: kernel {tuple(kernel.shape[:2])} with dilation {d} does not "
                       f"fit input {tuple(x.shape[1:3])} padded by {p}")
  y = fast_conv.conv_general_dilated(
      x, kernel, s, ((p[0], p[0]), (p[1], p[1])), rhs_dilation=d,
      dimension_numbers=lax.conv_dimension_numbers(x.shape, kernel.shape, _NHWC),
      feature_group_count=groups, precision=precision)
  return y if bias is None else y + bias.astype(y.dtype)


def conv_transpose_output_size(size: int, k: int, stride: int, padding: int,
                               output_padding: int, dilation: int) -> int:
  """torch's `(size - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1`."""
  return (size - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1


def conv_transpose(x: jax.Array, kernel: jax.Array, stride: IntPair = 1, padding: IntPair = 0,
                   output_padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1, *,
                   bias: jax.Array | None = None, precision: Any = None) -> jax.Array:
  """torch `F.conv_transpose2d(x, w, bias, stride, padding, output_padding, groups, dilation)`.

  Args:
    x: `[B, H, W, C]`.
    kernel: `[kh, kw, C / groups, out]` in torch's orientation (input pixel `(i, j)` adds
      `x[i, j] @ kernel[a, e]` at output `(i*s - p + a*d, j*s - p + e*d)`); from torch's
      `[C, out / groups, kh, kw]` weight via `convert_torch_conv_transpose_weight`.
    stride, padding, output_padding, dilation: ints or `(h, w)` pairs. `padding` crops both
      sides of the full output; `output_padding` adds rows/columns at the bottom/right and must
      be smaller than the stride or the dilation, as torch requires.
    groups: feature groups.
    bias: optional `[out]`.
  Returns:
    `[B, oh, ow, out]`, `oh = (H - 1) * s - 2p + d * (kh - 1) + output_padding + 1`.

  Computed as a stride-1 convolution of the input dilated by `stride` (zeros between pixels)
  with the spatially flipped kernel and padding `d * (k - 1) - p` (plus `output_padding`
  after): the definition of the transposed convolution (the gradient of `conv2d`). On the CPU
  backend, strided undilated ungrouped ones (FCN's) are a matmul plus an overlap-add instead,
  which skips the inserted zeros (`_conv_transpose_overlap_add`; same values).
  """
  _check("conv_transpose", x, kernel, groups)
  s = pair(stride, "conv_transpose stride", 1)
  p = pair(padding, "conv_transpose padding", 0)
  op = pair(output_padding, "conv_transpose output_padding", 0)
  d = pair(dilation, "conv_transpose dilation", 1)
  _check_bias("conv_transpose", bias, kernel.shape[-1])
  pads = []
  for axis in range(2):
    if op[axis] >= s[axis] and op[axis] >= d[axis]:
      raise ValueError(f"conv_transpose: output_padding {op} must be smaller than the stride "
                       f"{s} or the dilation {d} (as torch)")
    k = kernel.shape[axis]
    out = conv_transpose_output_size(x.shape[1 + axis], k, s[axis], p[axis], op[axis], d[axis])
    if out <= 0:
      raise ValueError(f"conv_transpose: padding {p} leaves no output for input "
                       f"{tuple(x.shape[1:3])} and kernel {tuple(kernel.shape[:2])}")
    edge = d[axis] * (k - 1) - p[axis]
    pads.append((edge, edge + op[axis]))
  if jax.default_backend() == "cpu" and min(s) > 1 and d == (1, 1) and groups == 1:
    y = _conv_transpose_overlap_add(x, kernel, s, p, op, precision)
    return y if bias is None else y + bias.astype(y.dtype)
  flipped = kernel[::-1, ::-1]
  y = lax.conv_general_dilated(
      x, flipped, (1, 1), pads, lhs_dilation=s, rhs_dilation=d,
      dimension_numbers=lax.conv_dimension_numbers(x.shape, kernel.shape, _NHWC),
      feature_group_count=groups, precision=precision)
  return y if bias is None else y + bias.astype(y.dtype)


def _conv_transpose_overlap_add(x, kernel, s, p, op, precision):
  """Strided, undilated, ungrouped `conv_transpose` as one matmul and an overlap-add.

  Why: XLA's CPU backend runs the input-dilated convolution at full cost, multiplying the
  `s*s - 1` inserted zeros of every pixel (FCN's k=32 s=16 upsampling of 2x16x16x21: 1.8 s).
  Here kernel taps are padded to `q * s` (`q = ceil(k / s)`) so that tap `a = m * s + r` of
  input pixel `i` lands on output `(i + m) * s + r`: a `[B, H, W, q, s, q', s', O]` matmul,
  q*q' shifted sums, a reshape to the full output and torch's crop by `padding`.
  """
  b, h, w, _ = x.shape
  kh, kw, _, cout = kernel.shape
  (sh, sw), (qh, qw) = s, (-(-kh // s[0]), -(-kw // s[1]))
  kernel = jnp.pad(kernel, ((0, qh * sh - kh), (0, qw * sw - kw), (0, 0), (0, 0)))
  taps = jnp.einsum("bhwc,aeco->bhwaeo", x, kernel, precision=precision)
  taps = taps.reshape(b, h, w, qh, sh, qw, sw, cout)
  full = 0
  for m in range(qh):
    for n in range(qw):
      full = full + jnp.pad(taps[:, :, :, m, :, n],
                            ((0, 0), (m, qh - 1 - m), (n, qw - 1 - n), (0, 0), (0, 0), (0, 0)))
  full = jnp.transpose(full, (0, 1, 3, 2, 4, 5)).reshape(b, (h + qh - 1) * sh, (w + qw - 1) * sw,
                                                       cout)
  out = [conv_transpose_output_size(n, k, st, pa, o, 1)
         for n, k, st, pa, o in zip((h, w), (kh, kw), s, p, op)]
  extra = [max(0, p[i] + out[i] - full.shape[1 + i]) for i in range(2)]
  full = jnp.pad(full, ((0, 0), (0, extra[0]), (0, extra[1]), (0, 0)))
  return full[:, p[0]:p[0] + out[0], p[1]:p[1] + out[1]]


def convert_torch_conv_weight(w: np.ndarray) -> np.ndarray:
  """torch `Conv2d.weight [out, in / groups, kh, kw]` -> `[kh, kw, in / groups, out]`."""
  w = np.asarray(w)
  if w.ndim != 4:
    raise ValueError(f"expected a torch conv weight [out, in/groups, kh, kw]; got {w.shape}")
  return np.transpose(w, (2, 3, 1, 0))


def convert_torch_conv_transpose_weight(w: np.ndarray, groups: int = 1) -> np.ndarray:
  """torch `ConvTranspose2d.weight [in, out / groups, kh, kw]` -> `[kh, kw, in / groups, out]`.

  Input channel `g * in/groups + i` and output channel `o` of group `g` in torch become
  `[..., i, g * out/groups + o]`; with `groups=1` this is `w.transpose(2, 3, 0, 1)`. The
  kernel is not flipped (`conv_transpose` flips it).
  """
  w = np.asarray(w)
  if w.ndim != 4:
    raise ValueError(f"expected a torch ConvTranspose2d weight [in, out/groups, kh, kw]; got "
                     f"{w.shape}")
  cin, cout_g, kh, kw = w.shape
  if groups < 1 or cin % groups:
    raise ValueError(f"torch weight with {cin} input channels does not split into "
                     f"groups={groups}")
  w = w.reshape(groups, cin // groups, cout_g, kh, kw)
  return np.transpose(w, (3, 4, 1, 0, 2)).reshape(kh, kw, cin // groups, groups * cout_g)


def bilinear_upsample_kernel(k: int, channels: int) -> np.ndarray:
  """FCN's fixed bilinear upsampling filter as a `conv_transpose` kernel `[k, k, C, C]`.

  The FCN code's `upsample_filt`: `factor = (k + 1) // 2`, `center = factor - 1` (odd k) or
  `factor - 0.5` (even k), `filt[a, e] = (1 - |a - center| / factor) * (1 - |e - center| /
  factor)`, on the channel diagonal (channel c upsamples channel c only), zeros elsewhere.
  With `k = 2 * s`, `stride = s` and `padding = s // 2` it upsamples by `s`
  (FCN-32s/16s/8s: k = 64/32/16 and 4, stride 32/16/8 and 2). float32.
  """
  if k < 1 or channels < 1:
    raise ValueError(f"bilinear_upsample_kernel: k and channels must be >= 1; got {k}, "
                     f"{channels}")
  factor = (k + 1) // 2
  center = factor - 1 if k % 2 == 1 else factor - 0.5
  og = np.arange(k, dtype=np.float64)
  line = 1 - np.abs(og - center) / factor
  filt = (line[:, None] * line[None, :]).astype(np.float32)
  kernel = np.zeros((k, k, channels, channels), np.float32)
  kernel[:, :, np.arange(channels), np.arange(channels)] = filt[:, :, None]
  return kernel


def bilinear_upsample_init(key, shape, dtype=jnp.float32):
  """A flax initializer giving `bilinear_upsample_kernel` for `ConvTranspose` kernels of shape
  `[k, k, C, C]` (groups = 1) or `[k, k, 1, C]` (groups = C, each channel on its own)."""
  del key
  k, k2, cin, cout = shape
  if k != k2 or cin not in (cout, 1):
    raise ValueError(f"bilinear_upsample_init needs a square kernel [k, k, C, C] or "
                     f"[k, k, 1, C]; got {tuple(shape)}")
  if cin == 1:
    return jnp.asarray(np.repeat(bilinear_upsample_kernel(k, 1), cout, axis=3), dtype)
  return jnp.asarray(bilinear_upsample_kernel(k, cout), dtype)


def separable_conv(x: jax.Array, depthwise_kernel: jax.Array, pointwise_kernel: jax.Array,
                   stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1, *,
                   depthwise_bias: jax.Array | None = None,
                   pointwise_bias: jax.Array | None = None, precision: Any = None) -> jax.Array:
  """Depthwise-separable convolution: torch `conv2d(x, dw, groups=C, stride, padding,
  dilation)` then `conv2d(., pw)` (1x1).

  Args:
    x: `[B, H, W, C]`.
    depthwise_kernel: `[kh, kw, 1, C * multiplier]`.
    pointwise_kernel: `[1, 1, C * multiplier, out]`.
  Returns:
    `[B, oh, ow, out]` with `oh` as in `conv2d` for the depthwise stage.
  """
  if pointwise_kernel.ndim != 4 or pointwise_kernel.shape[:2] != (1, 1):
    raise ValueError(f"separable_conv: pointwise kernel must be [1, 1, C, out]; got "
                     f"{tuple(pointwise_kernel.shape)}")
  if depthwise_kernel.ndim != 4 or depthwise_kernel.shape[2] != 1:
    raise ValueError(f"separable_conv: depthwise kernel must be [kh, kw, 1, C * multiplier]; "
                       f"got {tuple(depthwise_kernel.shape)}")
  y = conv2d(x, depthwise_kernel, stride, padding, dilation, groups=x.shape[-1],
             bias=depthwise_bias, precision=precision)
  return conv2d(y, pointwise_kernel, bias=pointwise_bias, precision=precision)


def _conv_params(module: nn.Module, x: jax.Array, what: str):
  """Checks NHWC input and declares `kernel [kh, kw, in / groups, features]` and `bias` for
  `Conv2d` / `ConvTranspose`; returns `(x, kernel, bias)` promoted to the module's dtype."""
  if x.ndim != 4:
    raise ValueError(f"{what} expects features of shape [B, H, W, C] (NHWC); got shape "
                     f"{tuple(x.shape)}")
  kh, kw = pair(module.kernel_size, f"{what} kernel_size", 1)
  if x.shape[-1] % module.groups:
    raise ValueError(f"{what}: {x.shape[-1]} input channels are not divisible by groups="
                     f"{module.groups}")
  kernel = module.param("kernel", module.kernel_init,
                        (kh, kw, x.shape[-1] // module.groups, module.features),
                        module.param_dtype)
  bias = (module.param("bias", module.bias_init, (module.features,), module.param_dtype)
          if module.use_bias else None)
  return nn.dtypes.promote_dtype(x, kernel, bias, dtype=module.dtype)


class Conv2d(nn.Module):
  """torch `nn.Conv2d` (explicit symmetric zero padding, stride, dilation, groups) on NHWC.

  Params: `kernel [kh, kw, in / groups, features]`, `bias [features]` (if `use_bias`), as
  flax's `nn.Conv`, so torch weights convert with `convert_torch_conv_weight`. Default init is
  flax's (LeCun normal, zero bias), not torch's. Undilated ungrouped 1x1 convolutions use
  `jaxcv.layers.conv`'s CPU-fast kernel gradient.
  """
  features: int
  kernel_size: IntPair = 3
  strides: IntPair = 1
  padding: IntPair = 0
  dilation: IntPair = 1
  groups: int = 1
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x, kernel, bias = _conv_params(self, x, "Conv2d")
    return conv2d(x, kernel, self.strides, self.padding, self.dilation, self.groups, bias=bias,
                  precision=self.precision)


class ConvTranspose(nn.Module):
  """torch `nn.ConvTranspose2d` on NHWC: see `conv_transpose` for the semantics.

  Params: `kernel [kh, kw, in / groups, features]` (torch orientation, converted with
  `convert_torch_conv_transpose_weight`), `bias [features]` (if `use_bias`). For FCN's fixed
  bilinear upsampling use `kernel_init=bilinear_upsample_init`, `use_bias=False`.
  """
  features: int
  kernel_size: IntPair = 4
  strides: IntPair = 2
  padding: IntPair = 0
  output_padding: IntPair = 0
  dilation: IntPair = 1
  groups: int = 1
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x, kernel, bias = _conv_params(self, x, "ConvTranspose")
    return conv_transpose(x, kernel, self.strides, self.padding, self.output_padding,
                          self.dilation, self.groups, bias=bias, precision=self.precision)


class SeparableConv(nn.Module):
  """Depthwise-separable convolution: depthwise `kernel_size` conv (groups = C, `dilation`,
  `strides`), then pointwise 1x1 to `features`.

  `padding=None` pads `dilation * (k - 1) // 2` ("same" for odd k at stride 1, as DeepLab's
  atrous separable convs). With `mid_norm`, BatchNorm (torch eps 1e-5, momentum 0.1) sits
  between depthwise and pointwise, and `mid_relu` adds a ReLU after that (TF DeepLabv3+'s
  `split_separable_conv2d`: depthwise, BN, ReLU, pointwise; the PyTorch Xception ports use
  depthwise, BN, pointwise). BN/ReLU after the pointwise conv belong to the caller.
  Submodules: `depthwise` and `pointwise` (`Conv2d`), `bn` (if `mid_norm`). Biases are off by
  default (a BN follows in the models that use it).
  """
  features: int
  kernel_size: int = 3
  strides: IntPair = 1
  padding: IntPair | None = None
  dilation: IntPair = 1
  depth_multiplier: int = 1
  use_bias: bool = False
  mid_norm: bool = False
  mid_relu: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f"SeparableConv expects features of shape [B, H, W, C] (NHWC); got "
                       f"shape {tuple(x.shape)}")
    k = pair(self.kernel_size, "SeparableConv kernel_size", 1)
    d = pair(self.dilation, "SeparableConv dilation", 1)
    padding = (tuple(di * (ki - 1) // 2 for ki, di in zip(k, d)) if self.padding is None
               else self.padding)
    c = x.shape[-1]
    x = Conv2d(c * self.depth_multiplier, k, self.strides, padding, d, groups=c,
               use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
               name="depthwise")(x)
    if self.mid_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                       dtype=self.dtype, param_dtype=self.param_dtype, name="bn")(x)
    if self.mid_relu:
      x = nn.relu(x)
    return Conv2d(self.features, 1, use_bias=self.use_bias, dtype=self.dtype,
                  param_dtype=self.param_dtype, name="pointwise")(x)
