"""SegNet and HRNet: output shapes, SegNet's pooling-index round trip and VGG-16 encoder,
parameter counts (an independent count of the official HRNet layout, and the published
HRNetV2-W48 figure), bad input, a train step on 8 simulated devices equal to one device, and
a few dozen steps on a fixed small batch cutting the loss at least in half.

Tiny versions at 32x32 keep compile times short on a 2-core CPU: one jitted train step per
model, reused by the learning and the 8-device tests.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcv import data, models
from jaxcv.models import hrnet, segnet
from jaxcv.ops.losses import pixel_softmax_cross_entropy

# XLA's backend optimisation level 0 halves the compile time of these many-layered tiny
# models on CPU (HRNet train step: 52 -> 23 s on a loaded 2-core machine); they run ~1 s.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
SIZE, BATCH, CLASSES = 32, 8, 6  # shapes' semantic labels: 6 classes
TINY = {
    "segnet": {"width": 4},  # VGG-16 layout (13 + 13 convs, 5 pools), 4..32 channels
    "hrnet_w18": {"width": 4, "stem_width": 8, "num_modules": (1, 1, 1, 1),
                  "num_blocks": (1, 1, 1, 1)},
}


def random_variables(model, x, seed=0):
  """Variables shaped like `model.init`'s, drawn in NumPy (fan-in normal kernels, unit BN)."""
  rng = np.random.default_rng(seed)

  def draw(path, s):
    leaf = path[-1].key
    if leaf == "kernel":
      return rng.normal(0, (2 / np.prod(s.shape[:-1])) ** 0.5, s.shape).astype(np.float32)
    if leaf in ("scale", "var"):
      return np.ones(s.shape, np.float32)
    return np.zeros(s.shape, np.float32)

  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.cache
def tiny(name):
  model = models.create(name, num_classes=CLASSES, **TINY[name])
  x = jnp.zeros((BATCH, SIZE, SIZE, 3))
  return model, random_variables(model, x)


@functools.cache
def shapes_batch():
  ds = data.load("shapes", "train", image_size=SIZE, keys=("semantic",),
                 split_sizes={"train": BATCH, "validation": 8, "test": 8}, seed=0)
  b = ds.get(np.arange(BATCH))
  return b["image"], b["semantic"]


def make_step(model):
  # SGD, not Adam: its first update is proportional to the gradient, so one step on 8
  # devices can be compared with one device (Adam's first step is ~lr * sign(g)).
  opt = optax.sgd(0.05, momentum=0.9)

  def loss_fn(params, batch_stats, image, labels):
    (logits, _), updates = model.apply({"params": params, "batch_stats": batch_stats}, image,
                                       train=True, mutable=["batch_stats"])
    return pixel_softmax_cross_entropy(logits, labels), updates["batch_stats"]

  @jit
  def step(params, batch_stats, opt_state, image, labels):
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, image, labels)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), stats, opt_state, loss

  return opt, step


@functools.cache
def trained(name, steps=30):
  """Runs `steps` train steps on one fixed batch (one device); returns the losses, the state
  after the first step, and the step function and starting state for reuse."""
  model, variables = tiny(name)
  opt, step = make_step(model)
  image, labels = shapes_batch()
  one = jax.devices()[0]
  params, stats = jax.device_put((variables["params"], variables["batch_stats"]), one)
  state = (params, stats, opt.init(params))
  start = state
  losses, first = [], None
  for _ in range(steps):
    *state, loss = step(*state, jax.device_put(image, one), jax.device_put(labels, one))
    losses.append(float(loss))
    if first is None:
      first = jax.device_get(state)
  return np.array(losses), first, step, start


# ---------------------------------------------------------------------------------------------
# Registry, shapes, intermediates.

def test_registered():
  assert {"segnet", "hrnet_w18", "hrnet_w32"} <= set(models.names())


