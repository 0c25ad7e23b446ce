"""Upsampling, pooling and convolution layers against torch's own ops (NCHW there, NHWC here).

max abs error <= 1e-5 in float32 (relative to the output's largest magnitude for the
large-sum convolutions); indices must be identical. Skipped where torch is not installed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from torch_reference import import_torchvision

from jaxcv.layers import conv_variants as cv
from jaxcv.layers import pooling, upsample

torch, torchvision = import_torchvision()
F = torch.nn.functional
RNG = np.random.default_rng(0)


def normal(*shape):
  return RNG.normal(size=shape).astype(np.float32)


def nhwc(a):
  return jnp.asarray(np.asarray(a).transpose(0, 2, 3, 1))


def nchw(a):
  return np.asarray(a).transpose(0, 3, 1, 2)


def t(a):
  return torch.from_numpy(np.ascontiguousarray(a))


# ----------------------------------------------------------------------------- pool / unpool

POOL = jax.jit(pooling.max_pool_with_indices, static_argnums=(1, 2, 3, 4, 5))
UNPOOL = jax.jit(pooling.max_unpool, static_argnums=2)


@pytest.mark.parametrize("window,stride,padding,dilation,ceil_mode", [
    (2, 2, 0, 1, False),                     # SegNet
    (3, 2, 1, 1, False),
    (3, 2, 1, 1, True),
    ((3, 2), (1, 2), (1, 1), (2, 1), True),
])
def test_max_pool_indices_unpool_and_grads_match_torch(window, stride, padding, dilation,
                                                       ceil_mode):
  x = np.round(normal(2, 3, 9, 7) * 2) / 2   # ties: torch keeps the first maximum
  xt = t(x).requires_grad_()
  ref, ref_idx = F.max_pool2d(xt, window, stride, padding, dilation, ceil_mode,
                              return_indices=True)
  g = normal(*ref.shape)
  ref.backward(t(g))
  ours, idx = POOL(nhwc(x), window, stride, padding, dilation, ceil_mode)
  np.testing.assert_array_equal(nchw(ours), ref.detach().numpy())
  np.testing.assert_array_equal(nchw(idx), ref_idx.numpy())
  dx = jax.grad(lambda v: jnp.sum(POOL(v, window, stride, padding, dilation, ceil_mode)[0]
                                  * nhwc(g)))(nhwc(x))
  np.testing.assert_allclose(nchw(dx), xt.grad.numpy(), atol=1e-6)
  # max_unpool2d and its gradient (a gather, also for indices repeated by overlap).
  vals = t(normal(*ref.shape)).requires_grad_()
  up = torch.ops.aten.max_unpool2d(vals, ref_idx, [9, 7])  # F's size check knows no dilation
  gu = normal(*up.shape)
  up.backward(t(gu))
  ours_up = UNPOOL(nhwc(vals.detach()), idx, (9, 7))
  np.testing.assert_array_equal(nchw(ours_up), up.detach().numpy())
  dv = jax.grad(lambda v: jnp.sum(UNPOOL(v, idx, (9, 7)) * nhwc(gu)))(nhwc(vals.detach()))
  np.testing.assert_allclose(nchw(dv), vals.grad.numpy(), atol=1e-6)


# ----------------------------------------------------------------------------- interpolate

RESIZE = jax.jit(upsample.resize, static_argnums=(1, 2, 3, 4))


@pytest.mark.parametrize("size_in", [(6, 5), (13, 1)])
@pytest.mark.parametrize("size_out", [(12, 10), (4, 3), (7, 11), (1, 2)])
def test_resize_matches_interpolate(size_in, size_out):
  x = normal(2, 3, *size_in) * 3
  for method, flags in [("bilinear", [(False, False), (True, False), (False, True),
                                       (True, True)]),
                        ("bicubic", [(False, False), (True, False), (False, True)]),
                        ("nearest", [(None, False)]), ("nearest-exact", [(None, False)])]:
    for align_corners, antialias in flags:
      ref = F.interpolate(t(x), size=size_out, mode=method, align_corners=align_corners,
                          antialias=antialias).numpy()
      ours = nchw(RESIZE(nhwc(x), size_out, method, bool(align_corners), antialias))
      err = float(np.abs(ours - ref).max())
      assert err <= 1e-5, (method, align_corners, antialias, err)


def test_resize_gradient_matches_torch():
  x = normal(1, 2, 5, 7)
  for method, align_corners, size in [("bilinear", False, (11, 4)), ("bicubic", True, (8, 9))]:
    xt = t(x).requires_grad_()
    ref = F.interpolate(xt, size=size, mode=method, align_corners=align_corners)
    g = normal(*ref.shape)
    ref.backward(t(g))
    dx = jax.grad(lambda v, m=method, a=align_corners, s=size, g=g: jnp.sum(
        RESIZE(v, s, m, a, False) * nhwc(g)))(nhwc(x))
    np.testing.assert_allclose(nchw(dx), xt.grad.numpy(), atol=1e-5)


# ----------------------------------------------------------------------------- convolutions

CONV = jax.jit(cv.conv2d, static_argnums=(2, 3, 4, 5))
CONV_T = jax.jit(cv.conv_transpose, static_argnums=(2, 3, 4, 5, 6))


@pytest.mark.parametrize("cin,cout,groups,k,s,p,op,d,size", [
    (3, 3, 1, 64, 32, 16, 0, 1, 2),          # FCN-32s upsampling
    (3, 3, 1, 16, 8, 4, 0, 1, 3),            # FCN-8s
    (4, 4, 1, 4, 2, 1, 0, 1, 5),             # FCN 2x
    (4, 6, 2, 3, 2, 1, 1, 1, 5),             # groups, output_padding
    (4, 4, 4, 3, 2, 0, 1, 2, 4),             # depthwise, dilation
    (2, 5, 1, (3, 5), (2, 3), (0, 2), (1, 2), (1, 1), 4),
    (2, 2, 1, 3, 1, 3, 1, 2, 6),             # output_padding < dilation at stride 1
])
def test_conv_transpose_matches_torch(cin, cout, groups, k, s, p, op, d, size):
  kk = (k, k) if isinstance(k, int) else k
  x = normal(2, cin, size, size + 1)
  w, b = normal(cin, cout // groups, *kk), normal(cout)
  ref = F.conv_transpose2d(t(x), t(w), t(b), s, p, op, groups, d).numpy()
  ours = nchw(CONV_T(nhwc(x), jnp.asarray(cv.convert_torch_conv_transpose_weight(w, groups)),
                     s, p, op, d, groups, bias=jnp.asarray(b)))
  assert ours.shape == ref.shape
  assert np.abs(ours - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_conv_transpose_module_with_torch_weights_and_bilinear_kernel():
  x = normal(2, 3, 4, 5)
  ref_layer = torch.nn.ConvTranspose2d(3, 3, 16, 8, 4, bias=False)
  with torch.no_grad():
    ref_layer.weight.zero_()
    for c in range(3):  # FCN's initialiser: the bilinear filter on the channel diagonal
      ref_layer.weight[c, c] = t(cv.bilinear_upsample_kernel(16, 1)[:, :, 0, 0])
    ref = ref_layer(t(x)).numpy()
  module = cv.ConvTranspose(3, 16, 8, 4, use_bias=False)
  variables = {"params": {"kernel": jnp.asarray(
      cv.convert_torch_conv_transpose_weight(ref_layer.weight.detach().numpy()))}}
  np.testing.assert_array_equal(variables["params"]["kernel"], cv.bilinear_upsample_kernel(16, 3))
  ours = nchw(jax.jit(module.apply)(variables, nhwc(x)))
  assert ours.shape == ref.shape == (2, 3, 32, 40)
  assert np.abs(ours - ref).max() <= 1e-5


@pytest.mark.parametrize("cin,cout,groups,k,s,p,d", [
    (4, 6, 1, 3, 1, 6, 6),                   # DeepLab ASPP rate 6
    (4, 6, 1, 3, 2, 2, 2),
    (6, 6, 6, 3, 1, 2, 2),                   # depthwise atrous
    (4, 6, 2, (1, 3), (2, 1), (0, 1), (1, 1)),
    (4, 8, 1, 1, 1, 0, 1),                   # 1x1 (the CPU-fast kernel gradient path)
])
def test_conv2d_matches_torch(cin, cout, groups, k, s, p, d):
  kk = (k, k) if isinstance(k, int) else k
  x = normal(2, cin, 9, 11)
  w, b = normal(cout, cin // groups, *kk), normal(cout)
  ref = F.conv2d(t(x), t(w), t(b), s, p, d, groups).numpy()
  ours = nchw(CONV(nhwc(x), jnp.asarray(cv.convert_torch_conv_weight(w)), s, p, d, groups,
                   bias=jnp.asarray(b)))
  assert ours.shape == ref.shape
  assert np.abs(ours - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_separable_conv_matches_torch_composition():
  """depthwise (groups=C, dilation 2) -> BatchNorm (eval, random stats) -> ReLU -> 1x1."""
  c, out = 4, 6
  x = normal(2, c, 9, 9)
  dw, pw = normal(c, 1, 3, 3), normal(out, c, 1, 1)
  mean, var = normal(c) * 0.5, RNG.uniform(0.5, 2.0, c).astype(np.float32)
  scale, bias = 1 + 0.3 * normal(c), 0.3 * normal(c)
  y = F.conv2d(t(x), t(dw), None, 1, 2, 2, c)
  y = F.relu(F.batch_norm(y, t(mean), t(var), t(scale), t(bias), False, 0.1, 1e-5))
  ref = F.conv2d(y, t(pw)).numpy()
  module = cv.SeparableConv(out, 3, dilation=2, mid_norm=True, mid_relu=True)
  variables = {
      "params": {"depthwise": {"kernel": jnp.asarray(cv.convert_torch_conv_weight(dw))},
                 "pointwise": {"kernel": jnp.asarray(cv.convert_torch_conv_weight(pw))},
                 "bn": {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)}},
      "batch_stats": {"bn": {"mean": jnp.asarray(mean), "var": jnp.asarray(var)}}}
  assert jax.tree.structure(variables) == jax.tree.structure(
      jax.eval_shape(module.init, jax.random.key(0), nhwc(x)))
  ours = nchw(jax.jit(module.apply)(variables, nhwc(x)))
  assert np.abs(ours - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
  plain = cv.separable_conv(nhwc(x), variables["params"]["depthwise"]["kernel"],
                            variables["params"]["pointwise"]["kernel"], 1, 2, 2)
  ref_plain = F.conv2d(F.conv2d(t(x), t(dw), None, 1, 2, 2, c), t(pw)).numpy()
  assert np.abs(nchw(plain) - ref_plain).max() <= 1e-5 * max(1.0, np.abs(ref_plain).max())


# ----------------------------------------------------------------------------- adaptive / SPP

def test_adaptive_pools_and_spp_match_torch():
  x = np.round(normal(2, 3, 7, 10) * 2)
  xt = t(x).requires_grad_()
  levels = (1, 2, 4, 8)
  ref = torch.cat([F.adaptive_max_pool2d(xt, n).flatten(1) for n in levels], 1)
  g = normal(*ref.shape)
  ref.backward(t(g))
  spp = jax.jit(pooling.spatial_pyramid_pool, static_argnums=1)
  np.testing.assert_array_equal(spp(nhwc(x), levels), ref.detach().numpy())
  dx = jax.grad(lambda v: jnp.sum(spp(v, levels) * jnp.asarray(g)))(nhwc(x))
  np.testing.assert_allclose(nchw(dx), xt.grad.numpy(), atol=1e-6)  # to the first maximum
  ref_avg = F.adaptive_avg_pool2d(t(x), (3, 4)).numpy()
  ours_avg = jax.jit(pooling.adaptive_avg_pool, static_argnums=1)(nhwc(x), (3, 4))
  assert np.abs(nchw(ours_avg) - ref_avg).max() <= 1e-5


def test_pyramid_pooling_matches_torch_composition():
  c, bins = 8, (1, 2, 3, 6)
  x = normal(2, c, 13, 12)
  module = pooling.PyramidPooling(bins=bins, features=3)
  variables = jax.tree.map(np.asarray, jax.jit(module.init)(jax.random.key(0), nhwc(x)))
  refs = [t(x)]
  for i, n in enumerate(bins):
    bn = {"scale": 1 + 0.3 * normal(3), "bias": 0.3 * normal(3)}
    stats = {"mean": 0.5 * normal(3), "var": RNG.uniform(0.5, 2.0, 3).astype(np.float32)}
    variables["params"][f"bn{i}"], variables["batch_stats"][f"bn{i}"] = bn, stats
    w = variables["params"][f"conv{i}"]["kernel"].transpose(3, 2, 0, 1)
    y = F.conv2d(F.adaptive_avg_pool2d(t(x), n), t(w))
    y = F.relu(F.batch_norm(y, t(stats["mean"]), t(stats["var"]), t(bn["scale"]),
                            t(bn["bias"]), False, 0.1, 1e-5))
    refs.append(F.interpolate(y, size=(13, 12), mode="bilinear", align_corners=False))
  ref = torch.cat(refs, 1).numpy()
  ours = nchw(jax.jit(module.apply)(variables, nhwc(x)))
  assert np.abs(ours - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
