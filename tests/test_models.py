"""jaxcv.models: the registry, the model contract (outputs, names, errors, frozen BN, dtype)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import models

# Tiny versions so every model compiles quickly on a 2-core CPU.
TINY = {"width": 8}
TINY_FC = {"width": 8, "hidden": 16}
CLASSIFIERS = ["mlp", "lenet5", "alexnet", "vgg11", "vgg16", "vgg19", "vgg11_bn", "vgg16_bn",
               "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101"]
# (dense and latent models have their own test files)
SMALL_KWARGS = {"mlp": {"hidden": 16}, "lenet5": {}, "alexnet": TINY_FC,
                **{n: TINY for n in CLASSIFIERS if n.startswith("resnet")},
                **{n: TINY_FC for n in CLASSIFIERS if n.startswith("vgg")}}
SIZE = {"alexnet": 64}  # AlexNet needs >= 63 pixels; the rest run at 32
INTERMEDIATES = {
    "mlp": {"pre_logits"},
    "lenet5": {"stage1", "stage2", "pre_logits"},
    "alexnet": {"stage1", "stage2", "stage3", "pre_logits"},
    "vgg": {"stage1", "stage2", "stage3", "stage4", "stage5", "pre_logits"},
    "resnet": {"stem", "stage1", "stage2", "stage3", "stage4", "pre_logits"},
}
TOP_LEVEL = {
    "mlp": {"fc1", "head"},
    "lenet5": {"stage1", "stage2", "classifier", "head"},
    "alexnet": {"stage1", "stage2", "stage3", "classifier", "head"},
    "vgg": {"stage1", "stage2", "stage3", "stage4", "stage5", "classifier", "head"},
    "resnet": {"stem", "stage1", "stage2", "stage3", "stage4", "head"},
}


def family(name):
  return next(f for f in ("vgg", "resnet") if name.startswith(f)) if name[:3] in (
      "vgg", "res") else name


def images(size, batch=2, seed=0):
  return jax.random.uniform(jax.random.key(seed), (batch, size, size, 3))


def random_variables(model, x, seed=0):
  """Random variables shaped like `model.init(key, x)`'s, drawn on the host.

  XLA:CPU takes ~20 s to compile the init of a ResNet (its many PRNG ops), so the tests trace
  `init` (jax.eval_shape) and fill the tree with numpy; `test_init_runs` runs a real init.
  """
  rng = np.random.default_rng(seed)
  def draw(path, s):
    leaf = path[-1].key
    if leaf == "kernel":  # fan-in scaling keeps activations O(1) through deep nets
      return rng.normal(0, (1 / np.prod(s.shape[:-1])) ** 0.5, s.shape).astype(np.float32)
    if leaf in ("scale", "var"):
      return rng.uniform(0.5, 1.5, s.shape).astype(np.float32)
    return rng.normal(0, 0.1, s.shape).astype(np.float32)  # bias, mean
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.cache
def tiny(name, num_classes=5, **extra):
  """`(model, variables, x)` for a tiny version of `name`."""
  model = models.create(name, num_classes=num_classes, **SMALL_KWARGS[name], **extra)
  x = images(SIZE.get(name, 32))
  return model, random_variables(model, x), x


def test_registry_names():
  assert models.names() == sorted(models.names())
  assert set(CLASSIFIERS) <= set(models.names())
  with pytest.raises(ValueError, match="known models"):
    models.create("resnet5000")


def test_unknown_name_lists_known_ones():
  with pytest.raises(ValueError, match=r"unknown model 'resnet5'.*resnet50"):
    models.create("resnet5")


@pytest.mark.parametrize("name, kwargs, match", [
    # num_classes=0 was a ZeroDivisionError in the head's initializer, -3 a broadcasting
    # TypeError; both only at init
    ("lenet5", {"num_classes": 0}, r"'lenet5': num_classes must be a positive int.*got 0"),
    ("lenet5", {"num_classes": -3}, r"'lenet5': num_classes must be a positive int.*got -3"),
    ("lenet5", {"num_classes": 2.5}, r"'lenet5': num_classes .*not a bool or a float.*2\.5"),
    ("lenet5", {"num_classes": True}, r"'lenet5': num_classes .*got True"),
    ("resnet18", {"num_classes": "10"}, r"'resnet18': num_classes .*got '10'"),
    ("mlp", {"hidden": 0}, r"'mlp': hidden must be a positive int.*got 0"),
    ("mlp", {"hidden": None}, r"'mlp': hidden .*got None"),  # its default is 128, not None
    ("resnet18", {"width": -8}, r"'resnet18': width must be a positive int.*got -8"),
    ("vae", {"latent_dim": 0}, r"'vae': latent_dim must be"),
    ("vae", {"gaussian_std": -1.0}, r"'vae': gaussian_std must be a number >= 0"),
    ("unet", {"dropout": 1.0}, r"'unet': dropout must be a dropout rate in \[0, 1\); got 1\.0"),
    ("unet", {"batch_norm": "yes"}, r"'unet': batch_norm must be True or False"),
    ("deeplabv3plus_resnet18", {"aspp_features": 0}, r"aspp_features must be a positive int"),
    ("resnet18", {"frozen_stages": "stem"}, r"'resnet18': frozen_stages must be .*not a string"),
    ("resnet18", {"dtype": jnp.int32}, r"'resnet18': dtype must be a floating dtype"),
    ("lenet5", {"colour": "red"},
     r"'lenet5' does not take argument\(s\) \['colour'\]; it takes \['dtype', "
     r"'frozen_stages', 'num_classes'\]"),
])
def test_bad_constructor_arguments_are_named_errors_at_create(name, kwargs, match):
  with pytest.raises(ValueError, match=match):
    models.create(name, **kwargs)


def test_good_constructor_arguments_pass_the_checks():
  assert models.create("lenet5", num_classes=np.int64(3)).num_classes == 3
  assert models.create("alexnet", hidden=None).hidden is None  # default None: derived
  assert models.create("resnet18", dtype=jnp.bfloat16, frozen_stages=["stem"]).width == 64
  assert models.create("unet", dropout=0, batch_norm=np.bool_(True)).dropout == 0
  assert models.create("resnet18", stage_sizes=(1, 1, 1, 1)).stage_sizes == (1, 1, 1, 1)


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_init_runs(name):
  model, _, x = tiny(name)
  # rbg keys: XLA:CPU compiles threefry-based init several times slower.
  variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
  assert set(variables["params"]) == TOP_LEVEL[family(name)]
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(variables))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_model_runs_under_jit(name):
  model, variables, x = tiny(name)
  assert set(variables["params"]) == TOP_LEVEL[family(name)]
  logits, inter = jax.jit(model.apply)(variables, x)
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32
  assert set(inter) == INTERMEDIATES[family(name)]
  assert inter["pre_logits"].shape[0] == 2 and inter["pre_logits"].ndim == 2
  assert np.all(np.isfinite(logits))


@pytest.mark.parametrize("shape, match", [
    ((2, 32, 32, 1), r"\[B, H, W, 3\].*\(2, 32, 32, 1\)"),
    ((2, 3, 32, 32), r"\[B, H, W, 3\].*\(2, 3, 32, 32\)"),
    ((32, 32, 3), r"\[B, H, W, 3\].*\(32, 32, 3\)"),
])
def test_wrong_layout_is_a_clear_error(shape, match):
  for name in ("mlp", "resnet18"):
    model = models.create(name, **SMALL_KWARGS[name])
    with pytest.raises(ValueError, match=match):
      jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))


@pytest.mark.parametrize("name, size, match", [
    ("lenet5", 28, "32x32"), ("resnet18", 16, "at least 32x32"),
    ("vgg11", 24, "at least 32x32"), ("alexnet", 32, "at least 63x63")])
def test_too_small_input_is_a_clear_error(name, size, match):
  model = models.create(name, **SMALL_KWARGS[name])
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))


def test_unknown_frozen_stage_is_an_error():
  model = models.create("resnet18", frozen_stages=("layer1",), **TINY)
  with pytest.raises(ValueError, match=r"\['layer1'\].*stage1"):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


@pytest.mark.parametrize("name, frozen", [("resnet18", ("stem", "stage1")),
                                          ("vgg11_bn", ("stage1", "stage4"))])
def test_frozen_stages_keep_batch_stats(name, frozen):
  model, variables, x = tiny(name, frozen_stages=frozen)
  _, updates = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))(
      variables, x, rngs={"dropout": jax.random.key(0)})
  for stage, before in variables["batch_stats"].items():
    same = jax.tree.all(jax.tree.map(np.array_equal, before, updates["batch_stats"][stage]))
    assert same == (stage in frozen), stage


def test_frozen_stage_normalises_with_running_stats():
  # Frozen everywhere, train mode equals eval mode (no dropout in ResNet).
  model, variables, x = tiny("resnet18", frozen_stages=("stem", "stage1", "stage2", "stage3",
                                                        "stage4"))
  train_logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])[0]
  eval_logits, _ = model.apply(variables, x, train=False)
  np.testing.assert_allclose(train_logits, eval_logits, rtol=1e-5, atol=1e-5)


def test_dropout_only_in_training():
  model, variables, x = tiny("vgg11")
  apply = jax.jit(model.apply, static_argnames="train")
  a, _ = apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  b, _ = apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  c, _ = apply(variables, x)
  d, _ = apply(variables, x)
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(c, d)


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "lenet5"])
def test_bfloat16_computation_float32_params_and_logits(name):
  model, variables, x = tiny(name, dtype=jnp.bfloat16)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  logits, inter = jax.jit(model.apply)(variables, x)
  assert logits.dtype == jnp.float32
  assert inter["pre_logits"].dtype == jnp.bfloat16
  ref, _ = models.create(name, num_classes=5, **SMALL_KWARGS[name]).apply(variables, x)
  np.testing.assert_allclose(logits, ref, rtol=0.1, atol=0.1 * float(jnp.abs(ref).max()))


@pytest.mark.parametrize("name, count", [
    ("resnet18", 11_689_512), ("resnet50", 25_557_032), ("vgg16", 138_357_544),
    ("alexnet", 61_100_840)])
def test_parameter_count_matches_torchvision(name, count):
  model = models.create(name, num_classes=1000)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(
      (1, 64, 64, 3), jnp.float32))
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"])) == count
