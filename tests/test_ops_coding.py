"""Box coding, anchors, matching and sampling against NumPy loops and analytic values.

No torch needed (the torchvision comparisons are in test_ops_coding_torch.py). Every case uses
a few fixed shapes and module-level jitted functions, so each compiles once.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv.ops import anchors, box_coder, matching

RNG = np.random.default_rng


def random_boxes(rng, n, scale=300.0):
  xy = rng.uniform(0, scale, (n, 2))
  wh = rng.uniform(scale / 100, scale / 2, (n, 2))
  return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------- BoxCoder

def test_encode_decode_analytic_and_round_trip():
  anchor = np.array([10.0, 20.0, 30.0, 60.0], np.float32)          # centre (20, 40), 20 x 40
  gt = np.array([15.0, 30.0, 55.0, 50.0], np.float32)              # centre (35, 40), 40 x 20
  codes = np.asarray(box_coder.encode_boxes(gt, anchor, (10.0, 10.0, 5.0, 5.0)))
  np.testing.assert_allclose(codes, [10 * 15 / 20, 0.0, 5 * math.log(2), 5 * math.log(0.5)],
                             rtol=1e-6, atol=1e-6)
  rng = RNG(0)
  gts, anchors_ = random_boxes(rng, 32), random_boxes(rng, 32)
  for w in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
    round_trip = jax.jit(lambda g, a, w=w: box_coder.decode_boxes(
        box_coder.encode_boxes(g, a, w), a, w))
    back = np.asarray(round_trip(gts, anchors_))
    np.testing.assert_allclose(back, gts, rtol=1e-5, atol=1e-3)
  # broadcasting: one gt against many anchors, batched leading dims
  enc = box_coder.encode_boxes(gts[:1], anchors_.reshape(4, 8, 4))
  assert enc.shape == (4, 8, 4)
  np.testing.assert_allclose(np.asarray(enc).reshape(32, 4),
                             np.asarray(box_coder.encode_boxes(np.repeat(gts[:1], 32, 0),
                                                               anchors_)), rtol=1e-6)


def test_decode_clamps_large_sizes():
  boxes = np.array([[0.0, 0.0, 10.0, 20.0]], np.float32)
  codes = np.array([[0.0, 0.0, 50.0, -3.0]], np.float32)
  out = np.asarray(box_coder.decode_boxes(codes, boxes))[0]
  clip = math.log(1000 / 16)
  np.testing.assert_allclose(out[2] - out[0], 10 * math.exp(clip), rtol=1e-6)
  np.testing.assert_allclose(out[3] - out[1], 20 * math.exp(-3.0), rtol=1e-6)
  np.testing.assert_allclose([(out[0] + out[2]) / 2, (out[1] + out[3]) / 2], [5.0, 10.0],
                             atol=1e-4)


# -------------------------------------------------------------------------------------- YOLO

GRID = (5, 7)
STRIDE = 16.0
YOLO_ANCHORS = np.array([[12.0, 15.0], [30.0, 20.0], [50.0, 70.0]], np.float32)
yolo_encode_jit = jax.jit(functools.partial(box_coder.yolo_encode, grid_hw=GRID, stride=STRIDE,
                                            anchors_wh=YOLO_ANCHORS))
yolo_decode_jit = jax.jit(functools.partial(box_coder.yolo_decode, stride=STRIDE,
                                            anchors_wh=YOLO_ANCHORS))


def yolo_boxes(rng, n=40):
  h, w = GRID[0] * STRIDE, GRID[1] * STRIDE
  c = rng.uniform([0, 0], [w, h], (n, 2))
  wh = rng.uniform(4, 80, (n, 2))
  return np.concatenate([c - wh / 2, c + wh / 2], axis=1).astype(np.float32)


def test_yolo_encode_matches_numpy_loop():
  rng = RNG(1)
  boxes = yolo_boxes(rng)
  got = yolo_encode_jit(boxes)
  for m, (x1, y1, x2, y2) in enumerate(boxes.astype(np.float64)):
    cx, cy, bw, bh = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    i = min(int(cy // STRIDE), GRID[0] - 1)
    j = min(int(cx // STRIDE), GRID[1] - 1)
    assert tuple(np.asarray(got.cell[m])) == (i, j)
    np.testing.assert_allclose(got.offset[m], [cx / STRIDE - j, cy / STRIDE - i], atol=1e-5)
    ious = []
    for a, (pw, ph) in enumerate(YOLO_ANCHORS):
      np.testing.assert_allclose(got.log_wh[m, a], [math.log(bw / pw), math.log(bh / ph)],
                                 atol=1e-5)
      inter = min(bw, pw) * min(bh, ph)
      ious.append(inter / (bw * bh + pw * ph - inter))
    assert int(got.best_anchor[m]) == int(np.argmax(ious))
  assert got.cell.dtype == jnp.int32 and got.best_anchor.dtype == jnp.int32


def test_yolo_encode_far_edge_lands_in_last_cell():
  h, w = GRID[0] * STRIDE, GRID[1] * STRIDE
  box = np.array([[w - 10, h - 10, w + 10, h + 10]], np.float32)  # centre exactly on the edge
  got = yolo_encode_jit(np.repeat(box, 40, 0))
  assert tuple(np.asarray(got.cell[0])) == (GRID[0] - 1, GRID[1] - 1)
  np.testing.assert_allclose(got.offset[0], [1.0, 1.0])


def test_yolo_decode_matches_numpy_loop_and_inverts_encode():
  rng = RNG(2)
  raw = rng.normal(0, 1.5, (2, *GRID, 3, 4)).astype(np.float32)
  got = np.asarray(yolo_decode_jit(raw))
  assert got.shape == raw.shape
  sig = lambda v: 1 / (1 + math.exp(-v))
  for b in range(2):
    for i in range(GRID[0]):
      for j in range(GRID[1]):
        for a in range(3):
          tx, ty, tw, th = raw[b, i, j, a].astype(np.float64)
          cx, cy = (sig(tx) + j) * STRIDE, (sig(ty) + i) * STRIDE
          bw, bh = YOLO_ANCHORS[a, 0] * math.exp(tw), YOLO_ANCHORS[a, 1] * math.exp(th)
          want = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
          np.testing.assert_allclose(got[b, i, j, a], want, rtol=1e-5, atol=1e-4)
  # round trip: encode boxes, write logit(offset) and log_wh into the raw map, decode
  boxes = yolo_boxes(rng)
  t = yolo_encode_jit(boxes)
  off = np.clip(np.asarray(t.offset), 1e-4, 1 - 1e-4)
  raw = np.zeros((1, *GRID, 3, 4), np.float32)
  for m in range(0, 40, 7):  # boxes in distinct cells only
    i, j = np.asarray(t.cell[m])
    a = int(t.best_anchor[m])
    raw[0, i, j, a, :2] = np.log(off[m] / (1 - off[m]))
    raw[0, i, j, a, 2:] = t.log_wh[m, a]
    np.testing.assert_allclose(np.asarray(yolo_decode_jit(raw))[0, i, j, a], boxes[m],
                               atol=1e-2)


def test_wh_iou_matches_numpy():
  rng = RNG(3)
  a, b = rng.uniform(1, 50, (6, 2)), rng.uniform(1, 50, (4, 2))
  got = np.asarray(box_coder.wh_iou(a[:, None], b[None]))
  for i in range(6):
    for j in range(4):
      inter = min(a[i, 0], b[j, 0]) * min(a[i, 1], b[j, 1])
      want = inter / (a[i].prod() + b[j].prod() - inter)
      np.testing.assert_allclose(got[i, j], want, rtol=1e-5)


# -------------------------------------------------------------------------------------- FCOS

def test_fcos_targets_pairwise_and_decode_match_numpy():
  rng = RNG(4)
  points = rng.uniform(0, 100, (20, 2)).astype(np.float32)
  boxes = random_boxes(rng, 5, scale=100.0)
  pair = np.asarray(jax.jit(box_coder.fcos_ltrb_pairwise)(points, boxes))
  assert pair.shape == (20, 5, 4)
  for p, (x, y) in enumerate(points):
    for m, (x1, y1, x2, y2) in enumerate(boxes):
      np.testing.assert_allclose(pair[p, m], [x - x1, y - y1, x2 - x, y2 - y], atol=1e-5)
  per_point = np.asarray(box_coder.fcos_ltrb_targets(points, boxes[np.arange(20) % 5]))
  np.testing.assert_array_equal(per_point, pair[np.arange(20), np.arange(20) % 5])
  back = np.asarray(box_coder.fcos_decode(points[:, None], pair))
  np.testing.assert_allclose(back, np.broadcast_to(boxes, (20, 5, 4)), atol=1e-4)


centerness_jit = jax.jit(box_coder.fcos_centerness)


def test_fcos_centerness_paper_formula_and_no_nan():
  rng = RNG(5)
  ltrb = rng.uniform(0.1, 50, (30, 4)).astype(np.float32)
  got = np.asarray(centerness_jit(ltrb))
  for n, (l, t, r, b) in enumerate(ltrb.astype(np.float64)):
    want = math.sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))
    np.testing.assert_allclose(got[n], want, rtol=1e-5)
  # centre of the box: 1; on an edge, outside, degenerate: 0, with finite gradients
  special = np.array([[3, 4, 3, 4], [0, 4, 6, 4], [-1, 2, 5, 2], [0, 0, 0, 0], [-2, -3, 1, 2]],
                     np.float32)
  np.testing.assert_allclose(centerness_jit(special), [1, 0, 0, 0, 0], atol=1e-6)
  grads = jax.jit(jax.grad(lambda v: box_coder.fcos_centerness(v).sum()))(special)
  assert np.isfinite(np.asarray(grads)).all()


# ----------------------------------------------------------------------------------- anchors

def numpy_grid_anchors(image_size, feature_sizes, sizes, ratios):
  """An independent loop form of torchvision's AnchorGenerator."""
  out = []
  for (fh, fw), ss, rs in zip(feature_sizes, sizes, ratios):
    sh, sw = image_size[0] // fh, image_size[1] // fw
    cell = []
    for r in rs:
      hr = np.sqrt(np.float32(r))
      wr = np.float32(1) / hr
      for s in ss:
        w, h = wr * np.float32(s), hr * np.float32(s)
        cell.append(np.round(np.array([-w, -h, w, h], np.float32) / np.float32(2)))
    for i in range(fh):
      for j in range(fw):
        for c in cell:
          out.append(c + np.array([j * sw, i * sh, j * sw, i * sh], np.float32))
  return np.array(out, np.float32)


