"""Training target (slow): configs/vae_digits.py's test ELBO beats an input-ignoring baseline.

Baseline: an independent per-pixel Bernoulli fitted to the training set, p = the training
mean of each modelled (gray) pixel, clipped to [1e-6, 1 - 1e-6]; its log-likelihood of each
test image is computed with the VAE's reconstruction term (same Bernoulli family with soft
targets, same 32x32 gray pixels), here in NumPy from the data. Target: the VAE's test ELBO
(nats per image, negative) >= baseline + 0.2 * |baseline|. The run also has to leave the
reconstruction, prior-sample and interpolation PNGs of its evaluations in the workdir.
"""
import time

import numpy as np
import pytest
from conftest import load_config

from jaxcv import data as data_lib
from jaxcv.train import train_and_evaluate
from jaxcv.train.metrics_writer import read_metrics

pytestmark = pytest.mark.slow


def bernoulli_baseline_ll(train: np.ndarray, test: np.ndarray) -> float:
  """Mean over test images of sum_pixels x log p + (1 - x) log(1 - p), p = train mean."""
  p = np.clip(train.astype(np.float64).mean(0), 1e-6, 1 - 1e-6)
  x = test.astype(np.float64)
  ll = x * np.log(p) + (1 - x) * np.log(1 - p)
  return float(ll.reshape(len(x), -1).sum(-1).mean())


def test_vae_digits_elbo_beats_the_per_pixel_baseline_by_20_percent(tmp_path):
  import matplotlib.image as mpimg
  c = load_config("vae_digits", progress_bar=False, **{"mesh.shape": {"data": 1}})
  gray = {s: data_lib.load("digits", s).arrays["image"].mean(-1, keepdims=True)
          for s in ("train", "test")}
  baseline = bernoulli_baseline_ll(gray["train"], gray["test"])
  t0 = time.time()
  result = train_and_evaluate(c, tmp_path)
  wall = time.time() - t0
  test = [r for r in read_metrics(tmp_path) if r["split"] == "test"]
  elbo = test[-1]["elbo"]
  need = baseline + 0.2 * abs(baseline)
  print(f"vae_digits: test elbo {elbo:.2f} nats (recon {test[-1]['recon']:.2f}, kl "
        f"{test[-1]['kl']:.2f}) at step {test[-1]['step']}; per-pixel baseline "
        f"{baseline:.2f}, needed >= {need:.2f}; wall {wall:.1f} s")
  assert result["step"] == c.num_steps == test[-1]["step"]
  assert baseline < 0 and elbo < 0
  assert elbo >= need
  # pictures of the last evaluation (the validation split picks checkpoints and is drawn)
  pics = tmp_path / "pictures"
  stem = f"validation_step{c.num_steps}"
  for suffix in ("", "_samples", "_interpolations"):
    path = pics / f"{stem}{suffix}.png"
    assert path.exists(), sorted(p.name for p in pics.iterdir())
    img = mpimg.imread(path)[..., :3]
    assert min(img.shape[:2]) >= 64 and img.std() > 0.1, (path, img.shape, img.std())
  samples = mpimg.imread(pics / f"{stem}_samples.png")[..., 0]
  cells = [samples[2 + 66 * r:2 + 66 * r + 64, 2 + 66 * q:2 + 66 * q + 64]
           for r in range(8) for q in range(8)]
  # samples differ from each other (not one collapsed image)
  assert np.std(np.stack(cells), axis=0).mean() > 0.05