@pytest.mark.parametrize("name", sorted(TINY))
def test_output_shapes_and_float32_logits(name):
  model, variables = tiny(name)
  x = jnp.zeros((2, SIZE, SIZE, 3))
  (logits, inter) = jax.eval_shape(model.apply, variables, x)
  assert logits.shape == (2, SIZE, SIZE, CLASSES) and logits.dtype == jnp.float32
  (logits16, _) = jax.eval_shape(functools.partial(
      models.create(name, num_classes=CLASSES, dtype=jnp.bfloat16, **TINY[name]).apply),
      variables, x)
  assert logits16.dtype == jnp.float32
  if name == "segnet":
    assert set(variables["params"]) == {f"stage{i}" for i in range(1, 6)} | {
        f"decoder{i}" for i in range(1, 6)} | {"head"}
    for i in range(1, 6):
      assert inter[f"stage{i}"].shape == (2, SIZE >> i, SIZE >> i, min(4 << (i - 1), 32))
      assert inter[f"decoder{i}"].shape[:3] == (2, SIZE >> (i - 1), SIZE >> (i - 1))
    assert inter["pre_logits"].shape == (2, SIZE, SIZE, 4)
  else:
    assert set(variables["params"]) == {"stem", "stage1", "stage2", "stage3", "stage4",
                                        "neck", "head"}
    assert inter["stem"].shape == (2, 8, 8, 8) and inter["stage1"].shape == (2, 8, 8, 32)
    for k in (2, 3, 4):
      assert [b.shape for b in inter[f"stage{k}"]] == [
          (2, 8 >> i, 8 >> i, 4 << i) for i in range(k)]
    assert inter["pre_logits"].shape == (2, 8, 8, 4 * 15)


def test_hrnet_takes_sizes_not_divisible_by_32():
  # As the official code (LIP at 473x473): strides round up, fusion resizes to exact sizes.
  model, variables = tiny("hrnet_w18")
  logits, inter = jax.eval_shape(model.apply, variables, jnp.zeros((1, 36, 44, 3)))
  assert logits.shape == (1, 36, 44, CLASSES)
  assert [b.shape[1:3] for b in inter["stage4"]] == [(9, 11), (5, 6), (3, 3), (2, 2)]


# ---------------------------------------------------------------------------------------------
# SegNet: pooling indices and the VGG-16 encoder.