def test_grid_anchors_match_numpy_loop():
  case = ((90, 123), [(12, 16), (6, 8)], ((20, 33), (64,)), ((0.5, 1.0, 2.0), (1.0, 3.0)))
  got = anchors.grid_anchors(*case)
  np.testing.assert_array_equal(np.asarray(got), numpy_grid_anchors(*case))
  assert anchors.num_anchors_per_location(case[2], case[3]) == [6, 2]
  # usable inside jit: a static constant
  assert jax.jit(lambda: anchors.grid_anchors(*case))().shape == got.shape


def test_ssd300_default_boxes_count_and_analytic_values():
  ar = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
  scales = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
  boxes = np.asarray(anchors.ssd_default_boxes(
      (300, 300), [(f, f) for f in (38, 19, 10, 5, 3, 1)], ar, scales=scales,
      steps=[8, 16, 32, 64, 100, 300]))
  assert boxes.shape == (8732, 4)
  c = 0.5 / 37.5 * 300  # first cell centre, step 8 on 300 px: 4 px
  s = 0.07 * 300
  np.testing.assert_allclose(boxes[0], [c - s / 2, c - s / 2, c + s / 2, c + s / 2], rtol=1e-5)
  s2 = math.sqrt(0.07 * 0.15) * 300
  np.testing.assert_allclose(boxes[1], [c - s2 / 2, c - s2 / 2, c + s2 / 2, c + s2 / 2],
                             rtol=1e-5)
  w, h = 0.07 * math.sqrt(2) * 300, 0.07 / math.sqrt(2) * 300
  np.testing.assert_allclose(boxes[2], [c - w / 2, c - h / 2, c + w / 2, c + h / 2], rtol=1e-5)
  np.testing.assert_allclose(boxes[3], [c - h / 2, c - w / 2, c + h / 2, c + w / 2], rtol=1e-5)
  # last level: one cell in the middle; (0.87 sqrt 2, 0.87 / sqrt 2) has its width clipped to 1
  np.testing.assert_allclose(boxes[-4], [150 - 0.87 * 150] * 2 + [150 + 0.87 * 150] * 2,
                             rtol=1e-5)
  h = 0.87 / math.sqrt(2) * 150
  np.testing.assert_allclose(boxes[-2], [0, 150 - h, 300, 150 + h], rtol=1e-5, atol=1e-4)
  assert anchors.ssd_num_anchors_per_location(ar) == [4, 6, 6, 6, 4, 4]
  np.testing.assert_allclose(anchors.ssd_scales(3, 0.2, 0.9), [0.2, 0.55, 0.9, 1.0])


