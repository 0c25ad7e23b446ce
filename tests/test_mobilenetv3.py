"""MobileNetV3 (jaxcv.models.mobilenetv3) without torch: parameter counts, the registry,
names and intermediates, `include_head`, training-mode BatchNorm state, input checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import models
from jaxcv.models import mobilenetv3

SPEC = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)


def shapes(model, spec=SPEC):
  return jax.eval_shape(model.init, jax.random.key(0), spec)


def random_variables(model, seed=0):
  """Random variables shaped as `init`'s, drawn on the host (no init compile)."""
  rng = np.random.default_rng(seed)

  def draw(path, s):
    if path[-1].key == "kernel":
      return rng.normal(0, np.prod(s.shape[:-1]) ** -0.5, s.shape).astype(np.float32)
    if path[-1].key in ("scale", "var"):
      return rng.uniform(0.5, 1.5, s.shape).astype(np.float32)
    return rng.normal(0, 0.1, s.shape).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes(model))


@pytest.mark.parametrize("name, count", [("mobilenet_v3_large", 5_483_032),
                                         ("mobilenet_v3_small", 2_542_856)])
def test_parameter_count_matches_torchvision(name, count):
  params = shapes(models.create(name, num_classes=1000))["params"]
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == count


def test_names_layout_and_intermediates():
  model = models.create("mobilenet_v3_large", num_classes=10)
  s = shapes(model)
  blocks = [f"block{k}" for k in range(1, 16)]
  assert set(s["params"]) == {"stem", *blocks, "last_conv", "classifier", "head"}
  assert set(s["batch_stats"]) == {"stem", *blocks, "last_conv"}
  # 16 -> 16 without SE: no expansion layer, as in torchvision
  assert set(s["params"]["block1"]) == {"depthwise", "project"}
  assert set(s["params"]["block13"]) == {"expand", "depthwise", "se", "project"}
  assert set(s["params"]["block13"]["se"]) == {"fc1", "fc2"}
  assert s["params"]["block13"]["se"]["fc1"]["kernel"].shape == (1, 1, 672, 168)
  assert s["params"]["block13"]["depthwise"]["conv"]["kernel"].shape == (5, 5, 1, 672)
  _, inter = jax.eval_shape(model.apply, s, SPEC)
  expands = {f"{b}_expand" for b in blocks[1:]}
  assert set(inter) == {"stem", *blocks, *expands, "last_conv", "pre_logits"}
  assert inter["block13_expand"].shape == (2, 4, 4, 672)  # SSDlite's C4: stride 16
  assert inter["last_conv"].shape == (2, 2, 2, 960)
  assert inter["pre_logits"].shape == (2, 1280)


def test_is_cn_and_c4_tap():
  assert mobilenetv3.c_blocks("large") == ("block2", "block4", "block7", "block13")
  assert mobilenetv3.c_blocks("small") == ("block1", "block2", "block4", "block9")
  assert mobilenetv3.c4_tap("large") == "block13_expand"
  assert mobilenetv3.c4_tap("small") == "block9_expand"
  model = models.create("mobilenet_v3_small")
  assert model.is_cn == mobilenetv3.is_cn("small") and len(model.is_cn) == 11
  assert model.c4_tap == "block9_expand"


def test_make_divisible_is_torchvisions():
  # values from torchvision's _make_divisible
  assert [mobilenetv3.make_divisible(v, 8) for v in (16 * 0.5, 672 * 0.75, 3, 12, 100)] == [
      8, 504, 8, 16, 104]


def test_jit_forward_shape_and_train_mode_updates_batch_stats():
  model = models.create("mobilenet_v3_small", num_classes=10)
  variables = random_variables(model)
  x = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))
  logits, inter = jax.jit(model.apply)(variables, x)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))

  @jax.jit
  def train(variables, x):
    return model.apply(variables, x, train=True, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.key(0)})

  (train_logits, _), updates = train(variables, x)
  assert train_logits.shape == (2, 10)
  old, new = variables["batch_stats"], updates["batch_stats"]
  assert not np.allclose(old["stem"]["bn"]["var"], new["stem"]["bn"]["var"])
  # torch momentum 0.01: the running mean moves 1% of the way to the batch mean
  step = np.asarray(new["stem"]["bn"]["mean"]) - np.asarray(old["stem"]["bn"]["mean"])
  assert float(np.abs(step).max()) < 0.05


def test_frozen_stage_keeps_its_batch_stats():
  model = models.create("mobilenet_v3_small", num_classes=10, frozen_stages=("stem", "block1"))
  variables = random_variables(model)
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"],
                           rngs={"dropout": jax.random.key(0)})
  for stage in ("stem", "block1"):
    jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"][stage],
                 variables["batch_stats"][stage])
  assert not np.allclose(updates["batch_stats"]["block2"]["expand"]["bn"]["mean"],
                         variables["batch_stats"]["block2"]["expand"]["bn"]["mean"])
  with pytest.raises(ValueError, match="frozen_stages"):
    models.create("mobilenet_v3_small", frozen_stages=("stage1",)).apply(variables, x)


def test_include_head_false_returns_last_conv_features():
  model = models.create("mobilenet_v3_large", include_head=False)
  s = shapes(model)
  assert "classifier" not in s["params"] and "head" not in s["params"]
  out, inter = jax.eval_shape(model.apply, s, SPEC)
  assert out.shape == (2, 2, 2, 960) and "pre_logits" not in inter
  dilated = models.create("mobilenet_v3_large", include_head=False, dilated=True,
                          reduced_tail=True)
  out, inter = jax.eval_shape(dilated.apply, shapes(dilated), SPEC)
  assert out.shape == (2, 4, 4, 480)  # output stride 16, halved tail (6 * 80)
  assert inter["block13_expand"].shape == (2, 4, 4, 672)


@pytest.mark.parametrize("shape, match", [
    ((2, 64, 64, 4), r"MobileNetV3 expects images of shape \[B, H, W, 3\].*\(2, 64, 64, 4\)"),
    ((64, 64, 3), r"MobileNetV3 expects images.*\(64, 64, 3\)")])
def test_bad_input_is_a_named_error(shape, match):
  model = models.create("mobilenet_v3_large", num_classes=10)
  with pytest.raises(ValueError, match=match):
    shapes(model, jax.ShapeDtypeStruct(shape, jnp.float32))


def test_bad_width_mult_is_a_named_error():
  with pytest.raises(ValueError, match="width_mult"):
    shapes(models.create("mobilenet_v3_small", width_mult=0))


def test_bfloat16_computation_keeps_float32_params_and_logits():
  model = models.create("mobilenet_v3_small", num_classes=10, dtype=jnp.bfloat16)
  s = shapes(model)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(s))
  logits, inter = jax.eval_shape(model.apply, s, SPEC)
  assert logits.dtype == jnp.float32 and inter["pre_logits"].dtype == jnp.bfloat16