def test_segnet_unpools_to_the_encoder_argmax_positions():
  model, variables = tiny("segnet")
  x = jax.random.uniform(jax.random.key(1), (2, SIZE, SIZE, 3))
  _, sown = jit(functools.partial(model.apply, mutable=["intermediates"]))(variables, x)
  sown = jax.device_get(sown["intermediates"])
  for i in range(1, 6):
    enc, = sown[f"encoder{i}"]      # [B, H, W, C] before pool i
    dec, = sown[f"decoded{i}"]      # [B, H/2, W/2, C] what unpool i scatters
    unpooled, = sown[f"unpooled{i}"]
    b, h, w, c = enc.shape
    assert dec.shape == (b, h // 2, w // 2, c) and unpooled.shape == enc.shape
    # NumPy: each value goes to the first maximum (row-major) of its 2x2 window.
    windows = enc.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
    first = windows.reshape(b, h // 2, w // 2, c, 4).argmax(-1)
    expect = np.zeros_like(enc)
    bi, yi, xi, ci = np.indices(first.shape)
    expect[bi, 2 * yi + first // 2, 2 * xi + first % 2, ci] = dec
    np.testing.assert_array_equal(unpooled, expect, err_msg=f"stage {i}")
    if i == 5:  # the deepest unpool takes the encoder's own pooled maxima
      np.testing.assert_array_equal(dec, windows.max(axis=(-2, -1)))
  assert np.count_nonzero(sown["unpooled1"][0]) > 0


def test_segnet_encoder_is_vgg16_bn():
  # vgg16_bn parameters load into SegNet's encoder and give the same stage outputs.
  vgg = models.create("vgg16_bn", num_classes=3, width=4, hidden=8)
  seg, seg_vars = tiny("segnet")
  x = jax.random.uniform(jax.random.key(2), (2, SIZE, SIZE, 3))
  vgg_vars = random_variables(vgg, x, seed=3)
  for col in ("params", "batch_stats"):
    for i in range(1, 6):
      assert jax.tree.structure(vgg_vars[col][f"stage{i}"]) == jax.tree.structure(
          seg_vars[col][f"stage{i}"])
  rng = np.random.default_rng(4)
  stats = jax.tree.map(lambda a: rng.uniform(0.5, 1.5, a.shape).astype(np.float32),
                       vgg_vars["batch_stats"])  # non-trivial running stats
  vgg_vars = {"params": vgg_vars["params"], "batch_stats": stats}
  merged = {col: {**seg_vars[col], **{f"stage{i}": vgg_vars[col][f"stage{i}"]
                                      for i in range(1, 6)}} for col in vgg_vars}
  _, vgg_inter = jit(vgg.apply)(vgg_vars, x)
  _, seg_inter = jit(seg.apply)(merged, x)
  for i in range(1, 6):
    np.testing.assert_allclose(seg_inter[f"stage{i}"], vgg_inter[f"stage{i}"], rtol=1e-5,
                               atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Parameter counts.

def n_params(model, size=64):
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))


def conv(cin, cout, k, bias=False):
  return cin * cout * k * k + (cout if bias else 0)


def bn(c):
  return 2 * c  # scale and bias (running stats are not parameters)


def official_hrnet_count(w, num_classes, stem=64, modules=(1, 1, 4, 3), blocks=4):
  """Parameters of HRNet-Semantic-Segmentation's seg_hrnet.py, counted from its layout."""
  def basic(cin, c):
    down = conv(cin, c, 1) + bn(c) if cin != c else 0
    return conv(cin, c, 3) + bn(c) + conv(c, c, 3) + bn(c) + down

  def bottleneck(cin, c):
    down = conv(cin, 4 * c, 1) + bn(4 * c) if cin != 4 * c else 0
    return (conv(cin, c, 1) + bn(c) + conv(c, c, 3) + bn(c) + conv(c, 4 * c, 1) + bn(4 * c)
            + down)

  def transition(pre, cur):  # _make_transition_layer
    n = 0
    for i, c in enumerate(cur):
      if i < len(pre):
        n += conv(pre[i], c, 3) + bn(c) if pre[i] != c else 0
      else:
        for j in range(i + 1 - len(pre)):
          cout = c if j == i - len(pre) else pre[-1]
          n += conv(pre[-1], cout, 3) + bn(cout)
    return n

  def module(ch):  # HighResolutionModule: branches + _make_fuse_layers
    n = sum(blocks * basic(c, c) for c in ch)
    for i in range(len(ch)):
      for j in range(len(ch)):
        if j > i:
          n += conv(ch[j], ch[i], 1) + bn(ch[i])
        for k in range(i - j):
          cout = ch[i] if k == i - j - 1 else ch[j]
          n += conv(ch[j], cout, 3) + bn(cout)
    return n

  n = conv(3, stem, 3) + bn(stem) + conv(stem, stem, 3) + bn(stem)
  n += bottleneck(stem, stem) + (blocks - 1) * bottleneck(4 * stem, stem)
  pre = [4 * stem]
  for k in (2, 3, 4):
    ch = [w * 2**i for i in range(k)]
    n += transition(pre, ch) + modules[k - 1] * module(ch)
    pre = ch
  c = 15 * w
  return n + conv(c, c, 1, bias=True) + bn(c) + conv(c, num_classes, 1, bias=True)


@pytest.mark.parametrize("width", [18, 32, 48])
def test_hrnet_parameter_count_matches_the_official_layout(width):
  count = n_params(hrnet.HRNet(width=width, num_classes=19))
  assert count == official_hrnet_count(width, 19)
  if width == 48:  # published: HRNetV2-W48, Cityscapes (19 classes), 65.9M parameters
    assert round(count / 1e6, 1) == 65.9
  if width == 18:  # HRNetV2-W18: 9.6M
    assert round(count / 1e6, 1) == 9.6


def test_segnet_parameter_count():
  # VGG-16 encoder (13 convs + BN) and the mirrored decoder whose last conv is the classifier.
  widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
  enc = sum(conv(cin, c, 3, True) + bn(c) for cin, c in zip([3] + widths[:-1], widths))
  dec_out = [512, 512, 512, 512, 512, 256, 256, 256, 128, 128, 64, 64]
  dec_in = [512] + dec_out[:-1]
  dec = sum(conv(cin, c, 3, True) + bn(c) for cin, c in zip(dec_in, dec_out))
  expect = enc + dec + conv(64, 11, 3, True)
  assert n_params(segnet.SegNet(num_classes=11)) == expect == 29_449_355


# ---------------------------------------------------------------------------------------------
# Bad input.

@pytest.mark.parametrize("name, shape, match", [
    ("segnet", (1, 48, 32, 3), r"divisible by 32.*48x32"),
    ("segnet", (1, 32, 32, 1), r"\[B, H, W, 3\].*\(1, 32, 32, 1\)"),
    ("segnet", (32, 32, 3), r"\[B, H, W, 3\]"),
    ("hrnet_w18", (1, 24, 64, 3), r"at least 32x32.*24x64"),
    ("hrnet_w18", (1, 3, 32, 32), r"\[B, H, W, 3\].*\(1, 3, 32, 32\)"),
])
def test_bad_input_is_a_clear_error(name, shape, match):
  model = models.create(name, num_classes=CLASSES, **TINY[name])
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))


