"""Photometric augmentation: torchvision's colour kernels (`adjust_brightness`, `_contrast`,
`_saturation`, `_hue`) on float [H, W, 3] images in [0, 1], and SSD's random photometric
distortion, which changes the image only (labels untouched)."""
from __future__ import annotations

import numpy as np

from jaxcv.data.geometry import Example, check_example, check_prob
from jaxcv.data.geometry import random_transform as _random

def _rgb_to_gray(img: np.ndarray) -> np.ndarray:
  return img[..., 0] * 0.2989 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
  """torchvision `adjust_brightness` on float [H, W, 3]: clip(img * factor, 0, 1)."""
  return np.clip(img * np.float32(factor), 0, 1)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
  """torchvision `adjust_contrast`: blend with the mean of the grayscale image."""
  mean = _rgb_to_gray(img).mean(dtype=np.float32)
  return np.clip(img * np.float32(factor) + mean * np.float32(1 - factor), 0, 1)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
  """torchvision `adjust_saturation`: blend with the grayscale image."""
  gray = _rgb_to_gray(img)[..., None]
  return np.clip(img * np.float32(factor) + gray * np.float32(1 - factor), 0, 1)


def adjust_hue(img: np.ndarray, factor: float) -> np.ndarray:
  """torchvision `adjust_hue`: shift the HSV hue by `factor` in [-0.5, 0.5] (turns)."""
  if not -0.5 <= factor <= 0.5:
    raise ValueError(f"hue factor must be in [-0.5, 0.5], got {factor}")
  r, g, b = img[..., 0], img[..., 1], img[..., 2]
  maxc, minc = img.max(-1), img.min(-1)
  eqc = maxc == minc
  crange = maxc - minc
  s = crange / np.where(eqc, 1, maxc)
  div = np.where(eqc, 1, crange)
  rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
  neq_r, eq_g = maxc != r, maxc == g
  hue = (bc - gc) * ~neq_r + (2.0 + rc - bc) * (eq_g & neq_r) + (4.0 + gc - rc) * (neq_r & ~eq_g)
  hue = np.fmod(hue / 6.0 + 1.0, 1.0)
  hue = np.remainder(hue + np.float32(factor), 1.0)
  h6 = hue * 6
  i = np.floor(h6)
  f = h6 - i
  i = np.remainder(i.astype(np.int32), 6)
  v = maxc
  q = np.clip((1.0 - s * f) * v, 0, 1)
  t = np.clip((s * f + (1.0 - s)) * v, 0, 1)
  p = np.clip((1.0 - s) * v, 0, 1)
  vpqt = np.stack([v, p, q, t], axis=-1)
  select = np.array([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])[:, i]
  return np.take_along_axis(vpqt, np.moveaxis(select, 0, -1), axis=-1).astype(img.dtype)


def photometric_distort(brightness=(0.875, 1.125), contrast=(0.5, 1.5), saturation=(0.5, 1.5),
                        hue=(-0.05, 0.05), p: float = 0.5):
  """Random transform: SSD photometric distortion, torchvision
  `transforms.v2.RandomPhotometricDistort` semantics, on `image` only (labels untouched).

  Each of brightness, contrast, saturation and hue factors is drawn (uniform in its range)
  with probability `p`; contrast goes before saturation/hue or after them (probability 1/2);
  then a random channel permutation with probability `p`. Every step clips to [0, 1], so the
  image stays in [0, 1]. The draws come from `rng` (not torch).
  """
  check_prob("p", p)
  for name, (lo, hi) in (("brightness", brightness), ("contrast", contrast),
                         ("saturation", saturation)):
    if not 0 <= lo <= hi:
      raise ValueError(f"{name} range must satisfy 0 <= min <= max, got {(lo, hi)}")
  if not -0.5 <= hue[0] <= hue[1] <= 0.5:
    raise ValueError(f"hue range must satisfy -0.5 <= min <= max <= 0.5, got {tuple(hue)}")

  @_random
  def fn(example: Example, rng: np.random.Generator) -> Example:
    check_example(example)
    factors = {}
    for name, (lo, hi) in (("brightness", brightness), ("contrast", contrast),
                           ("saturation", saturation), ("hue", hue)):
      factors[name] = rng.uniform(lo, hi) if rng.random() < p else None
    contrast_before = rng.random() < 0.5
    perm = rng.permutation(3) if rng.random() < p else None
    image = np.asarray(example["image"])
    img = image.astype(np.float32)
    if factors["brightness"] is not None:
      img = adjust_brightness(img, factors["brightness"])
    if factors["contrast"] is not None and contrast_before:
      img = adjust_contrast(img, factors["contrast"])
    if factors["saturation"] is not None:
      img = adjust_saturation(img, factors["saturation"])
    if factors["hue"] is not None:
      img = adjust_hue(img, factors["hue"])
    if factors["contrast"] is not None and not contrast_before:
      img = adjust_contrast(img, factors["contrast"])
    if perm is not None:
      img = img[..., perm]
    out = dict(example)
    out["image"] = np.clip(img, 0, 1).astype(image.dtype)
    return out

  return fn
