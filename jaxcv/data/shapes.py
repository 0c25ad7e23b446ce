"""`shapes`: jaxcv's built-in synthetic scenes with labels for every task, made in NumPy.

Why: every model must train and be tested on machines with no network. This generator makes
any example on its own from `(seed, split, index)` (random access, no files), in about a
millisecond or two at 128x128 (`bench()`), and `jaxcv.data.shapes_tfds` stores the same
examples as a TensorFlow Datasets builder for grain's random-access readers. The scene is
made by `jaxcv.data.shapes_scene.render` (with the constants, re-exported here); this module
turns it into examples (`generate_example`), storage records (`generate_record`, `decode`)
and in-memory splits.

Scene (all sizes scale with the image size S; the camera is a pinhole with focal length S
pixels and the principal point at the image centre; pixel (col, row) has its centre at
(col + 0.5, row + 0.5)):
- Background: a camera at height 1 looking down at a ground plane with pitch theta in
  [25, 40] degrees. Rows at and below the horizon row (drawn in [0.2 S, 0.42 S]) show the
  ground, whose depth is `1 / (cos(theta) y' + sin(theta))` with `y' = (row + 0.5) / S - 0.5`
  (inverse depth linear in the row) and whose normal is `(0, -cos(theta), -sin(theta))`.
  Rows above it show a fronto-parallel "wall" at the depth where it meets the ground
  (normal `(0, 0, -1)`). Wall: a colour with sinusoidal stripes; ground: a colour with a
  checkerboard in ground coordinates (perspective cue).
- Objects: 0..6 (0 with probability 0.03, else uniform 1..6) of `CLASS_NAMES`, classes 1..5,
  with random colour, size (radius 0.07 S..0.18 S), rotation and position (the whole shape
  inside the image). Each is a solid raised toward the camera from a base depth equal to the
  background depth under its centre: circle = hemisphere (dome), square = flat-topped box
  with bevelled sides, triangle = three-sided pyramid, ellipse = half-cylinder lying along the
  major axis, ring = half-torus. Depth is `Z = Zb (1 - h / S)` for the solid's height h in
  pixels (its lateral scale taken at the base depth, i.e. weak perspective per object);
  normals are the analytic normals of that height field, `normalize(-dh/du, -dh/dv, -1)`
  (slopes clamped near the rim of curved solids, so every normal has z < 0).
- Crowd: with probability 0.15 (when there is at least one object) a cluster of 4..8 tiny
  domes of one class (radius 0.012 S..0.025 S) is added and annotated as ONE crowd instance
  (`iscrowd` True, keypoints unlabelled, v = 0). Below about 64x64 the tiny domes cover too
  few pixel centres and the crowd is mostly removed (see Occlusion).
- Occlusion: objects are painted from the farthest base depth to the nearest (ties in the
  order drawn), later ones covering earlier ones. Instance masks are the VISIBLE pixels. An
  object whose visible part would be under 20% of its silhouette or under 12 pixels (crowd:
  under 12 pixels) is removed from the scene before painting (neither drawn nor labelled),
  deciding from the front object backwards, so every drawn object is labelled.
- Image: albedo times Lambertian shading `0.4 + 0.6 max(0, n . L)` (a random light from the
  camera side, above), plus uniform noise (standard deviation 0.03), clipped to [0, 1] and
  quantised to multiples of 1/255 (so a PNG round trip is exact).

Labels (keys and dtypes as `docs/conventions.md`, one example, unpadded, no batch axis):
- `boxes` float32 [n, 4] xyxy from the visible mask with pixel-edge extents:
  `(min col, min row, max col + 1, max row + 1)`; `classes` int32 [n] in 1..5; `iscrowd`
  bool [n]; `area` float32 [n] = visible mask pixel count; `masks` bool [n, S, S] (disjoint).
  Instances are listed in painting order (back to front).
- `keypoints` float32 [n, 4, 3]: the extreme points of the object's full silhouette (pixel
  mask, before occlusion) in the order `KEYPOINT_NAMES` = (top, bottom, left, right). The top
  point is at `y = top row + 0.5`, `x` = mean of the centres of that row's silhouette pixels
  (for these shapes a contiguous run, so the point lies on a silhouette pixel); likewise the
  others. v = 2 where that pixel is in the object's visible mask, 1 where a later object
  covers it, 0 (and x = y = 0) for crowd instances. Under a horizontal flip left and right
  swap: `KEYPOINT_FLIP_INDICES` = (0, 1, 3, 2). OKS sigmas: `OKS_SIGMAS` (0.08 each).
- `semantic` int32 [S, S]: the class of the visible instance, 0 elsewhere (wall and ground are
  background); 255 (ignore) is not used.
- `depth` float32 [S, S] > 0 (camera-axis distance, quantised to multiples of 1/8192);
  `normals` float32 [S, S, 3] unit vectors (x right, y down, z away from the camera; all have
  z < 0), quantised to 16 bits per component and renormalised.
- `panoptic` int32 [S, S]: instance i has segment id i + 1; then the stuff segments present,
  wall (class 6) and ground (class 7), take the next ids. No void pixels. Per-segment
  `segment_ids`, `segment_classes`, `segment_isthing`, `segment_iscrowd` [s].
- `sketch` float32 [S, S, 1]: 1 on both sides of every boundary between panoptic segments
  (4-neighbourhood; object outlines and the horizon), 0 elsewhere.
- `label` int32: the class of the largest (visible area, first on ties) non-crowd instance,
  0-based (class - 1); `EMPTY_LABEL` = 5 ("empty") when there is none. So classification has
  `len(LABEL_NAMES)` = 6 labels.
- `image_id` int32 = `1_000_000 * split_id + index + 1` (split ids: train 0, validation 1,
  test 2), so ids are unique across the splits of one seed.
"""
from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from jaxcv.data.base import CorruptExampleError
from jaxcv.data.shapes_scene import (  # noqa: F401 - the constants are public here
    CLASS_NAMES, DEFAULT_SPLIT_SIZES, DEPTH_SCALE, EMPTY_LABEL, GROUND_CLASS,
    KEYPOINT_FLIP_INDICES, KEYPOINT_FLIP_PAIRS, KEYPOINT_NAMES, LABEL_NAMES, MAX_INDEX,
    MAX_OBJECTS, MIN_IMAGE_SIZE, MIN_VISIBLE_FRACTION, MIN_VISIBLE_PIXELS, NUM_CLASSES,
    OKS_SIGMAS, PANOPTIC_CLASS_NAMES, SPLIT_IDS, SPLITS, STUFF_NAMES, WALL_CLASS, _check,
    _depth_from_codes, _image_from_codes, _normals_from_codes, render)