def test_yolo_priors():
  v3 = anchors.yolo_priors("yolov3_coco")
  assert [s for s, _ in v3] == [32, 16, 8]
  np.testing.assert_array_equal(v3[0][1], [[116, 90], [156, 198], [373, 326]])
  np.testing.assert_array_equal(v3[2][1], [[10, 13], [16, 30], [33, 23]])
  (stride, v2), = anchors.yolo_priors("yolov2_voc")
  assert stride == 32
  np.testing.assert_allclose(v2[0], [1.3221 * 32, 1.73145 * 32], rtol=1e-6)
  (_, coco), = anchors.yolo_priors("yolov2_coco")
  np.testing.assert_allclose(coco[-1], [9.77052 * 32, 9.16828 * 32], rtol=1e-6)
  with pytest.raises(ValueError, match="yolov3_coco"):
    anchors.yolo_priors("yolov9")


K = 4
kmeans_jit = jax.jit(anchors.kmeans_anchors, static_argnames=("k", "num_iters"))


def numpy_kmeans(wh, init, num_iters, valid):
  c = init.astype(np.float64).copy()
  wh64 = wh.astype(np.float64)
  for _ in range(num_iters):
    iou = np.array([[min(b[0], q[0]) * min(b[1], q[1]) /
                     (b.prod() + q.prod() - min(b[0], q[0]) * min(b[1], q[1])) for q in c]
                    for b in wh64])
    assign = iou.argmax(1)
    for k in range(len(c)):
      members = (assign == k) & valid
      if members.any():
        c[k] = wh64[members].mean(0)
  iou = np.array([[min(b[0], q[0]) * min(b[1], q[1]) /
                   (b.prod() + q.prod() - min(b[0], q[0]) * min(b[1], q[1])) for q in c]
                  for b in wh64])
  mean_iou = iou.max(1)[valid].mean()
  return c[np.argsort(c.prod(1), kind="stable")], mean_iou


