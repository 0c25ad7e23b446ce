"""jaxcv.data.augment against torchvision: GeneralizedRCNNTransform's resize (image, boxes,
keypoints, padding to 32) and the photometric kernels of transforms.v2.functional."""
from __future__ import annotations

import numpy as np
import pytest
from torch_reference import import_torchvision

from jaxcv.data import augment as A

torch, torchvision = import_torchvision()
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.transforms.v2 import functional as TF


@pytest.mark.parametrize("hw,min_size,max_size", [((48, 64), 40, 60), ((37, 53), 80, 100),
                                                  ((64, 40), 50, 300), ((33, 33), 64, 64),
                                                  ((90, 70), 45, 1000), ((213, 320), 400, 667)])
def test_resize_keep_aspect_vs_generalized_rcnn_transform(hw, min_size, max_size):
  h, w = hw
  rng = np.random.default_rng(h * w)
  image = rng.random((h, w, 3), dtype=np.float32)
  corners = rng.uniform(0, [w, h, w, h], size=(6, 4)).astype(np.float32)
  boxes = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]),
                          np.maximum(corners[:, :2], corners[:, 2:])], 1)
  kps = np.concatenate([rng.uniform(0, [w, h], size=(6, 3, 2)), np.full((6, 3, 1), 2.0)],
                       -1).astype(np.float32)
  ex = {"image": image, "boxes": boxes, "keypoints": kps,
        "classes": np.arange(1, 7, dtype=np.int32)}
  out = A.resize_keep_aspect(min_size, max_size, 32)(ex)
  t = GeneralizedRCNNTransform(min_size, max_size, image_mean=[0.0] * 3, image_std=[1.0] * 3)
  t.eval()
  target = {"boxes": torch.from_numpy(boxes), "keypoints": torch.from_numpy(kps)}
  images, targets = t([torch.from_numpy(image).permute(2, 0, 1)], [target])
  ref = images.tensors[0].permute(1, 2, 0).numpy()
  assert out["image"].shape == ref.shape
  err = np.abs(out["image"] - ref).max()
  assert err <= 1e-5, err
  np.testing.assert_allclose(out["boxes"], targets[0]["boxes"].numpy(), atol=1e-4)
  np.testing.assert_allclose(out["keypoints"][..., :2], targets[0]["keypoints"][..., :2].numpy(),
                             atol=1e-4)
  nh, nw = images.image_sizes[0]
  assert out["image"][nh:].max(initial=0) == 0 and out["image"][:, nw:].max(initial=0) == 0


def test_photometric_kernels_vs_torchvision():
  rng = np.random.default_rng(0)
  errs = {}
  for i in range(20):
    img = rng.random((17, 23, 3), dtype=np.float32)
    if i % 4 == 0:
      img[3:6] = img[3:6, :, :1]  # gray pixels (hue undefined)
    timg = torch.from_numpy(img).permute(2, 0, 1)
    for name, ours, theirs, lo, hi in [
        ("brightness", A.adjust_brightness, TF.adjust_brightness, 0.5, 1.5),
        ("contrast", A.adjust_contrast, TF.adjust_contrast, 0.3, 1.7),
        ("saturation", A.adjust_saturation, TF.adjust_saturation, 0.0, 2.0),
        ("hue", A.adjust_hue, TF.adjust_hue, -0.5, 0.5)]:
      f = float(rng.uniform(lo, hi))
      ref = theirs(timg, f).permute(1, 2, 0).numpy()
      errs[name] = max(errs.get(name, 0.0), float(np.abs(ours(img, f) - ref).max()))
  assert max(errs.values()) <= 1e-5, errs


def test_photometric_distort_pipeline_vs_torchvision_kernels():
  """The whole distortion with the factors it drew, replayed with torchvision's kernels."""
  rng0 = np.random.default_rng(5)
  img = rng0.random((16, 20, 3), dtype=np.float32)
  t = A.photometric_distort(p=0.5)
  for seed in range(20):
    out = t({"image": img}, np.random.default_rng(seed))["image"]
    rng = np.random.default_rng(seed)  # replay the draws in the documented order
    f = {}
    for name, (lo, hi) in (("b", (0.875, 1.125)), ("c", (0.5, 1.5)), ("s", (0.5, 1.5)),
                           ("h", (-0.05, 0.05))):
      f[name] = rng.uniform(lo, hi) if rng.random() < 0.5 else None
    before = rng.random() < 0.5
    perm = rng.permutation(3) if rng.random() < 0.5 else None
    x = torch.from_numpy(img).permute(2, 0, 1)
    if f["b"] is not None:
      x = TF.adjust_brightness(x, f["b"])
    if f["c"] is not None and before:
      x = TF.adjust_contrast(x, f["c"])
    if f["s"] is not None:
      x = TF.adjust_saturation(x, f["s"])
    if f["h"] is not None:
      x = TF.adjust_hue(x, f["h"])
    if f["c"] is not None and not before:
      x = TF.adjust_contrast(x, f["c"])
    if perm is not None:
      x = TF.permute_channels(x, list(perm))
    assert np.abs(out - x.permute(1, 2, 0).numpy()).max() <= 1e-5