def generate_example(seed_or_rng, index: int, image_size: int = 128,
                     split: str = "train") -> dict[str, np.ndarray]:
  """Example `index` of `split` for `seed` (see the module docstring for every label).

  Args:
    seed_or_rng: non-negative int seed (the example uses
      `np.random.default_rng([seed, split_id, index])`, so any example can be made on its own)
      or a `np.random.Generator` to draw from (then `index` only sets `image_id`).
    index: 0 <= index < 1,000,000.
    image_size: S >= 32; images are S x S.
    split: "train", "validation" or "test".
  Returns:
    dict of NumPy arrays: `image` float32 [S, S, 3] in [0, 1], `image_id` int32, `label`
    int32, `boxes` float32 [n, 4], `classes` int32 [n], `iscrowd` bool [n], `area` float32
    [n], `masks` bool [n, S, S], `keypoints` float32 [n, 4, 3], `semantic` int32 [S, S],
    `depth` float32 [S, S], `normals` float32 [S, S, 3], `sketch` float32 [S, S, 1],
    `panoptic` int32 [S, S], `segment_ids`, `segment_classes` int32 [s],
    `segment_isthing`, `segment_iscrowd` bool [s].
  """
  r = render(seed_or_rng, index, image_size, split)
  n = r["classes"].shape[0]
  return _assemble(r, r["instance_map"][None] == np.arange(1, n + 1, dtype=np.int32)[:, None,
                                                                                       None])


