"""The `shapes` scene generator: constants, the solids' height fields, `render`.

`render(seed_or_rng, index, image_size, split)` makes one scene (wall, ground plane, 0..6
solids and an optional crowd, painted back to front with occlusion, shaded, noised and
quantised) as the arrays both `shapes.generate_example` and `shapes.generate_record` are
made from. Every convention (camera, solids, labels) is in the module docstring of
`jaxcv.data.shapes`, which re-exports the constants here.
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES = ("circle", "square", "triangle", "ellipse", "ring")  # classes 1..5
NUM_CLASSES = len(CLASS_NAMES)
STUFF_NAMES = ("wall", "ground")  # panoptic classes NUM_CLASSES + 1, NUM_CLASSES + 2
PANOPTIC_CLASS_NAMES = CLASS_NAMES + STUFF_NAMES  # panoptic class c is index c - 1
WALL_CLASS, GROUND_CLASS = NUM_CLASSES + 1, NUM_CLASSES + 2
LABEL_NAMES = CLASS_NAMES + ("empty",)  # classification labels 0..5
EMPTY_LABEL = NUM_CLASSES
KEYPOINT_NAMES = ("top", "bottom", "left", "right")
KEYPOINT_FLIP_INDICES = (0, 1, 3, 2)  # keypoint order after a horizontal flip
KEYPOINT_FLIP_PAIRS = ((2, 3),)
OKS_SIGMAS = np.full(len(KEYPOINT_NAMES), 0.08, np.float32)
SPLITS = ("train", "validation", "test")
SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
DEFAULT_SPLIT_SIZES = {"train": 2000, "validation": 200, "test": 200}
MAX_OBJECTS = 6
MIN_IMAGE_SIZE = 32
DEPTH_SCALE = 8192.0  # depth is stored as uint16 code / DEPTH_SCALE (depth < 6.7 here)
MIN_VISIBLE_PIXELS = 12
MIN_VISIBLE_FRACTION = 0.2
MAX_INDEX = 1_000_000  # indices (and so split sizes) stay below it; image ids build on it


def _check(image_size: int, split: str, index: int | None = None) -> int:
  if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
    raise ValueError(f"image_size must be an int, got {image_size!r}")  # noqa: TRY004
  if image_size < MIN_IMAGE_SIZE:
    raise ValueError(f"image_size {image_size} is below the minimum {MIN_IMAGE_SIZE}")
  if split not in SPLIT_IDS:
    raise ValueError(f"data set 'shapes' has no split {split!r}; known splits: {list(SPLITS)}")
  if index is not None and not 0 <= index < MAX_INDEX:
    raise ValueError(f"index {index} is outside [0, {MAX_INDEX})")
  return int(image_size)


def _rng(seed_or_rng, split: str, index: int) -> np.random.Generator:
  if isinstance(seed_or_rng, np.random.Generator):
    return seed_or_rng
  if isinstance(seed_or_rng, bool) or not isinstance(seed_or_rng, (int, np.integer)):
    raise ValueError(  # noqa: TRY004 (bad input is a ValueError in jaxcv)
        f"seed must be a non-negative int or a np.random.Generator, got {seed_or_rng!r}")
  if seed_or_rng < 0:
    raise ValueError(f"seed must be non-negative, got {seed_or_rng}")
  return np.random.default_rng([int(seed_or_rng), SPLIT_IDS[split], int(index)])


# --- solids: (inside, height h in pixels, dh/du, dh/dv) over a window of pixel offsets ------

def _safe_sqrt(a: np.ndarray, floor: float) -> np.ndarray:
  return np.sqrt(np.maximum(a, floor))


def _dome(du, dv, r):
  d2 = du * du + dv * dv
  inside = d2 <= r * r
  s = _safe_sqrt(r * r - d2, 0.02 * r * r)
  return inside, s, -du / s, -dv / s


def _solid(cls: int, du, dv, r: float, phi: float, aux: float):
  """Silhouette and height field of class `cls` centred at offset 0 with size `r`."""
  c, s = np.cos(phi), np.sin(phi)
  p1 = du * c + dv * s  # coordinates along the rotated axes e1 = (c, s), e2 = (-s, c)
  p2 = -du * s + dv * c
  if cls == 1:  # circle: hemisphere
    return _dome(du, dv, r)
  if cls == 2:  # square: flat-topped box with bevelled sides
    half = 0.75 * r
    a1, a2 = np.abs(p1), np.abs(p2)
    m = half - np.maximum(a1, a2)
    inside = m >= 0
    bevel, top = 0.3 * half, 0.5 * half
    band = m < bevel
    first = a1 >= a2
    slope = np.where(band, -top / bevel, 0.0)
    g1 = np.where(first, slope * np.sign(p1), 0.0)
    g2 = np.where(first, 0.0, slope * np.sign(p2))
    h = top * np.minimum(1.0, np.maximum(m, 0.0) / bevel)
    return inside, h, g1 * c - g2 * s, g1 * s + g2 * c
  if cls == 3:  # triangle (circumradius r): pyramid with its apex over the centre
    alphas = phi + np.pi / 3 + 2 * np.pi * np.arange(3) / 3  # outward edge normals
    ca, sa = np.cos(alphas), np.sin(alphas)
    m = 0.5 * r - (du[..., None] * ca + dv[..., None] * sa)  # inward distance to each edge
    k = np.argmin(m, axis=-1)
    mmin = np.min(m, axis=-1)
    inside = mmin >= 0
    slope = 0.8  # apex height 0.8 * inradius
    h = slope * np.maximum(mmin, 0.0)
    return inside, h, -slope * ca[k], -slope * sa[k]
  if cls == 4:  # ellipse: half-cylinder of radius b lying along the major axis
    b = r * (0.45 + 0.25 * aux)
    inside = (p1 / r) ** 2 + (p2 / b) ** 2 <= 1.0
    q = _safe_sqrt(b * b - p2 * p2, 0.02 * b * b)
    g2 = -p2 / q
    return inside, q, -g2 * s, g2 * c
  if cls == 5:  # ring: half-torus
    ri = r * (0.45 + 0.15 * aux)
    d = np.sqrt(du * du + dv * dv)
    inside = (d <= r) & (d >= ri)
    t, rc = 0.5 * (r - ri), 0.5 * (r + ri)
    q = _safe_sqrt(t * t - (d - rc) ** 2, 0.02 * t * t)
    gd = -(d - rc) / q
    dn = np.maximum(d, 1e-6)
    return inside, q, gd * du / dn, gd * dv / dn
  raise ValueError(f"unknown class {cls}")


def _crowd(du, dv, centres, radii):
  """Union of tiny domes (per pixel the highest one)."""
  inside = np.zeros(du.shape if du.shape == dv.shape else np.broadcast(du, dv).shape, bool)
  h = np.zeros(inside.shape)
  gu, gv = np.zeros(inside.shape), np.zeros(inside.shape)
  for (ox, oy), r in zip(centres, radii):
    ins, hh, uu, vv = _dome(du - ox, dv - oy, r)
    take = ins & (~inside | (hh > h))
    inside |= ins
    h = np.where(take, hh, h)
    gu = np.where(take, uu, gu)
    gv = np.where(take, vv, gv)
  return inside, h, gu, gv


# --- quantisation shared by the generator and `decode` ---------------------------------------

def _depth_codes(depth: np.ndarray) -> np.ndarray:
  return np.clip(np.round(depth * DEPTH_SCALE), 1, 65535).astype(np.uint16)


def _depth_from_codes(codes: np.ndarray) -> np.ndarray:
  return codes.astype(np.float32) / np.float32(DEPTH_SCALE)


def _normal_codes(normals: np.ndarray) -> np.ndarray:
  return np.clip(np.round(normals * 32767.0) + 32768, 1, 65535).astype(np.uint16)


def _normals_from_codes(codes: np.ndarray) -> np.ndarray:  # 0, +-1 exactly representable
  n = (codes.astype(np.float32) - np.float32(32768.0)) / np.float32(32767.0)
  return n / np.sqrt(np.sum(n * n, axis=-1, keepdims=True))


def _image_from_codes(codes: np.ndarray) -> np.ndarray:
  return codes.astype(np.float32) / np.float32(255.0)


# --- the scene ---------------------------------------------------------------------------------

def render(seed_or_rng, index: int, image_size: int, split: str) -> dict:
  """Everything both `generate_example` and `generate_record` need, as arrays."""
  size = _check(image_size, split, index)
  rng = _rng(seed_or_rng, split, index)
  f = float(size)
  pix = np.arange(size) + 0.5

  # Background: wall above the horizon row, ground plane below.
  theta = np.deg2rad(rng.uniform(25.0, 40.0))
  horizon = round(rng.uniform(0.2, 0.42) * size)
  ct, st = np.cos(theta), np.sin(theta)
  yp = pix / f - 0.5
  z_wall = 1.0 / (ct * (horizon / f - 0.5) + st)
  is_ground_row = np.arange(size) >= horizon
  z_row = np.where(is_ground_row, 1.0 / (ct * yp + st), z_wall)
  light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.9, 0.1), -1.0])
  light /= np.linalg.norm(light)
  wall_rgb, ground_rgb = rng.uniform(0.15, 0.9, 3), rng.uniform(0.15, 0.9, 3)
  stripe = rng.uniform(0.05, 0.12) * size, rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
  checker = rng.uniform(0.2, 0.45)
  n_ground = np.array([0.0, -ct, -st])
  n_wall = np.array([0.0, 0.0, -1.0])

  depth = np.repeat(z_row[:, None], size, axis=1)
  normals = np.empty((size, size, 3))
  normals[:horizon], normals[horizon:] = n_wall, n_ground
  lam_ground = 0.4 + 0.6 * max(0.0, float(n_ground @ light))
  lam_wall = 0.4 + 0.6 * max(0.0, float(n_wall @ light))
  xs = (pix - 0.5 * f) / f
  # 0.06 sin(a u + b v + c), separably: sin(a u + c) cos(b v) + cos(a u + c) sin(b v).
  au = 2 * np.pi * pix * np.cos(stripe[1]) / stripe[0] + stripe[2]
  bv = 2 * np.pi * pix * np.sin(stripe[1]) / stripe[0]
  wave = 0.06 * (np.outer(np.cos(bv), np.sin(au)) + np.outer(np.sin(bv), np.cos(au)))
  cells = (np.floor(xs[None, :] * z_row[:, None] / checker)
           + np.floor(z_row[:, None] / checker)) % 2
  tex = np.where(is_ground_row[:, None], 0.07 * (2 * cells - 1), wave)
  image = np.empty((size, size, 3), np.float32)
  image[:horizon] = wall_rgb * lam_wall
  image[horizon:] = ground_rgb * lam_ground
  image += tex[..., None]

  # Objects, drawn with a fixed number of random values each.
  n_obj = 0 if rng.uniform() < 0.03 else int(rng.integers(1, MAX_OBJECTS + 1))
  objects = []
  for _ in range(n_obj):
    cls = int(rng.integers(1, NUM_CLASSES + 1))
    r = rng.uniform(0.07, 0.18) * size
    ext = 1.1 * r + 1
    cx, cy = rng.uniform(ext, size - ext, 2)
    phi, aux = rng.uniform(0, 2 * np.pi), rng.uniform()
    rgb = rng.uniform(0.05, 0.95, 3)
    objects.append({"cls": cls, "r": r, "ext": ext, "cx": cx, "cy": cy, "phi": phi,
                    "aux": aux, "rgb": rgb, "crowd": False})
  if n_obj and rng.uniform() < 0.15:
    cls = int(rng.integers(1, NUM_CLASSES + 1))
    k = int(rng.integers(4, 9))
    spread = 0.08 * size
    radii = rng.uniform(0.012, 0.025, k) * size
    offs = rng.uniform(-spread, spread, (k, 2))
    ext = spread + radii.max() + 1
    cx, cy = rng.uniform(ext, size - ext, 2)
    objects.append({"cls": cls, "r": spread, "ext": ext, "cx": cx, "cy": cy, "offs": offs,
                    "radii": radii, "rgb": rng.uniform(0.05, 0.95, 3), "crowd": True})

  # Rasterise each solid over its window; paint order far to near (stable).
  for o in objects:
    r0, r1 = max(0, int(o["cy"] - o["ext"])), min(size, int(np.ceil(o["cy"] + o["ext"])) + 1)
    c0, c1 = max(0, int(o["cx"] - o["ext"])), min(size, int(np.ceil(o["cx"] + o["ext"])) + 1)
    du = (pix[c0:c1] - o["cx"])[None, :]
    dv = (pix[r0:r1] - o["cy"])[:, None]
    du, dv = np.broadcast_arrays(du, dv)
    if o["crowd"]:
      sil, h, gu, gv = _crowd(du, dv, o["offs"], o["radii"])
    else:
      sil, h, gu, gv = _solid(o["cls"], du, dv, o["r"], o["phi"], o["aux"])
    o.update(win=(slice(r0, r1), slice(c0, c1)), sil=sil, h=h, gu=gu, gv=gv,
             zb=z_row[min(size - 1, int(o["cy"]))])
  order = sorted(range(len(objects)), key=lambda i: -objects[i]["zb"])
  painted = [objects[i] for i in order]

  # Remove (back to front from the nearest) objects that would be mostly hidden.
  covered = np.zeros((size, size), bool)
  keep = [False] * len(painted)
  for j in range(len(painted) - 1, -1, -1):
    o = painted[j]
    visible = int((o["sil"] & ~covered[o["win"]]).sum())
    need = MIN_VISIBLE_PIXELS if o["crowd"] else max(
        MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * int(o["sil"].sum()))
    if visible >= need:
      keep[j] = True
      covered[o["win"]] |= o["sil"]
  kept = [o for o, k in zip(painted, keep) if k]

  # Paint.
  id_map = np.zeros((size, size), np.int32)
  for i, o in enumerate(kept):
    w, sil = o["win"], o["sil"]
    gu, gv = o["gu"][sil], o["gv"][sil]
    inv = 1.0 / np.sqrt(gu * gu + gv * gv + 1.0)
    nrm = np.stack([-gu * inv, -gv * inv, -inv], -1)
    shade = 0.4 + 0.6 * np.maximum(0.0, nrm @ light)
    id_map[w][sil] = i + 1
    depth[w][sil] = o["zb"] * (1.0 - o["h"][sil] / f)
    normals[w][sil] = nrm
    image[w][sil] = shade[:, None] * o["rgb"]

  # Noise: uniform on 256 levels with standard deviation 0.03 (random bytes: cheap to draw).
  noise = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape)
  image += (noise.astype(np.float32) - np.float32(127.5)) * np.float32(0.03 * np.sqrt(12) / 256)
  image_codes = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)

  # Per-instance labels.
  n = len(kept)
  classes = np.array([o["cls"] for o in kept], np.int32)
  iscrowd = np.array([o["crowd"] for o in kept], bool)
  boxes = np.zeros((n, 4), np.float32)
  area = np.zeros((n,), np.float32)
  keypoints = np.zeros((n, len(KEYPOINT_NAMES), 3), np.float32)
  for i, o in enumerate(kept):
    r0, c0 = o["win"][0].start, o["win"][1].start
    rows, cols = np.nonzero(id_map[o["win"]] == i + 1)  # the visible mask lies in the window
    boxes[i] = (cols.min() + c0, rows.min() + r0, cols.max() + 1 + c0, rows.max() + 1 + r0)
    area[i] = rows.size
    if o["crowd"]:
      continue
    srows, scols = np.nonzero(o["sil"])
    top, bottom, left, right = srows.min(), srows.max(), scols.min(), scols.max()
    pts = ((scols[srows == top].mean() + 0.5 + c0, top + 0.5 + r0),
           (scols[srows == bottom].mean() + 0.5 + c0, bottom + 0.5 + r0),
           (left + 0.5 + c0, srows[scols == left].mean() + 0.5 + r0),
           (right + 0.5 + c0, srows[scols == right].mean() + 0.5 + r0))
    for k, (x, y) in enumerate(pts):
      vis = 2.0 if id_map[int(y), int(x)] == i + 1 else 1.0
      keypoints[i, k] = (x, y, vis)

  # Panoptic: things 1..n, then the stuff present.
  stuff_map = np.where(is_ground_row[:, None], 2, 1) * np.ones((1, size), np.int32)
  panoptic = id_map.copy()
  seg_ids, seg_cls = list(range(1, n + 1)), list(classes)
  for which, cls in ((1, WALL_CLASS), (2, GROUND_CLASS)):
    region = (id_map == 0) & (stuff_map == which)
    if region.any():
      seg_ids.append(len(seg_ids) + 1)
      seg_cls.append(cls)
      panoptic[region] = seg_ids[-1]
  semantic = np.concatenate([[0], classes]).astype(np.int32)[id_map]

  edges = np.zeros((size, size), bool)
  dh = panoptic[:, 1:] != panoptic[:, :-1]
  dv_ = panoptic[1:, :] != panoptic[:-1, :]
  edges[:, 1:] |= dh
  edges[:, :-1] |= dh
  edges[1:, :] |= dv_
  edges[:-1, :] |= dv_

  solid_areas = [area[i] if not iscrowd[i] else -1.0 for i in range(n)]
  label = EMPTY_LABEL if not any(a > 0 for a in solid_areas) else int(
      classes[int(np.argmax(solid_areas))] - 1)
  return {
      "image_codes": image_codes,
      "image_id": np.int32(SPLIT_IDS[split] * MAX_INDEX + index + 1),
      "label": np.int32(label), "boxes": boxes, "classes": classes, "iscrowd": iscrowd,
      "area": area, "keypoints": keypoints, "instance_map": id_map, "semantic": semantic,
      "depth_codes": _depth_codes(depth), "normal_codes": _normal_codes(normals),
      "sketch": edges, "panoptic": panoptic.astype(np.int32),
      "segment_ids": np.array(seg_ids, np.int32),
      "segment_classes": np.array(seg_cls, np.int32),
      "segment_isthing": np.array([c <= NUM_CLASSES for c in seg_cls], bool),
      "segment_iscrowd": np.concatenate([iscrowd, np.zeros(len(seg_ids) - n, bool)])}
