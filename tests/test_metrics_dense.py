"""jaxcv.metrics.dense: host depth / normal metrics over pixel regions, against analytic values."""
import numpy as np
import pytest

from jaxcv.metrics import dense


def test_depth_metrics_analytic_with_and_without_mask():
  rng = np.random.default_rng(0)
  gt = rng.uniform(1, 5, (3, 8, 8))
  pred = gt * 1.1
  pred[0, :4] = gt[0, :4] * 2.0  # a region with abs_rel 1 and delta1 0
  mask = np.zeros_like(gt, bool)
  mask[0, :4] = True
  m = dense.depth_metrics(pred, gt, mask)
  assert m["count"] == 32
  np.testing.assert_allclose([m["abs_rel"], m["delta1"]], [1.0, 0.0])
  np.testing.assert_allclose(m["rmse"], np.sqrt(np.mean(gt[0, :4] ** 2)))
  m = dense.depth_metrics(pred, gt, ~mask)
  np.testing.assert_allclose([m["abs_rel"], m["delta1"]], [0.1, 1.0])
  # invalid ground truth (0, NaN) is not counted
  gt2 = gt.copy()
  gt2[1, 0, 0], gt2[1, 0, 1] = 0.0, np.nan
  assert dense.depth_metrics(pred, gt2)["count"] == gt.size - 2
  assert dense.depth_metrics(pred, gt, np.zeros_like(mask))["count"] == 0


def test_normal_metrics_analytic_angles():
  h = w = 4
  gt = np.zeros((h, w, 3))
  gt[..., 2] = -1.0
  angles = np.linspace(5, 40, h * w).reshape(h, w)
  t = np.radians(angles)
  pred = np.stack([np.sin(t), np.zeros_like(t), -np.cos(t)], -1) * 3.0  # any length
  m = dense.normal_metrics(pred, gt)
  np.testing.assert_allclose(m["angle_mean"], angles.mean(), atol=1e-9)
  np.testing.assert_allclose(m["angle_median"], np.sort(angles.ravel())[(h * w - 1) // 2])
  np.testing.assert_allclose(m["within_11_25"], np.mean(angles < 11.25))
  np.testing.assert_allclose(m["within_30"], np.mean(angles < 30))
  mask = angles > 20
  np.testing.assert_allclose(dense.normal_metrics(pred, gt, mask)["angle_mean"],
                             angles[mask].mean(), atol=1e-9)
  gt[0, 0] = 0.0  # "no normal"
  assert dense.normal_metrics(pred, gt)["count"] == h * w - 1


def test_per_pixel_mean_in_chunks_and_masked():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(10, 4, 5, 3))
  np.testing.assert_allclose(dense.per_pixel_mean([x[:3], x[3:7], x[7:]]), x.mean(0))
  m = rng.random((10, 4, 5)) < 0.5
  m[:, 0, 0] = False
  got = dense.per_pixel_mean([x[:6], x[6:]], [m[:6], m[6:]])
  with np.errstate(invalid="ignore"):  # pixel (0, 0) has no sample: 0 / 0, as intended
    want = np.sum(x * m[..., None], 0) / m.sum(0)[..., None]
  np.testing.assert_allclose(got[1:], want[1:])
  assert np.isnan(got[0, 0]).all()


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match="depth prediction has shape"):
    dense.depth_metrics(np.ones((2, 3)), np.ones((3, 2)))
  with pytest.raises(ValueError, match="mask has shape"):
    dense.depth_metrics(np.ones((2, 3)), np.ones((2, 3)), np.ones((3, 3), bool))
  with pytest.raises(ValueError, match="finite and > 0"):
    dense.depth_metrics(-np.ones((2, 3)), np.ones((2, 3)))
  with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
    dense.normal_metrics(np.ones((2, 3, 2)), np.ones((2, 3, 2)))
  with pytest.raises(ValueError, match="no data"):
    dense.per_pixel_mean([])
