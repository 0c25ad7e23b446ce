"""Autoencoder and VAE (jaxcv/models/autoencoder.py, jaxcv/train/tasks/latent.py), fast.

References: NumPy formulas written here (Bernoulli and Gaussian log-likelihoods, the
Gaussian KL), a Monte-Carlo KL estimate, analytic reparameterisation gradients, and one
jitted train step on one device against the same step on 8 simulated devices. Tiny models
(width 4, 32x32 digits) so that the file stays fast.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_config
from jax.sharding import Mesh

from jaxcv import data as data_lib
from jaxcv import models
from jaxcv.models import autoencoder as ae
from jaxcv.train import Trainer, tasks
from jaxcv.train.mesh import global_batch

TINY = {"latent_dim": 4, "width": 4, "hidden": 32, "levels": 3, "image_size": 32}
CFG = {"model.width": 4, "model.hidden": 32, "model.latent_dim": 4, "batch_size": 8,
       "eval_batch_size": 8, "progress_bar": False}


def digits(n=8, split="train"):
  return np.asarray(data_lib.load("digits", split).arrays["image"][:n])


def make(name="vae", **kw):
  m = models.create(name, num_classes=kw.pop("num_classes", 1), **dict(TINY, **kw))
  return m, m.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)))


def task_for(name, **over):
  c = load_config(f"{name}_digits", **dict(CFG, **over))
  return tasks.get(name)(c, data_lib.load("digits", "train"))


# --- NumPy references -----------------------------------------------------------------------

def np_bernoulli_ll(logits, x):
  p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  x = x.astype(np.float64)
  return (x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(-1)


def np_gaussian_ll(mean, x, std):
  mean, x = mean.astype(np.float64), x.astype(np.float64)
  d = -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
  return d.reshape(len(x), -1).sum(-1)


def np_kl(mean, logvar):
  mean, logvar = mean.astype(np.float64), logvar.astype(np.float64)
  return 0.5 * (mean ** 2 + np.exp(logvar) - 1 - logvar).sum(-1)


def draw(model, variables, stream, seed, shape):
  """N(0, I) noise the model's first draw from rng `stream` seeded `seed` gets (Flax folds
  the module path and a call counter into the key: the root module's first call here)."""
  return model.apply(variables, method=lambda mdl: jax.random.normal(mdl.make_rng(stream),
                                                                     shape),
                     rngs={stream: jax.random.key(seed)})


# --- models ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["autoencoder", "vae"])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(name, channels):
  m, v = make(name, num_classes=channels)
  x = jnp.asarray(digits(3))
  out, inter = m.apply(v, x)
  assert out.shape == (3, 32, 32, channels) and out.dtype == jnp.float32
  assert inter["z"].shape == (3, 4)
  assert inter["stage1"].shape == (3, 16, 16, 8) and inter["stage3"].shape == (3, 4, 4, 16)
  assert set(v["params"]) == {"encoder", "latent", "decoder", "head"}
  if name == "vae":
    assert inter["mean"].shape == inter["logvar"].shape == (3, 4)
    # evaluation without an rng: z is the posterior mean
    np.testing.assert_array_equal(inter["z"], inter["mean"])
  else:
    assert "mean" not in inter
  assert m.apply(v, inter["z"], method=m.decode).shape == out.shape


def test_gray_model_sees_the_channel_mean():
  m, v = make("autoencoder")
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 32, 32, 3)), jnp.float32)
  gray = jnp.repeat(jnp.mean(x, -1, keepdims=True), 3, -1)
  np.testing.assert_allclose(m.apply(v, x)[0], m.apply(v, gray)[0], atol=1e-5)