def test_kmeans_matches_numpy_lloyd_from_same_init():
  rng = RNG(6)
  wh = rng.lognormal(3, 0.7, (60, 2)).astype(np.float32)
  valid = rng.uniform(size=60) < 0.85
  init = wh[np.flatnonzero(valid)[:K]]
  for iters in (1, 10):
    got_c, got_iou = kmeans_jit(wh, k=K, num_iters=iters, valid=valid, init=init)
    want_c, want_iou = numpy_kmeans(wh, init, iters, valid)
    np.testing.assert_allclose(np.asarray(got_c), want_c, rtol=1e-5)
    np.testing.assert_allclose(float(got_iou), want_iou, rtol=1e-5)


def test_kmeans_recovers_separated_clusters_deterministically():
  rng = RNG(7)
  centres = np.array([[8, 10], [30, 60], [90, 40], [200, 220]], np.float32)
  wh = np.concatenate([c * rng.uniform(0.95, 1.05, (15, 2)) for c in centres]).astype(np.float32)
  best = None
  for seed in range(4):  # Lloyd can stall in a local optimum; one of a few restarts suffices
    c, iou = kmeans_jit(wh, k=K, key=jax.random.key(seed), num_iters=20)
    c2, _ = kmeans_jit(wh, k=K, key=jax.random.key(seed), num_iters=20)
    np.testing.assert_array_equal(np.asarray(c), np.asarray(c2))     # deterministic
    assert np.all(np.diff(np.prod(np.asarray(c), 1)) >= 0)          # sorted by area
    if best is None or float(iou) > best[1]:
      best = (np.asarray(c), float(iou))
  np.testing.assert_allclose(best[0], centres, rtol=0.05)
  assert best[1] > 0.9


# ---------------------------------------------------------------------------------- matching

M_GT, N_PRED = 6, 40
match_jit = jax.jit(matching.match, static_argnums=(1, 2, 3))


