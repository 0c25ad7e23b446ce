"""Optimizer construction: schedules, weight-decay masks, freezing, learning-rate multipliers."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import override
from jaxcv.train import optim


def make_config(**over):
  c = ml_collections.ConfigDict(dict(
      num_steps=100,
      optimizer=dict(name="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.0,
                     weight_decay_mask="kernels", grad_clip_norm=0.0),
      schedule=dict(name="constant", warmup_steps=0),
      transfer=dict(frozen=(), head=("head",), backbone_lr_mult=1.0)))
  return override(c, **over)


PARAMS = {"stage1": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones((4,))},
          "head": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones((2,))}}


def one_update(config, grads_scale=0.0, params=PARAMS):
  tx = optim.make_optimizer(config, params)
  grads = jax.tree.map(lambda p: jnp.full_like(p, grads_scale), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  return optax.apply_updates(params, updates)


def test_weight_decay_mask_kernels_leaves_biases_undecayed():
  new = one_update(make_config(**{"optimizer.weight_decay": 0.5}))
  # SGD with coupled L2: p - lr * wd * p on kernels only.
  np.testing.assert_array_equal(new["stage1"]["bias"], PARAMS["stage1"]["bias"])
  np.testing.assert_array_equal(new["head"]["bias"], PARAMS["head"]["bias"])
  np.testing.assert_allclose(new["stage1"]["kernel"], 1 - 0.1 * 0.5, rtol=1e-6)


@pytest.mark.parametrize("kind,decayed", [("all", True), ("none", False)])
def test_weight_decay_mask_all_and_none(kind, decayed):
  new = one_update(make_config(**{"optimizer.weight_decay": 0.5,
                                  "optimizer.weight_decay_mask": kind}))
  want = 1 - 0.05 if decayed else 1.0
  np.testing.assert_allclose(new["stage1"]["bias"], want, rtol=1e-6)


def test_adamw_decay_is_masked_too():
  new = one_update(make_config(**{"optimizer.name": "adamw", "optimizer.weight_decay": 0.5}))
  np.testing.assert_array_equal(new["stage1"]["bias"], PARAMS["stage1"]["bias"])
  assert float(new["stage1"]["kernel"][0, 0]) < 1.0


def test_frozen_modules_get_no_update_and_backbone_multiplier_scales():
  c = make_config(**{"transfer.frozen": ("stage1",)})
  new = one_update(c, grads_scale=1.0)
  np.testing.assert_array_equal(new["stage1"]["kernel"], PARAMS["stage1"]["kernel"])
  np.testing.assert_allclose(new["head"]["kernel"], 1 - 0.1, rtol=1e-6)
  c = make_config(**{"transfer.backbone_lr_mult": 0.1})
  new = one_update(c, grads_scale=1.0)
  np.testing.assert_allclose(new["stage1"]["kernel"], 1 - 0.01, rtol=1e-6)
  np.testing.assert_allclose(new["head"]["kernel"], 1 - 0.1, rtol=1e-6)


def test_unknown_frozen_module_is_an_error():
  with pytest.raises(ValueError, match="stage9"):
    optim.make_optimizer(make_config(**{"transfer.frozen": ("stage9",)}), PARAMS)


def test_schedules():
  s = optim.make_schedule(make_config(**{"schedule.name": "cosine", "schedule.warmup_steps": 10}))
  np.testing.assert_allclose([s(0), s(5), s(10), s(100)], [0.0, 0.05, 0.1, 0.0], atol=1e-7)
  s = optim.make_schedule(make_config(**{"schedule.name": "step",
                                         "schedule.boundaries": (0.5, 0.75),
                                         "schedule.decay_factor": 0.1}))
  np.testing.assert_allclose([s(49), s(51), s(76)], [0.1, 0.01, 0.001], rtol=1e-5)


def test_gradient_clipping():
  c = make_config(**{"optimizer.grad_clip_norm": 1.0, "optimizer.learning_rate": 1.0})
  params = {"head": {"kernel": jnp.zeros((2, 2))}}
  new = one_update(c, grads_scale=10.0, params=params)
  # the update is the clipped gradient: global norm 1
  np.testing.assert_allclose(float(optax.global_norm(new)), 1.0, rtol=1e-6)


@pytest.mark.parametrize("key,value", [("optimizer.name", "lamb"), ("schedule.name", "poly"),
                                       ("optimizer.weight_decay_mask", "some")])
def test_unknown_names_are_errors(key, value):
  with pytest.raises(ValueError, match="known"):
    optim.make_optimizer(make_config(**{key: value, "optimizer.weight_decay": 0.1}), PARAMS)