def test_vae_noise_streams():
  m, v = make("vae")
  x = jnp.asarray(digits(4))
  eps = jax.random.normal(jax.random.key(3), (4, 4))
  out, inter = m.apply(v, x, eps=eps)
  z_np = np.asarray(inter["mean"]) + np.exp(0.5 * np.asarray(inter["logvar"])) * np.asarray(eps)
  np.testing.assert_allclose(inter["z"], z_np, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out, m.apply(v, inter["z"], method=m.decode), atol=1e-6)
  # training draws eps from the loop's `dropout` stream; a `sample` stream takes precedence
  _, a = m.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)})
  _, b = m.apply(v, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert np.abs(np.asarray(a["eps"]) - np.asarray(b["eps"])).min() > 0
  np.testing.assert_array_equal(a["eps"], draw(m, v, "dropout", 1, (4, 4)))
  np.testing.assert_allclose(a["z"], a["mean"] + np.exp(0.5 * a["logvar"]) * a["eps"],
                             rtol=1e-5, atol=1e-6)
  _, s = m.apply(v, x, train=True, rngs={"sample": jax.random.key(5),
                                         "dropout": jax.random.key(1)})
  np.testing.assert_array_equal(s["eps"], draw(m, v, "sample", 5, (4, 4)))
  _, e = m.apply(v, x, rngs={"sample": jax.random.key(5)})  # evaluation with a sample stream
  np.testing.assert_array_equal(e["eps"], s["eps"])


def test_sampling_and_interpolation():
  m, v = make("vae")
  s = ae.sample_prior(m, v, jax.random.key(0), 5)
  assert s.shape == (5, 32, 32, 1) and float(s.min()) >= 0 and float(s.max()) <= 1
  z = draw(m, v, "sample", 0, (5, 4))  # the draw `sample` makes from this key
  assert abs(float(jnp.std(z)) - 1) < 0.5
  np.testing.assert_allclose(s, jax.nn.sigmoid(m.apply(v, z, method=m.decode)), atol=1e-6)
  x = jnp.asarray(digits(6))
  xa, xb = x[:3], x[3:]
  path = ae.interpolate(m, v, xa, xb, 5)
  assert path.shape == (3, 5, 32, 32, 1)
  ma, _ = m.apply(v, xa, method=m.encode)
  mb, _ = m.apply(v, xb, method=m.encode)
  for i, t in enumerate(np.linspace(0, 1, 5)):
    want = jax.nn.sigmoid(m.apply(v, (1 - t) * ma + t * mb, method=m.decode))
    np.testing.assert_allclose(path[:, i], want, atol=1e-5)
  # the ends are the reconstructions at the posterior means
  np.testing.assert_allclose(path[:, 0], jax.nn.sigmoid(m.apply(v, xa)[0]), atol=1e-5)
  a, va = make("autoencoder")
  assert ae.interpolate(a, va, xa, xb, 3).shape == (3, 3, 32, 32, 1)
  with pytest.raises(ValueError, match="no prior"):
    ae.sample_prior(a, va, jax.random.key(0), 2)


def test_bad_input_is_a_clear_error():
  m, v = make("vae")
  with pytest.raises(ValueError, match="needs 32x32 input"):
    m.apply(v, jnp.zeros((2, 28, 28, 3)))
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    m.apply(v, jnp.zeros((2, 32, 32, 1)))
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    m.apply(v, jnp.zeros((32, 32, 3)))
  with pytest.raises(ValueError, match=r"latent codes must be \[B, 4\]"):
    m.apply(v, jnp.zeros((2, 5)), method=m.decode)
  with pytest.raises(ValueError, match="eps must have shape"):
    m.apply(v, jnp.zeros((2, 32, 32, 3)), eps=jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match="not divisible by 2\\*\\*levels"):
    make("vae", image_size=36)
  with pytest.raises(ValueError, match="1 \\(gray\\) or 3"):
    make("vae", num_classes=2)
  with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
    make("vae", likelihood="poisson")
  with pytest.raises(ValueError, match="frozen_stages"):
    make("vae", frozen_stages=("backbone",))
  with pytest.raises(ValueError, match="num_steps must be >= 2"):
    ae.interpolate(m, v, jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32, 3)), 1)


# --- likelihoods, KL, ELBO ------------------------------------------------------------------