def _assemble(r: Mapping[str, np.ndarray], masks: np.ndarray) -> dict[str, np.ndarray]:
  return {
      "image": _image_from_codes(r["image_codes"]),
      "image_id": np.int32(r["image_id"]),
      "label": np.int32(r["label"]),
      "boxes": np.asarray(r["boxes"], np.float32).reshape(-1, 4),
      "classes": np.asarray(r["classes"], np.int32).reshape(-1),
      "iscrowd": np.asarray(r["iscrowd"], bool).reshape(-1),
      "area": np.asarray(r["area"], np.float32).reshape(-1),
      "masks": masks,
      "keypoints": np.asarray(r["keypoints"], np.float32).reshape(-1, len(KEYPOINT_NAMES), 3),
      "semantic": np.asarray(r["semantic"]).astype(np.int32),
      "depth": _depth_from_codes(r["depth_codes"]),
      "normals": _normals_from_codes(r["normal_codes"]),
      "sketch": np.asarray(r["sketch"]).astype(np.float32)[..., None],
      "panoptic": np.asarray(r["panoptic"]).astype(np.int32),
      "segment_ids": np.asarray(r["segment_ids"], np.int32).reshape(-1),
      "segment_classes": np.asarray(r["segment_classes"], np.int32).reshape(-1),
      "segment_isthing": np.asarray(r["segment_isthing"], bool).reshape(-1),
      "segment_iscrowd": np.asarray(r["segment_iscrowd"], bool).reshape(-1),
  }


# the keys of `generate_example`'s dict (and of `decode`'s), in that order
EXAMPLE_KEYS = ("image", "image_id", "label", "boxes", "classes", "iscrowd", "area", "masks",
                "keypoints", "semantic", "depth", "normals", "sketch", "panoptic",
                "segment_ids", "segment_classes", "segment_isthing", "segment_iscrowd")


# --- storage form (the tfds features of `jaxcv.data.shapes_tfds`) -----------------------------

RECORD_KEYS = ("image", "image_id", "label", "boxes", "classes", "iscrowd", "area",
               "keypoints", "instance_map", "semantic", "depth", "normals", "sketch",
               "panoptic", "segment_ids", "segment_classes", "segment_isthing",
               "segment_iscrowd")


def generate_record(seed_or_rng, index: int, image_size: int = 128,
                    split: str = "train") -> dict[str, np.ndarray]:
  """The example in storage form (lossless): images and maps as integer PNG-able arrays.

  `image` uint8 [S, S, 3]; `instance_map` uint16 [S, S, 1] (instance i + 1, 0 none; the
  masks are disjoint); `semantic` uint8 [S, S, 1]; `depth` uint16 [S, S, 1] (depth *
  8192); `normals` uint16 [S, S, 3] (n * 32767 + 32768); `sketch` uint8 [S, S, 1] (0/1);
  `panoptic` uint16 [S, S, 1]; the per-instance and per-segment arrays as in the example.
  `decode(generate_record(...)) == generate_example(...)` exactly.
  """
  r = render(seed_or_rng, index, image_size, split)
  return {
      "image": r["image_codes"], "image_id": r["image_id"], "label": r["label"],
      "boxes": r["boxes"], "classes": r["classes"], "iscrowd": r["iscrowd"],
      "area": r["area"], "keypoints": r["keypoints"],
      "instance_map": r["instance_map"].astype(np.uint16)[..., None],
      "semantic": r["semantic"].astype(np.uint8)[..., None],
      "depth": r["depth_codes"][..., None], "normals": r["normal_codes"],
      "sketch": r["sketch"].astype(np.uint8)[..., None],
      "panoptic": r["panoptic"].astype(np.uint16)[..., None],
      "segment_ids": r["segment_ids"], "segment_classes": r["segment_classes"],
      "segment_isthing": r["segment_isthing"], "segment_iscrowd": r["segment_iscrowd"],
  }