def numpy_match(q, high, low, allow, valid):
  """Loop form of torchvision's Matcher on the valid rows (indices of the padded matrix)."""
  rows = np.flatnonzero(valid)
  out = np.full(q.shape[1], -1)
  if rows.size == 0:
    return out
  for n in range(q.shape[1]):
    best = rows[0]
    for r in rows:
      if q[r, n] > q[best, n]:
        best = r
    v = q[best, n]
    out[n] = -1 if v < low else (-2 if v < high else best)
  if allow:
    for r in rows:
      top = q[r].max()
      for n in range(q.shape[1]):
        if q[r, n] == top:
          best = rows[np.argmax(q[rows, n])]
          out[n] = best
  return out


@pytest.mark.parametrize("allow", [False, True])
def test_match_matches_numpy_loop_with_padding(allow):
  rng = RNG(8)
  for trial in range(6):
    # many ties, also of a gt's best quality below the high threshold
    q = (rng.integers(0, 8, (M_GT, N_PRED)) * (0.55 if trial % 2 else 1) / 8).astype(np.float32)
    q[rng.uniform(size=q.shape) < 0.5] = 0
    valid = rng.uniform(size=M_GT) < 0.7 if trial else np.zeros(M_GT, bool)
    got = np.asarray(match_jit(q, 0.6, 0.3, allow, valid))
    np.testing.assert_array_equal(got, numpy_match(q, 0.6, 0.3, allow, valid))
  assert (np.asarray(match_jit(q, 0.6, 0.3, allow, np.zeros(M_GT, bool))) == -1).all()


def test_match_vmaps_over_images():
  rng = RNG(9)
  q = rng.uniform(0, 1, (3, M_GT, N_PRED)).astype(np.float32)
  got = jax.vmap(lambda x: matching.match(x, 0.7, 0.3, True))(q)
  for b in range(3):
    np.testing.assert_array_equal(got[b], numpy_match(q[b], 0.7, 0.3, True, np.ones(M_GT, bool)))


def test_matches_to_labels():
  np.testing.assert_array_equal(matching.matches_to_labels(np.array([3, 0, -1, -2, 1])),
                                [1, 1, 0, -1, 1])


N_LAB, S = 50, 16
sample_jit = jax.jit(matching.balanced_sample, static_argnums=(1, 2))


def check_sample(out, labels, valid, fraction):
  idx, pos, used = map(np.asarray, (out.indices, out.is_positive, out.valid))
  n_pos = ((labels >= 1) & valid).sum()
  n_neg = ((labels == 0) & valid).sum()
  want_pos = min(n_pos, int(S * fraction))
  want_neg = min(n_neg, S - want_pos)
  assert pos.sum() == want_pos and used.sum() == want_pos + want_neg
  assert used[:want_pos + want_neg].all() and pos[:want_pos].all()     # prefix layout
  chosen = idx[used]
  assert len(set(chosen.tolist())) == len(chosen)                       # no duplicates
  assert valid[chosen].all()                                            # never padding
  assert (labels[idx[pos]] >= 1).all() and (labels[idx[used & ~pos]] == 0).all()  # no ignored
  assert (idx[~used] == 0).all()
  pm, nm = np.asarray(out.positive_mask), np.asarray(out.negative_mask)
  assert set(np.flatnonzero(pm)) == set(idx[pos]) and set(np.flatnonzero(nm)) == set(
      idx[used & ~pos])


@pytest.mark.parametrize("fraction", [0.25, 0.5, 1.0])
def test_balanced_sample_counts_and_exclusions(fraction):
  rng = RNG(10)
  for trial in range(6):
    # trial 0: few positives; trial 1: few negatives; others mixed with ignored (-1)
    p = [(0.05, 0.9), (0.6, 0.1), (0.3, 0.4)][min(trial, 2)]
    labels = rng.choice([1, 0, -1], N_LAB, p=[p[0], p[1], 1 - p[0] - p[1]]).astype(np.int32)
    labels[labels == 1] = rng.integers(1, 5, (labels == 1).sum())   # class labels count as pos
    valid = rng.uniform(size=N_LAB) < 0.8
    out = sample_jit(labels, S, fraction, jax.random.key(trial), valid)
    check_sample(out, labels, valid, fraction)