def test_log_likelihoods_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(scale=3, size=(3, 32, 32, 1)).astype(np.float32)
  x = rng.uniform(size=(3, 32, 32, 1)).astype(np.float32)
  np.testing.assert_allclose(ae.log_likelihood(logits, x, "bernoulli"),
                             np_bernoulli_ll(logits, x), rtol=1e-5)
  # extreme logits stay finite and exact (x = 1, logit -60: log p = -60)
  got = ae.log_likelihood(np.full((1, 1, 1, 1), -60.0, np.float32), np.ones((1, 1, 1, 1)))
  np.testing.assert_allclose(got, [-60.0], rtol=1e-6)
  for std in (0.1, 1.7):
    np.testing.assert_allclose(
        ae.log_likelihood(logits, x, "gaussian", np.log(std)), np_gaussian_ll(logits, x, std),
        rtol=1e-5)
  with pytest.raises(ValueError, match="differ"):
    ae.log_likelihood(logits, x[..., :0], "bernoulli")


def test_kl_matches_formula_and_monte_carlo():
  rng = np.random.default_rng(1)
  mean = rng.normal(size=(5, 6)).astype(np.float32)
  logvar = rng.normal(scale=0.7, size=(5, 6)).astype(np.float32)
  kl = np.asarray(ae.gaussian_kl(mean, logvar))
  np.testing.assert_allclose(kl, np_kl(mean, logvar), rtol=1e-5)
  # Monte Carlo: KL = E_q[log q(z) - log p(z)], z ~ q, 200k draws per row
  n = 200_000
  std = np.exp(0.5 * logvar.astype(np.float64))
  for i in range(5):
    z = mean[i] + std[i] * rng.normal(size=(n, 6))
    log_q = (-0.5 * ((z - mean[i]) / std[i]) ** 2 - np.log(std[i])).sum(-1)
    log_p = (-0.5 * z ** 2).sum(-1)
    d = log_q - log_p
    se = d.std() / np.sqrt(n)
    assert abs(d.mean() - kl[i]) < 5 * se + 1e-4, (i, d.mean(), kl[i], se)
  np.testing.assert_allclose(ae.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3))), [0, 0])


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_eval_elbo_matches_numpy(likelihood):
  task = task_for("vae", **{"model.likelihood": likelihood, "model.gaussian_std": 0.0,
                            "eval_samples": 2})
  m, v = make("vae", likelihood=likelihood)
  if likelihood == "gaussian":  # learned log_std; move it off its init
    assert float(v["params"]["log_std"]) == 0.0
    v = {"params": dict(v["params"], log_std=jnp.float32(-1.3))}
  ds = data_lib.load("digits", "test")
  batch = {k: jnp.asarray(a[:6]) for k, a in ds.arrays.items()}
  valid = np.array([1, 1, 0, 1, 1, 0], bool)
  batch["example_valid"] = jnp.asarray(valid)
  res = task.result(jax.jit(lambda v, b: task.eval_update(m, v, b, task.eval_init()))(v, batch))
  x = np.asarray(batch["image"]).mean(-1, keepdims=True)
  lls, kls, mses = [], [], []
  for k in range(2):
    eps = np.asarray(task.eval_eps(batch, k, 4))
    mean, logvar = (np.asarray(a) for a in m.apply(v, batch["image"], method=m.encode))
    z = mean + np.exp(0.5 * logvar) * eps
    out = np.asarray(m.apply(v, jnp.asarray(z, jnp.float32), method=m.decode))
    if likelihood == "bernoulli":
      lls.append(np_bernoulli_ll(out, x))
      mu = 1 / (1 + np.exp(-out.astype(np.float64)))
    else:
      lls.append(np_gaussian_ll(out, x, np.exp(-1.3)))
      mu = out
    kls.append(np_kl(mean, logvar))
    mses.append(((mu - x) ** 2).reshape(6, -1).mean(-1))
  ll, kl, mse = np.mean(lls, 0)[valid], kls[0][valid], np.mean(mses, 0)[valid]
  np.testing.assert_allclose(res["elbo"], np.mean(ll - kl), rtol=1e-5)
  np.testing.assert_allclose(res["recon"], -np.mean(ll), rtol=1e-5)
  np.testing.assert_allclose(res["kl"], np.mean(kl), rtol=1e-5)
  np.testing.assert_allclose(res["mse"], np.mean(mse), rtol=1e-4)
  # the estimate of an image does not depend on its batch: row 3 alone gives its own value
  one = {k: a[3:4] for k, a in batch.items()}
  res1 = task.result(task.eval_update(m, v, one, task.eval_init()))
  np.testing.assert_allclose(res1["elbo"], (np.mean(lls, 0) - kls[0])[3], rtol=1e-5)


