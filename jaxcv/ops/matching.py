"""Ground-truth matching and balanced positive/negative sampling for detection training.

Why: Faster R-CNN, RetinaNet and friends label each anchor/proposal by matching it to a
ground-truth box (torchvision's `Matcher`) and train on a fixed-size random subset with a
bounded positive share (torchvision's `BalancedPositiveNegativeSampler`). torchvision does both
with data-dependent shapes; here everything has static shapes (padded ground truth with a
validity mask, a fixed number of samples with a validity mask), so a whole batch's target
assignment runs under `jax.jit` and `jax.vmap`.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2


def match(quality: jax.Array, high_threshold: float, low_threshold: float,
          allow_low_quality_matches: bool = False,
          gt_valid: jax.Array | None = None) -> jax.Array:
  """For each prediction the index of its matched ground truth, as torchvision's
  `Matcher(high_threshold, low_threshold, allow_low_quality_matches)`.

  Args:
    quality: float `[M_gt, N_pred]` match quality (usually IoU).
    high_threshold: quality >= this is a match.
    low_threshold: quality in `[low, high)` is `BETWEEN_THRESHOLDS` (-2); below `low` is
      `BELOW_LOW_THRESHOLD` (-1). Must be <= `high_threshold`.
    allow_low_quality_matches: also match, for each ground truth, every prediction reaching
      that ground truth's highest quality (ties included) to the prediction's best ground truth
      (its unthresholded argmax), as torchvision's `set_low_quality_matches_`.
    gt_valid: optional bool `[M_gt]`; False rows (padding) are never matched and take no part
      in the low-quality step. With no valid row every prediction gets -1 (torchvision raises
      on an empty matrix; its detectors then label everything background).

  Returns:
    int32 `[N_pred]`: a ground-truth index in `[0, M_gt)`, or -1 / -2. The best ground truth of
    a prediction is the first maximum over rows (`jnp.argmax`; torch's CPU `max(dim=0)` also
    returns the first maximal index on ties, checked in tests).
  """
  quality = jnp.asarray(quality)
  if quality.ndim != 2:
    raise ValueError(f"quality must be [M_gt, N_pred], got shape {tuple(quality.shape)}")
  if low_threshold > high_threshold:
    raise ValueError(f"low_threshold ({low_threshold}) must be <= high_threshold "
                     f"({high_threshold})")
  m, n = quality.shape
  quality = quality.astype(jnp.result_type(quality, jnp.float32))
  if gt_valid is None:
    gt_valid = jnp.ones((m,), bool)
  gt_valid = jnp.asarray(gt_valid, bool)
  if gt_valid.shape != (m,):
    raise ValueError(f"gt_valid must be [M_gt={m}], got shape {gt_valid.shape}")
  if m == 0:
    return jnp.full((n,), BELOW_LOW_THRESHOLD, jnp.int32)
  q = jnp.where(gt_valid[:, None], quality, -jnp.inf)
  matched_vals = q.max(axis=0)
  all_matches = jnp.argmax(q, axis=0).astype(jnp.int32)
  matches = jnp.where(matched_vals < low_threshold, BELOW_LOW_THRESHOLD,
                      jnp.where(matched_vals < high_threshold, BETWEEN_THRESHOLDS, all_matches))
  # No valid ground truth (all -inf): everything is below the low threshold, even when the
  # thresholds are -inf.
  any_valid = jnp.any(gt_valid)
  matches = jnp.where(any_valid, matches, BELOW_LOW_THRESHOLD)
  if allow_low_quality_matches:
    highest_foreach_gt = q.max(axis=1)
    is_best = (q == highest_foreach_gt[:, None]) & gt_valid[:, None]
    restore = jnp.any(is_best, axis=0)
    matches = jnp.where(restore, all_matches, matches)
  return matches.astype(jnp.int32)


def matches_to_labels(matches: jax.Array) -> jax.Array:
  """Sampler labels from `match` output, as torchvision's RPN builds them: int32 `[...]`,
  1 where matched (>= 0), 0 where `BELOW_LOW_THRESHOLD` (background), -1 where
  `BETWEEN_THRESHOLDS` (ignored)."""
  matches = jnp.asarray(matches)
  return jnp.where(matches >= 0, 1,
                   jnp.where(matches == BELOW_LOW_THRESHOLD, 0, -1)).astype(jnp.int32)


class BalancedSample(NamedTuple):
  """Output of `balanced_sample` for `N` candidates and `S = num_samples` slots.

  indices: int32 `[S]` chosen candidates: first the positives, then the negatives, each in
    random order; unused slots hold 0.
  is_positive: bool `[S]`, True for the slots holding a positive.
  valid: bool `[S]`, True for used slots (`num_pos + num_neg` of them, a prefix).
  positive_mask, negative_mask: bool `[N]`, the chosen candidates (torchvision's output form).
  """
  indices: jax.Array
  is_positive: jax.Array
  valid: jax.Array
  positive_mask: jax.Array
  negative_mask: jax.Array


def balanced_sample(labels: jax.Array, num_samples: int, positive_fraction: float,
                    key: jax.Array, valid: jax.Array | None = None) -> BalancedSample:
  """A random subset with a bounded share of positives, as torchvision's
  `BalancedPositiveNegativeSampler(num_samples, positive_fraction)` for one image.

  Args:
    labels: int `[N]` with torchvision's convention: >= 1 positive, 0 negative, anything else
      (-1) ignored. From `match` output use `matches_to_labels(matches)`; with class labels
      (background 0) pass them directly.
    num_samples: total samples per image (static, >= 0); the output has this many slots.
    positive_fraction: in [0, 1]; at most `int(num_samples * positive_fraction)` positives.
    key: PRNG key. The same key and labels give the same sample.
    valid: optional bool `[N]`; False entries (padding) are never chosen.

  `num_pos = min(#positives, int(num_samples * positive_fraction))` and
  `num_neg = min(#negatives, num_samples - num_pos)`; each set is drawn uniformly without
  replacement (a random permutation of `[0, N)` gives the priorities; `top_k` takes the
  highest within each set). For a batch, `jax.vmap` over labels and keys.
  """
  labels = jnp.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"labels must be [N], got shape {tuple(labels.shape)}")
  if int(num_samples) != num_samples or num_samples < 0:
    raise ValueError(f"num_samples must be a non-negative integer, got {num_samples!r}")
  if not 0.0 <= positive_fraction <= 1.0:
    raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}")
  n = labels.shape[0]
  s = int(num_samples)
  valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
  if valid.shape != (n,):
    raise ValueError(f"valid must be [N={n}], got shape {valid.shape}")
  positive = (labels >= 1) & valid
  negative = (labels == 0) & valid

  max_pos = int(s * positive_fraction)
  num_pos = jnp.minimum(positive.sum(), max_pos).astype(jnp.int32)
  num_neg = jnp.minimum(negative.sum(), s - num_pos).astype(jnp.int32)

  rank = jax.random.permutation(key, n).astype(jnp.int32)  # distinct priorities, no ties

  def top(member, count):
    count = min(count, n)
    idx = jax.lax.top_k(jnp.where(member, rank, -1), count)[1].astype(jnp.int32)
    return jnp.pad(idx, (0, s - count))

  pos_idx = top(positive, max_pos)   # [s]; the first num_pos are random positives
  neg_idx = top(negative, s)         # [s]; the first num_neg are random negatives
  slot = jnp.arange(s, dtype=jnp.int32)
  is_positive = slot < num_pos
  used = slot < num_pos + num_neg
  neg_slot = jnp.clip(slot - num_pos, 0, max(s - 1, 0))
  indices = jnp.where(is_positive, pos_idx, jnp.where(used, neg_idx[neg_slot], 0))
  positive_mask = jnp.zeros((n,), bool).at[indices].max(is_positive)
  negative_mask = jnp.zeros((n,), bool).at[indices].max(used & ~is_positive)
  return BalancedSample(indices, is_positive, used, positive_mask, negative_mask)
