"""jaxcv.layers' shared blocks and the ResNet backbone: frozen BatchNorm (running statistics,
no state update, no gradient in training), the norm choices of ConvNormAct (BatchNorm,
GroupNorm against a NumPy GroupNorm, none), ASPP's shape and branches, and the
`ResNetBackbone` strides at output stride 32/16/8 with the classifier's parameter names.

torchvision parity of the dilated ResNet body is in test_torchvision_parity.py. Widths and
sizes are tiny: every test compiles in well under a second.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import models
from jaxcv.layers import (ASPP, NORM_KINDS, BasicBlock, ConvNormAct, FrozenBatchNorm,
                          batch_norm, norm_layer)
from jaxcv.models.backbones import ResNetBackbone, dilation_for_output_stride

X = jax.random.normal(jax.random.key(0), (2, 6, 5, 8)) * 3.0 + 1.0


def random_variables(module, x, seed=0):
  """Variables of `module` for input `x`, drawn in NumPy: kernels N(0, 0.3), running variances
  and BN scales in [0.5, 2], the rest N(0, 0.5); no XLA compile for `init`."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if "var" in name or "scale" in name:
      return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), jnp.float32)
    return jnp.asarray(rng.normal(0.0, 0.3 if "kernel" in name else 0.5, leaf.shape),
                       jnp.float32)

  shapes = jax.eval_shape(module.init, jax.random.key(0), x)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def test_frozen_batch_norm_uses_running_stats_and_never_updates_them_in_training():
  block = ConvNormAct(4, 3, norm=norm_layer("frozen_batch", train=True))
  variables = random_variables(block, X)
  y, updates = block.apply(variables, X, mutable=["batch_stats"])
  assert jax.tree.all(jax.tree.map(jnp.array_equal, updates["batch_stats"],
                                   variables["batch_stats"]))
  # the same numbers as flax's BatchNorm in inference mode, on the same variables
  ref = ConvNormAct(4, 3, norm=norm_layer("batch", train=False))
  np.testing.assert_array_equal(y, ref.apply(variables, X))
  # and the formula: relu((conv - mean) / sqrt(var + eps) * scale + bias)
  conv = jax.lax.conv_general_dilated(X, variables["params"]["conv"]["kernel"], (1, 1),
                                      ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO",
                                                                           "NHWC"))
  stats, bn = variables["batch_stats"]["bn"], variables["params"]["bn"]
  want = np.maximum((conv - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * bn["scale"]
                    + bn["bias"], 0)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_batch_norm_in_training_does_update_its_stats():
  block = ConvNormAct(4, 3, norm=norm_layer("batch", train=True))
  variables = random_variables(block, X)
  _, updates = block.apply(variables, X, mutable=["batch_stats"])
  assert not np.allclose(updates["batch_stats"]["bn"]["mean"],
                         variables["batch_stats"]["bn"]["mean"])
  # a frozen stage of a model keeps inference-mode BN in training
  frozen = ConvNormAct(4, 3, norm=batch_norm(True, "stage1", ("stage1",), jnp.float32))
  _, same = frozen.apply(variables, X, mutable=["batch_stats"])
  assert jax.tree.all(jax.tree.map(jnp.array_equal, same["batch_stats"],
                                   variables["batch_stats"]))


def test_frozen_batch_norm_affine_parameters_get_no_gradient():
  # torchvision's FrozenBatchNorm2d keeps weight and bias as buffers: fixed in training.
  bn = FrozenBatchNorm()
  variables = random_variables(bn, X)
  grads = jax.grad(lambda p: jnp.sum(bn.apply({**variables, "params": p}, X) ** 2))(
      variables["params"])
  assert set(grads) == {"scale", "bias"}
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in grads.values())
  dx = jax.grad(lambda x: jnp.sum(bn.apply(variables, x) ** 2))(X)
  assert float(jnp.max(jnp.abs(dx))) > 0  # the input still gets its gradient


def test_group_norm_option_matches_a_numpy_group_norm():
  block = ConvNormAct(6, 1, norm=norm_layer("group", train=True, num_groups=3), act=None)
  variables = block.init(jax.random.key(2), X)
  assert "batch_stats" not in variables  # GroupNorm keeps no state
  assert set(variables["params"]) == {"conv", "bn"}
  assert "bias" not in variables["params"]["conv"]  # a norm follows: no conv bias
  y = block.apply(variables, X)
  conv = np.einsum("bhwc,co->bhwo", np.asarray(X), np.asarray(
      variables["params"]["conv"]["kernel"][0, 0]))
  g = conv.reshape(2, 6, 5, 3, 2)  # 3 groups of 2 channels
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  want = ((g - mean) / np.sqrt(var + 1e-5)).reshape(conv.shape)  # init scale 1, bias 0
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