def test_vae_training_loss_is_negative_elbo_with_the_step_rng():
  task = task_for("vae")
  m, v = make("vae")
  batch = {"image": jnp.asarray(digits(4))}
  rng = jax.random.key(7)
  loss, (metrics, _) = task.loss(m, v, batch, rng, True)
  eps = np.asarray(jax.random.normal(rng, (4, 4)))
  mean, logvar = (np.asarray(a) for a in m.apply(v, batch["image"], method=m.encode))
  out = np.asarray(m.apply(v, jnp.asarray(mean + np.exp(0.5 * logvar) * eps), method=m.decode))
  ll = np_bernoulli_ll(out, np.asarray(batch["image"]).mean(-1, keepdims=True))
  want = np.mean(np_kl(mean, logvar) - ll)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["elbo"], -want, rtol=1e-5)


def test_reparameterisation_gradient():
  # d/dmu E[sum z^2] = 2 mu, d/dlogvar E[sum z^2] = exp(logvar), estimated through z's noise
  mean = jnp.asarray([0.3, -1.2, 0.8])
  logvar = jnp.asarray([-0.5, 0.2, 1.0])
  eps = jax.random.normal(jax.random.key(0), (200_000, 3))

  def f(mean, logvar):
    return jnp.mean(jnp.sum(jnp.square(ae.reparameterize(mean, logvar, eps)), -1))

  g_mean, g_logvar = jax.grad(f, argnums=(0, 1))(mean, logvar)
  np.testing.assert_allclose(g_mean, 2 * mean, atol=0.02)
  np.testing.assert_allclose(g_logvar, np.exp(logvar), rtol=0.02)
  # through the model: the loss's gradient reaches the encoder through mean and logvar
  task = task_for("vae")
  m, v = make("vae")
  batch = {"image": jnp.asarray(digits(4))}
  grads = jax.grad(lambda p: task.loss(m, {"params": p}, batch, jax.random.key(1), True)[0])(
      v["params"])
  k = np.asarray(grads["latent"]["kernel"])
  assert np.abs(k[:, :4]).sum() > 0 and np.abs(k[:, 4:]).sum() > 0  # mean and logvar columns
  assert np.abs(np.asarray(grads["encoder"]["conv0"]["kernel"])).sum() > 0


def test_bad_batches_are_rejected():
  task = task_for("vae")
  x = digits(2)
  task.check_batch({"image": x})
  with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
    task.check_batch({"image": x * 2})
  with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
    task.check_batch({"image": np.where(x > 0.5, np.nan, x)})
  with pytest.raises(ValueError, match="expected \\[B, 32, 32, 3\\]"):
    task.check_batch({"image": x[:, :28, :28]})
  with pytest.raises(ValueError, match="image_channels"):
    task_for("vae", image_channels=2)
  ae_task = task_for("autoencoder")
  a, va = make("autoencoder")
  with pytest.raises(ValueError, match="needs a variational model"):
    task.loss(a, va, {"image": jnp.asarray(x)}, jax.random.key(0), True)
  assert ae_task.num_outputs == 1


# --- training -------------------------------------------------------------------------------

