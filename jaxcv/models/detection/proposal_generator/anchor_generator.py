"""torchvision's `AnchorGenerator` for a detector with a fixed canvas: the anchors are a
constant of the canvas and the feature-map sizes (both static), computed once at trace time
with `jaxcv.ops.grid_anchors_per_level` (rounded base anchors, shifts `arange * stride`, no
half-cell offset, strides from the padded canvas: torchvision's rules).

Faster R-CNN's default: one size per FPN level, (32,), (64,), (128,), (256,), (512,), and
aspect ratios (0.5, 1.0, 2.0) at every level: 3 anchors per location.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxcv.ops.anchors import grid_anchors_per_level, num_anchors_per_location

DEFAULT_SIZES = ((32,), (64,), (128,), (256,), (512,))
DEFAULT_ASPECT_RATIOS = ((0.5, 1.0, 2.0),)


def expand_ratios(sizes: Sequence[Sequence[float]], aspect_ratios) -> tuple:
  """One aspect-ratio tuple per level: a single tuple applies to every level."""
  aspect_ratios = tuple(tuple(a) for a in aspect_ratios)
  return aspect_ratios * len(sizes) if len(aspect_ratios) == 1 else aspect_ratios


def check_anchor_config(sizes, aspect_ratios, num_levels: int, model: str) -> int:
  """The anchors per location (equal on every level, as one shared RPN head needs);
  ValueError naming the problem when the anchor levels do not match the feature levels."""
  sizes = tuple(tuple(s) for s in sizes)
  ratios = expand_ratios(sizes, aspect_ratios)
  if len(sizes) != num_levels:
    raise ValueError(f"{model}: anchor_sizes has {len(sizes)} levels but the backbone gives "
                     f"{num_levels} feature maps (one size tuple per FPN level, e.g. "
                     f"{DEFAULT_SIZES[:num_levels]})")
  if len(ratios) != num_levels:
    raise ValueError(f"{model}: aspect_ratios has {len(ratios)} levels for {num_levels} "
                     "feature maps (give one tuple, used on every level, or one per level)")
  counts = set(num_anchors_per_location(sizes, ratios))
  if len(counts) != 1:
    raise ValueError(f"{model}: every level needs the same number of anchors per location "
                     f"for a shared RPN head; got {num_anchors_per_location(sizes, ratios)}")
  return counts.pop()


def anchors_for(canvas_hw: tuple[int, int], feature_maps: Sequence[jax.Array], sizes,
                aspect_ratios) -> tuple[jax.Array, list[int]]:
  """`(anchors [N, 4], anchors per level)` for NHWC `feature_maps` of a `canvas_hw` input,
  in the order of the RPN head's flattened outputs (level, row, column, anchor)."""
  sizes = tuple(tuple(s) for s in sizes)
  per_level = grid_anchors_per_level(canvas_hw, [f.shape[1:3] for f in feature_maps], sizes,
                                     expand_ratios(sizes, aspect_ratios))
  return jnp.concatenate(per_level, axis=0), [int(a.shape[0]) for a in per_level]