def decode(record: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A stored record (from `generate_record` or a tfds data source) -> the example dict.

  uint8 image -> float32 / 255; uint16 depth / normal codes -> float32 as the generator makes
  them; `instance_map` -> `masks` bool [n, S, S]; single-channel maps lose their channel axis
  (`sketch` keeps it, as float32 0/1). CorruptExampleError (a ValueError) when a key is
  missing.
  """
  missing = [k for k in RECORD_KEYS if k not in record]
  if missing:
    raise CorruptExampleError(f"shapes record lacks keys {missing}; has {sorted(record)}")
  n = int(np.asarray(record["classes"]).reshape(-1).shape[0])
  inst = np.asarray(record["instance_map"])[..., 0].astype(np.int32)
  r = dict(record)
  r.update(image_codes=np.asarray(record["image"]),
           depth_codes=np.asarray(record["depth"])[..., 0],
           normal_codes=np.asarray(record["normals"]),
           semantic=np.asarray(record["semantic"])[..., 0],
           sketch=np.asarray(record["sketch"])[..., 0],
           panoptic=np.asarray(record["panoptic"])[..., 0])
  masks = inst[None] == np.arange(1, n + 1, dtype=np.int32)[:, None, None]
  return _assemble(r, masks)


# --- in-memory splits -----------------------------------------------------------------------

def load_split(split: str, image_size: int = 128, num_examples: int | None = None,
               seed: int = 0) -> list[dict[str, np.ndarray]]:
  """Examples 0..num_examples-1 of `split` (default size `DEFAULT_SPLIT_SIZES[split]`) made
  directly, without tfds: the same examples the tfds builder stores."""
  _check(image_size, split)
  n = DEFAULT_SPLIT_SIZES[split] if num_examples is None else int(num_examples)
  if n < 0:
    raise ValueError(f"num_examples must be non-negative, got {num_examples}")
  return [generate_example(seed, i, image_size, split) for i in range(n)]


DENSE_KEYS = ("image", "image_id", "label", "semantic", "depth", "normals", "sketch")


def load(split: str, image_size: int = 128, num_examples: int | None = None, seed: int = 0):
  """`jaxcv.data` loader: the fixed-shape keys (`DENSE_KEYS`) of `load_split` stacked into an
  `ArrayDataset` with `num_classes = 6` (classification: 5 shapes + "empty"; segmentation:
  background + 5 shapes). Per-object labels are ragged and go through the padding pipeline.
  """
  from jaxcv.data.base import ArrayDataset
  examples = load_split(split, image_size, num_examples, seed)
  s = _check(image_size, split)
  empty = {"image": (s, s, 3), "semantic": (s, s), "depth": (s, s), "normals": (s, s, 3),
           "sketch": (s, s, 1), "image_id": (), "label": ()}
  arrays = {}
  for k in DENSE_KEYS:
    if examples:
      arrays[k] = np.stack([e[k] for e in examples])
    else:
      arrays[k] = np.zeros((0,) + empty[k], np.float32 if k in (
          "image", "depth", "normals", "sketch") else np.int32)
  return ArrayDataset(arrays, num_classes=len(LABEL_NAMES), name="shapes", split=split)


def bench(num_examples: int = 1000, image_size: int = 128, seed: int = 0) -> float:
  """Seconds to make `num_examples` examples single-threaded (`generate_example`)."""
  t = time.perf_counter()
  for i in range(num_examples):
    generate_example(seed, i, image_size)
  return time.perf_counter() - t