def _fixed_batch_steps(name, steps, binary):
  task = task_for(name)
  m, v = make(name, width=8, hidden=64, latent_dim=8)
  x = digits(8)
  if binary:  # binary targets: the Bernoulli NLL has floor 0 (soft targets: their entropy)
    x = (x > 0.5).astype(np.float32)
  batch = {"image": jnp.asarray(x)}
  tx = optax.adam(3e-3)
  params, opt = v["params"], tx.init(v["params"])

  @jax.jit
  def step(params, opt, i):
    (loss, (metrics, _)), g = jax.value_and_grad(
        lambda p: task.loss(m, {"params": p}, batch, jax.random.fold_in(jax.random.key(0), i),
                            True), has_aux=True)(params)
    up, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, up), opt, loss, metrics

  hist = []
  for i in range(steps):
    params, opt, loss, metrics = step(params, opt, i)
    hist.append((float(loss), float(metrics["mse"])))
  return hist


def test_autoencoder_100_steps_on_a_fixed_batch_halve_the_loss():
  hist = _fixed_batch_steps("autoencoder", 100, binary=True)
  (l0, m0), (l1, m1) = hist[0], hist[-1]
  print(f"autoencoder: loss {l0:.1f} -> {l1:.1f}, mse {m0:.4f} -> {m1:.4f}")
  assert l1 <= 0.5 * l0 and m1 <= 0.5 * m0


def test_vae_100_steps_on_a_fixed_batch_halve_the_loss():
  hist = _fixed_batch_steps("vae", 100, binary=True)
  (l0, _), (l1, _) = hist[0], hist[-1]
  print(f"vae: loss {l0:.1f} -> {l1:.1f}")
  assert l1 <= 0.5 * l0


@pytest.mark.parametrize("name", ["autoencoder", "vae"])
def test_train_step_on_8_devices_under_jit(name):
  c = load_config(f"{name}_digits", **dict(CFG, **{"mesh.shape": {"data": -1}}))
  t8 = Trainer(c)
  assert t8.mesh.shape["data"] == 8
  t1 = Trainer(c, mesh=Mesh(np.asarray(jax.devices()[:1]), ("data",)))
  host = t8.train_data.get(np.arange(8))
  s8, m8 = t8.train_step(t8.new_state(), global_batch(host, t8.mesh))
  s1, m1 = t1.train_step(t1.new_state(), global_batch(host, t1.mesh))
  assert int(s8.step) == 1 and np.isfinite(float(m8["loss"]))
  np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(s8.params), jax.tree.leaves(s1.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
  # evaluation on 8 devices, with a padded row
  host = dict(t8.eval_data["test"].get(np.arange(8)), example_valid=np.arange(8) < 7)
  acc = t8.eval_step(s8, global_batch(host, t8.mesh), t8.task.eval_init())
  res = t8.task.result(acc)
  assert all(np.isfinite(v) for v in res.values())
  if name == "vae":
    assert res["elbo"] < 0 and res["kl"] >= 0


def test_draw_writes_reconstructions_samples_and_interpolations(tmp_path):
  import matplotlib.image as mpimg
  task = task_for("vae")
  m, v = make("vae")
  batch = {"image": jnp.asarray(digits(6))}
  task.draw(m, v, batch, str(tmp_path / "test_step1.png"))
  for name, shape in (("test_step1.png", (2 * 33 + 1, 6 * 33 + 1)),
                      ("test_step1_samples.png", (8 * 33 + 1, 8 * 33 + 1)),
                      ("test_step1_interpolations.png", (3 * 33 + 1, 10 * 33 + 1))):
    img = mpimg.imread(tmp_path / name)
    assert img.shape[:2] == (2 * shape[0], 2 * shape[1]), name
    assert img[..., :3].std() > 0.05, name  # not a blank picture
  a_task = task_for("autoencoder")
  a, va = make("autoencoder")
  a_task.draw(a, va, batch, str(tmp_path / "ae.png"))
  assert (tmp_path / "ae.png").exists() and not (tmp_path / "ae_samples.png").exists()
