"""MobileNetV3 with converted weights gives torchvision's `mobilenet_v3_large` / `_small`
outputs: logits, SSDlite's C4 tap (`blockK_expand` vs `features[K].block[0]`), `last_conv`
vs `features`, and one training step's outputs and BatchNorm running statistics.

torchvision models are randomly initialised; every BatchNorm gets random running stats and
affine parameters, and the SE and Linear biases (zero at init) random values. Inputs are
tiny (64x64, batch 2). Skipped where torch/torchvision are not installed.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import models
from jaxcv.weights import torchvision as tv_weights
from torch_reference import import_torchvision, randomize_batchnorm

torch, torchvision = import_torchvision()

SIZE = 64
CASES = [("mobilenet_v3_large", {}), ("mobilenet_v3_small", {}),
         ("mobilenet_v3_large", {"reduced_tail": True, "dilated": False}),
         ("mobilenet_v3_small", {"dilated": True})]


def reference(name, seed=0, **kwargs):
  """torchvision `name` in eval mode with random BN stats / affine, SE and Linear biases."""
  torch.manual_seed(seed)
  model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
  randomize_batchnorm(model)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torchvision.ops.SqueezeExcitation):
        m.fc1.bias.normal_(0.0, 0.3)
        m.fc2.bias.normal_(0.0, 1.0)
      elif isinstance(m, torch.nn.Linear):  # torchvision's std 0.01 would give tiny logits
        m.weight.normal_(0.0, m.in_features ** -0.5)
        m.bias.normal_(0.0, 0.1)
  return model


def images(seed=1, batch=2):
  x = torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
  return x, jnp.asarray(x.numpy().transpose(0, 2, 3, 1))


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def assert_close(ours, want, rel=1e-4):
  """Equal within `rel` of the reference's largest magnitude."""
  want = np.asarray(want)
  np.testing.assert_allclose(np.asarray(ours), want, rtol=0,
                             atol=rel * float(np.abs(want).max()))


@functools.cache
def converted(name, **kwargs):
  """`(torch model, jaxcv model, variables)`; the jaxcv model and its kwargs from `load`
  (`reduced_tail` read from the state_dict; `dilated` changes no shape, so it is passed)."""
  ref = reference(name, **kwargs)
  model, variables = tv_weights.load(name, ref.state_dict(),
                                     **{k: v for k, v in kwargs.items() if k == "dilated"})
  return ref, model, variables


@pytest.mark.parametrize("name, kwargs", CASES)
def test_logits_c4_tap_and_last_conv_match_torchvision(name, kwargs):
  ref, model, variables = converted(name, **kwargs)
  assert model.reduced_tail == kwargs.get("reduced_tail", False)  # read from the state_dict
  x, x_nhwc = images()
  c4 = int(model.c4_tap[len("block"):-len("_expand")])
  with torch.no_grad():
    want = ref(x).numpy()
    features = ref.features(x)
    c4_want = ref.features[c4].block[0](ref.features[:c4](x))
  with jax.default_matmul_precision("highest"):
    ours, inter = model.apply(variables, x_nhwc)  # eager: one call
  assert ours.shape == (2, 1000) and ours.dtype == jnp.float32
  assert_close(ours, want)
  assert_close(inter["last_conv"], nhwc(features))
  assert model.c4_tap == {"mobilenet_v3_large": "block13_expand",
                          "mobilenet_v3_small": "block9_expand"}[name]
  assert_close(inter[model.c4_tap], nhwc(c4_want))


def test_is_cn_matches_torchvision():
  for name in ("mobilenet_v3_large", "mobilenet_v3_small"):
    ref = getattr(torchvision.models, name)(weights=None)
    want = tuple(bool(getattr(b, "_is_cn", False)) for b in ref.features[1:-1])
    model = models.create(name)
    assert model.is_cn == want
    assert model.c_blocks == tuple(f"block{i}" for i, b in enumerate(ref.features)
                                   if getattr(b, "_is_cn", False))


def test_training_step_matches_torchvision_batchnorm():
  """One forward with train=True (dropout 0, SSDlite's BN momentum 0.03): the same logits and
  the same running-statistics update as torch's BatchNorm2d (unbiased variance; the last
  blocks see n = 2*2*2 values per channel, where n / (n - 1) is 8/7)."""
  name = "mobilenet_v3_large"
  norm = functools.partial(torch.nn.BatchNorm2d, eps=0.001, momentum=0.03)
  ref = reference(name, dropout=0.0, norm_layer=norm)
  # cloned: convert's numpy arrays share memory with the tensors, which train mode updates
  before = {k: v.clone() for k, v in ref.state_dict().items()}
  variables = tv_weights.convert(name, before)
  model = models.create(name, num_classes=1000, dropout=0.0, norm_momentum=0.03)
  x, x_nhwc = images(seed=2)
  ref.train()
  with torch.no_grad():
    want = ref(x).numpy()
  with jax.default_matmul_precision("highest"):
    ours, updates = model.apply(variables, x_nhwc, train=True, mutable=["batch_stats"],
                                rngs={"dropout": jax.random.key(0)})
  assert_close(ours[0], want)
  new = tv_weights.convert(name, ref.state_dict())["batch_stats"]  # torch's, converted
  old = variables["batch_stats"]
  # compare the updates (new - old): the momentum-scaled step, where a biased variance shows
  deltas = jax.tree.map(lambda n, o: np.asarray(n) - np.asarray(o), new, old)
  ours_deltas = jax.tree.map(lambda n, o: np.asarray(n) - np.asarray(o),
                             updates["batch_stats"], old)
  flat_want = jax.tree_util.tree_leaves_with_path(deltas)
  flat_ours = dict(jax.tree_util.tree_leaves_with_path(ours_deltas))
  num_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in ref.modules())
  assert len(flat_want) == len(flat_ours) == 2 * num_bn  # mean and var each
  for path, d_want in flat_want:
    np.testing.assert_allclose(flat_ours[path], d_want, rtol=0,
                               atol=2e-4 * float(np.abs(d_want).max()) + 1e-7,
                               err_msg=jax.tree_util.keystr(path))
  assert any(not np.allclose(before[k], v) for k, v in ref.state_dict().items()
             if k.endswith("running_var"))


@pytest.mark.parametrize("name, other", [("mobilenet_v3_large", "mobilenet_v3_small"),
                                         ("mobilenet_v3_small", "mobilenet_v3_large")])
def test_state_dict_of_the_other_variant_is_a_named_error(name, other):
  state = getattr(torchvision.models, other)(weights=None).state_dict()
  with pytest.raises(ValueError, match=rf"torchvision's {other} .*not {name}"):
    tv_weights.convert(name, state)


def test_state_dict_of_another_model_is_a_named_error():
  state = torchvision.models.resnet18(weights=None).state_dict()
  with pytest.raises(ValueError, match="classifier.3"):
    tv_weights.convert("mobilenet_v3_large", state)