def test_balanced_sample_deterministic_and_uniform():
  labels = np.zeros(N_LAB, np.int32)
  labels[:10] = 1                    # 10 positives, 4 are drawn (S * 0.25)
  labels[40:] = -1                   # 30 negatives (10..39), 12 drawn
  out = sample_jit(labels, S, 0.25, jax.random.key(3))
  again = sample_jit(labels, S, 0.25, jax.random.key(3))
  np.testing.assert_array_equal(out.indices, again.indices)
  trials = 2000
  keys = jax.random.split(jax.random.key(0), trials)
  many = jax.jit(jax.vmap(lambda k: matching.balanced_sample(labels, S, 0.25, k)))(keys)
  pm, nm = np.asarray(many.positive_mask), np.asarray(many.negative_mask)
  assert (pm.sum(1) == 4).all() and (nm.sum(1) == 12).all()
  # each positive is drawn with probability 4/10, each negative with 12/30: within 5 sigma
  for mask, lo, hi, p in [(pm, 0, 10, 0.4), (nm, 10, 40, 0.4)]:
    freq = mask[:, lo:hi].mean(0)
    sigma = math.sqrt(p * (1 - p) / trials)
    assert np.abs(freq - p).max() < 5 * sigma, freq
  assert not pm[:, 10:].any() and not nm[:, :10].any() and not nm[:, 40:].any()
  # the draws differ between keys
  assert len({tuple(np.flatnonzero(r)) for r in pm[:50]}) > 10


def test_balanced_sample_edge_sizes():
  labels = np.array([1, 0, 0], np.int32)
  out = matching.balanced_sample(labels, 8, 0.5, jax.random.key(0))   # S > N
  assert out.indices.shape == (8,) and int(out.valid.sum()) == 3 and int(out.is_positive.sum()) == 1
  out = matching.balanced_sample(labels, 0, 0.5, jax.random.key(0))
  assert out.indices.shape == (0,) and not out.positive_mask.any()


# -------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, message", [
    (lambda: box_coder.encode_boxes(np.zeros((3, 5)), np.zeros((3, 4))), "last dimension 4"),
    (lambda: box_coder.decode_boxes(np.zeros((3, 4)), np.zeros((2, 4))), "do not broadcast"),
    (lambda: box_coder.encode_boxes(np.zeros((3, 4)), np.zeros((3, 4)), (1, 1)), "weights"),
    (lambda: box_coder.yolo_decode(np.zeros((2, 2, 3, 4)), 8, np.ones((2, 2))), "anchors"),
    (lambda: box_coder.yolo_encode(np.zeros((3, 4)), (2, 2), -8, np.ones((2, 2))), "stride"),
    (lambda: box_coder.fcos_ltrb_pairwise(np.zeros((3, 3)), np.zeros((2, 4))), "points"),
    (lambda: box_coder.fcos_centerness(np.zeros((3, 2))), "last dimension 4"),
    (lambda: anchors.grid_anchors((64, 64), [(8, 8)], ((32,), (64,)), ((1.0,),) * 2),
     "feature sizes"),
    (lambda: anchors.grid_anchors((64, 64), [(8, 8)], ((32,),), ((0.5, 1.0),) * 2),
     "aspect_ratios"),
    (lambda: anchors.grid_anchors((64, -64), [(8, 8)], ((32,),)), "image_size"),
    (lambda: anchors.grid_anchors((64, 64), [(128, 8)], ((32,),)), "larger than"),
    (lambda: anchors.ssd_default_boxes((300, 300), [(3, 3)], [[2]], steps=[8, 16]), "steps"),
    (lambda: anchors.kmeans_anchors(np.ones((3, 2)), 5, jax.random.key(0)), "k must be"),
    (lambda: anchors.kmeans_anchors(np.ones((3, 3)), 2, jax.random.key(0)), r"\[N, 2\]"),
    (lambda: matching.match(np.zeros((2, 3)), 0.3, 0.7), "low_threshold"),
    (lambda: matching.match(np.zeros((3,)), 0.7, 0.3), "quality"),
    (lambda: matching.match(np.zeros((2, 3)), 0.7, 0.3, False, np.ones(3, bool)), "gt_valid"),
    (lambda: matching.balanced_sample(np.zeros(4), -1, 0.5, jax.random.key(0)), "num_samples"),
    (lambda: matching.balanced_sample(np.zeros(4), 2, 1.5, jax.random.key(0)), "fraction"),
    (lambda: matching.balanced_sample(np.zeros(4), 2, 0.5, jax.random.key(0), np.ones(3)),
     "valid"),
])
def test_bad_input_raises(call, message):
  with pytest.raises(ValueError, match=message):
    call()