@pytest.mark.parametrize("name, kwargs, match", [
    ("segnet", {"stage_sizes": (2, 2, 3, 3, 3, 3)}, "stage_sizes"),
    ("segnet", {"stage_sizes": (2, 0)}, "stage_sizes"),
    ("segnet", {"frozen_stages": ("encoder1",)}, r"\['encoder1'\].*stage1"),
    ("hrnet_w18", {"num_modules": (2, 1, 1, 1)}, "num_modules"),
    ("hrnet_w18", {"num_blocks": (1, 1, 1)}, "num_blocks"),
    ("hrnet_w18", {"frozen_stages": ("layer1",)}, r"\['layer1'\].*stem"),
])
def test_bad_configuration_is_a_clear_error(name, kwargs, match):
  model = models.create(name, num_classes=CLASSES, **{**TINY[name], **kwargs})
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))


def test_segnet_with_fewer_stages_takes_smaller_multiples():
  model = segnet.SegNet(stage_sizes=(1, 2), num_classes=3, width=8)
  logits, inter = jax.eval_shape(model.init_with_output, jax.random.key(0),
                                 jnp.zeros((1, 12, 20, 3)))[0]
  assert logits.shape == (1, 12, 20, 3) and set(inter) >= {"stage2", "decoder1"}


# ---------------------------------------------------------------------------------------------
# Training: a few dozen steps on a fixed batch, and one step on 8 devices.

@pytest.mark.parametrize("name", sorted(TINY))
def test_a_few_dozen_steps_cut_the_loss_in_half(name):
  losses, *_ = trained(name)
  print(f"{name}: loss {losses[0]:.4f} -> {losses[-1]:.4f} in {len(losses)} steps")
  assert np.all(np.isfinite(losses))
  assert losses[-1] <= 0.5 * losses[0], losses


@pytest.mark.parametrize("name", sorted(TINY))
def test_train_step_on_8_devices_equals_one_device(name):
  assert jax.device_count() == 8, "conftest sets 8 simulated devices"
  _, first, step, start = trained(name)
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  rows, rep = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  image, labels = shapes_batch()
  state = jax.device_put(jax.device_get(start), rep)
  *out, loss = step(*state, jax.device_put(image, rows), jax.device_put(labels, rows))
  params = out[0]
  assert len(jax.tree.leaves(params)[0].sharding.device_set) == 8
  # The first one-device step's loss, params, BN stats (statistics over the whole batch) and
  # momentum. Each leaf's change is compared by norm, `|d8 - d1| <= 1e-2 |d1|`: the two sum
  # in different orders, and in SegNet a rounding-level difference can move a max pool's
  # choice between near-equal values, sending that pixel's gradient elsewhere.
  losses, *_ = trained(name)
  np.testing.assert_allclose(float(loss), losses[0], rtol=1e-5)
  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(out))[0]
  before = jax.tree.leaves(jax.device_get(start))
  worst, total = 0.0, [0.0, 0.0]
  for (path, a), b, a0 in zip(flat, jax.tree.leaves(first), before):
    d8, d1 = np.asarray(a, np.float64) - a0, np.asarray(b, np.float64) - a0
    err, norm = np.linalg.norm(d8 - d1), np.linalg.norm(d1)
    total[0] += err**2
    total[1] += norm**2
    if norm > 1e-5:  # a conv bias before BN has a zero gradient: only rounding noise
      worst = max(worst, err / norm)
    assert err <= 1e-2 * norm + 1e-6, (jax.tree_util.keystr(path), err, norm)
  assert total[0] <= 25e-6 * total[1]  # |d8 - d1| <= 5e-3 |d1| over all leaves
  print(f"{name}: 8 devices vs 1 after one step: |d8 - d1| / |d1| worst leaf {worst:.1e}, "
        f"all leaves {(total[0] / total[1]) ** 0.5:.1e}; loss {float(loss):.6f} vs "
        f"{losses[0]:.6f}")