def test_no_norm_gives_the_conv_a_bias_and_the_activation_is_configurable():
  block = ConvNormAct(3, 3, strides=2, norm=norm_layer(None, train=True), act=nn.silu)
  variables = block.init(jax.random.key(3), X)
  assert set(variables["params"]) == {"conv"}
  assert variables["params"]["conv"]["bias"].shape == (3,)
  y = block.apply(variables, X)
  assert y.shape == (2, 3, 3, 3)  # torch's padding 1 at stride 2: ceil(6 / 2), ceil(5 / 2)
  linear = ConvNormAct(3, 3, strides=2, act=None).apply(variables, X)
  np.testing.assert_allclose(y, nn.silu(linear), rtol=1e-6)
  with pytest.raises(ValueError, match="unknown norm 'layer'"):
    norm_layer("layer", train=True)
  assert NORM_KINDS == ("batch", "frozen_batch", "group", None)


@pytest.mark.parametrize("separable", [False, True])
def test_aspp_keeps_the_map_size_and_names_its_branches(separable):
  aspp = ASPP((1, 2, 3), 16, norm_layer("batch", train=False), separable=separable)
  variables = jax.eval_shape(aspp.init, jax.random.key(0), X)
  y = jax.eval_shape(aspp.apply, variables, X)
  assert y.shape == (2, 6, 5, 16)
  assert set(variables["params"]) == {"conv1x1", "atrous1", "atrous2", "atrous3", "pooling",
                                      "project"}
  assert variables["params"]["project"]["conv"]["kernel"].shape == (1, 1, 5 * 16, 16)
  if not separable:
    assert variables["params"]["atrous2"]["conv"]["kernel"].shape == (3, 3, 8, 16)
  # the image pooling branch convolves the 1x1 pooled map (then broadcasts it)
  _, inter = jax.eval_shape(lambda v, x: aspp.apply(
      v, x, capture_intermediates=lambda m, _: m.name == "pooling"), variables, X)
  assert inter["intermediates"]["pooling"]["__call__"][0].shape == (2, 1, 1, 16)


def test_dilation_for_output_stride():
  assert dilation_for_output_stride(32) == (False, False, False)
  assert dilation_for_output_stride(16) == (False, False, True)
  assert dilation_for_output_stride(8) == (False, True, True)
  assert dilation_for_output_stride(4) == (True, True, True)
  with pytest.raises(ValueError, match=r"one of \[4, 8, 16, 32\]"):
    dilation_for_output_stride(12)


@pytest.mark.parametrize("output_stride, strides", [(32, (4, 4, 8, 16, 32)),
                                                    (16, (4, 4, 8, 16, 16)),
                                                    (8, (4, 4, 8, 8, 8))])
def test_resnet_backbone_output_strides_and_classifier_names(output_stride, strides):
  backbone = ResNetBackbone(width=4, output_stride=output_stride)
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  variables = jax.eval_shape(backbone.init, jax.random.key(0), x)
  features = jax.eval_shape(backbone.apply, variables, x)
  names = ["stem", "stage1", "stage2", "stage3", "stage4"]
  assert sorted(features) == sorted(names)
  assert [64 // features[n].shape[1] for n in names] == list(strides)
  assert [features[n].shape[-1] for n in names] == [4, 16, 32, 64, 128]
  # the classifier's tree without `head`: converted torchvision weights load
  classifier = models.create("resnet50", num_classes=3, width=4)
  want = jax.eval_shape(classifier.init, jax.random.key(0), x)
  want["params"].pop("head")
  assert jax.tree.structure(variables) == jax.tree.structure(want)


def test_resnet_backbone_with_frozen_batch_norm_keeps_its_stats_in_training():
  backbone = ResNetBackbone(stage_sizes=(1, 1), block_cls=BasicBlock, width=4,
                            norm="frozen_batch")
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  variables = random_variables(backbone, x)
  _, updates = jax.jit(lambda v, x: backbone.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables, x)
  assert jax.tree.all(jax.tree.map(jnp.array_equal, updates["batch_stats"],
                                   variables["batch_stats"]))
  group = ResNetBackbone(stage_sizes=(1, 1), width=4, norm="group", num_groups=2)
  assert "batch_stats" not in jax.eval_shape(group.init, jax.random.key(1), x)


@pytest.mark.parametrize("kwargs, match", [
    ({"norm": None}, "norm must be one of"),
    ({"output_stride": 16, "replace_stride_with_dilation": (False, False, True)}, "not both"),
    ({"frozen_stages": ("layer1",)}, "not top-level modules"),
])
def test_resnet_backbone_bad_configuration_is_a_clear_error(kwargs, match):
  backbone = ResNetBackbone(width=4, **kwargs)
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(backbone.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
