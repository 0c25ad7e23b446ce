"""PQ / SQ / RQ against a port of panopticapi's pq_compute_single_core and pq_average written
here as dict-based loops over segment pairs, on random panoptic maps with void pixels, crowd
regions, wrong categories and vanished segments; the jit-able batch counts against the NumPy
ones; analytic values; batches; input errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv.metrics import panoptic

VOID = 0
OFFSET = 256 * 256 * 256
CATEGORIES = {1: True, 2: True, 4: True, 7: False, 8: False, 11: False}  # id -> isthing
CAT_IDS = list(CATEGORIES)
H, W, S = 20, 24, 12


class Stat:
  def __init__(self):
    self.iou, self.tp, self.fp, self.fn = 0.0, 0, 0, 0


def reference_single(stats, pan_gt, gt_info, pan_pred, pred_info):
  """pq_compute_single_core for one image; *_info: list of dicts id, category_id, iscrowd,
  (gt) area."""
  gt_segms = {el["id"]: dict(el) for el in gt_info}
  pred_segms = {el["id"]: dict(el) for el in pred_info}
  pred_labels_set = {el["id"] for el in pred_info}
  labels, labels_cnt = np.unique(pan_pred, return_counts=True)
  for label, label_cnt in zip(labels, labels_cnt):
    if label not in pred_segms:
      assert label == VOID
      continue
    pred_segms[label]["area"] = label_cnt
    pred_labels_set.remove(label)
  assert not pred_labels_set
  pan_gt_pred = pan_gt.astype(np.uint64) * OFFSET + pan_pred.astype(np.uint64)
  gt_pred_map = {}
  labels, labels_cnt = np.unique(pan_gt_pred, return_counts=True)
  for label, intersection in zip(labels, labels_cnt):
    gt_pred_map[(label // OFFSET, label % OFFSET)] = intersection
  gt_matched, pred_matched = set(), set()
  for (gt_label, pred_label), intersection in gt_pred_map.items():
    if gt_label not in gt_segms or pred_label not in pred_segms:
      continue
    if gt_segms[gt_label]["iscrowd"] == 1:
      continue
    if gt_segms[gt_label]["category_id"] != pred_segms[pred_label]["category_id"]:
      continue
    union = (pred_segms[pred_label]["area"] + gt_segms[gt_label]["area"] - intersection
             - gt_pred_map.get((VOID, pred_label), 0))
    iou = intersection / union
    if iou > 0.5:
      stats[gt_segms[gt_label]["category_id"]].tp += 1
      stats[gt_segms[gt_label]["category_id"]].iou += iou
      gt_matched.add(gt_label)
      pred_matched.add(pred_label)
  crowd_labels_dict = {}
  for gt_label, g_info in gt_segms.items():
    if gt_label in gt_matched:
      continue
    if g_info["iscrowd"] == 1:
      crowd_labels_dict[g_info["category_id"]] = gt_label
      continue
    stats[g_info["category_id"]].fn += 1
  for pred_label, p_info in pred_segms.items():
    if pred_label in pred_matched:
      continue
    intersection = gt_pred_map.get((VOID, pred_label), 0)
    if p_info["category_id"] in crowd_labels_dict:
      intersection += gt_pred_map.get((crowd_labels_dict[p_info["category_id"]],
                                       pred_label), 0)
    if intersection / p_info["area"] > 0.5:
      continue
    stats[p_info["category_id"]].fp += 1


def reference_average(stats, isthing):
  pq, sq, rq, n = 0.0, 0.0, 0.0, 0
  for label, thing in CATEGORIES.items():
    if isthing is not None and isthing != thing:
      continue
    s = stats[label]
    if s.tp + s.fp + s.fn == 0:
      continue
    n += 1
    pq += s.iou / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
    sq += s.iou / s.tp if s.tp != 0 else 0
    rq += s.tp / (s.tp + 0.5 * s.fp + 0.5 * s.fn)
  return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n} if n else None


def random_image(rng):
  """(gt map, gt segment arrays padded to S, gt info list, pred map, pred arrays, pred info)."""
  gt = np.zeros((H, W), np.int32)
  n = int(rng.integers(1, 8))
  g_ids = rng.choice(np.arange(1, 500), n, replace=False)
  g_cls = rng.choice(CAT_IDS, n)
  g_crowd = np.zeros(n, bool)
  for k in range(n):  # at most one crowd segment per category, as COCO (and panopticapi)
    if rng.random() < 0.25 and not (g_crowd & (g_cls == g_cls[k])).any():
      g_crowd[k] = True
  for k in range(n):  # later rectangles cover earlier ones; some segments vanish
    y, x = rng.integers(0, H - 2), rng.integers(0, W - 2)
    gt[y:y + rng.integers(3, 12), x:x + rng.integers(3, 12)] = g_ids[k]
  gt[rng.random((H, W)) < 0.05] = VOID
  # prediction: the gt relabelled, shifted and partly overwritten, some categories changed
  relabel = {int(i): int(j) for i, j in zip(g_ids, rng.choice(np.arange(1, 900), n, False))}
  pred = np.vectorize(lambda v: relabel.get(int(v), 0))(gt).astype(np.int32)
  pred = np.roll(pred, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), (0, 1))
  extra = rng.choice(np.arange(900, 999), 3, replace=False)
  for e in extra[:int(rng.integers(0, 4))]:
    y, x = rng.integers(0, H - 2), rng.integers(0, W - 2)
    pred[y:y + rng.integers(2, 10), x:x + rng.integers(2, 10)] = e
  pred[rng.random((H, W)) < 0.05] = VOID
  p_ids = np.array(sorted(set(np.unique(pred).tolist()) - {VOID}), np.int64)
  gt_cls_of = {relabel[int(i)]: int(c) for i, c in zip(g_ids, g_cls)}
  p_cls = np.array([gt_cls_of[i] if i in gt_cls_of and rng.random() < 0.85
                    else int(rng.choice(CAT_IDS)) for i in p_ids.tolist()], np.int64)
  gt_info = [{"id": int(i), "category_id": int(c), "iscrowd": int(w),
              "area": int((gt == i).sum())} for i, c, w in zip(g_ids, g_cls, g_crowd)]
  pred_info = [{"id": int(i), "category_id": int(c), "iscrowd": 0}
               for i, c in zip(p_ids, p_cls)]
  return (gt, pad(g_ids, g_cls, g_crowd, rng), gt_info, pred, pad(p_ids, p_cls, None, rng),
          pred_info)


def pad(ids, cls, crowd, rng):
  """Segment arrays padded to S with junk rows marked invalid, in a shuffled order."""
  n = len(ids)
  perm = rng.permutation(S)
  out = {"segment_ids": np.full(S, 77777, np.int32), "segment_classes": np.full(S, 99, np.int32),
         "segment_iscrowd": np.zeros(S, bool), "segment_valid": np.zeros(S, bool)}
  out["segment_ids"][perm[:n]] = ids
  out["segment_classes"][perm[:n]] = cls
  out["segment_valid"][perm[:n]] = True
  if crowd is not None:
    out["segment_iscrowd"][perm[:n]] = crowd
  else:
    del out["segment_iscrowd"]
  return out


def test_matches_panopticapi_port_on_random_batches():
  rng = np.random.default_rng(0)
  counts = panoptic.init(CATEGORIES)
  stats = {c: Stat() for c in CAT_IDS}
  for _ in range(12):
    images = [random_image(rng) for _ in range(4)]
    maps = [np.stack([im[k] for im in images]) for k in (0, 3)]
    segs = [{key: np.stack([im[k][key] for im in images]) for key in images[0][k]}
            for k in (1, 4)]
    counts = panoptic.update(counts, maps[1], segs[1], maps[0], segs[0], CATEGORIES)
    for gt, _, gt_info, pred, _, pred_info in images:
      reference_single(stats, gt, gt_info, pred, pred_info)
  np.testing.assert_array_equal(counts["tp"], [stats[c].tp for c in CAT_IDS])
  np.testing.assert_array_equal(counts["fp"], [stats[c].fp for c in CAT_IDS])
  np.testing.assert_array_equal(counts["fn"], [stats[c].fn for c in CAT_IDS])
  np.testing.assert_allclose(counts["iou"], [stats[c].iou for c in CAT_IDS], atol=1e-12)
  tps, fps, fns = counts["tp"].sum(), counts["fp"].sum(), counts["fn"].sum()
  assert tps > 30 and fps > 30 and fns > 30, (tps, fps, fns)
  out = panoptic.compute(counts, CATEGORIES)
  for suffix, isthing in (("", None), ("_things", True), ("_stuff", False)):
    ref = reference_average(stats, isthing)
    for key in ("pq", "sq", "rq", "n"):
      np.testing.assert_allclose(out[key + suffix], ref[key], atol=1e-12, err_msg=key + suffix)


_batch_counts = jax.jit(panoptic.batch_counts, static_argnums=(4,))


def test_jit_batch_counts_match_numpy():
  rng = np.random.default_rng(2)
  k = len(CAT_IDS)
  total = {"iou": jnp.zeros(k), "tp": jnp.zeros(k, jnp.int32), "fp": jnp.zeros(k, jnp.int32),
           "fn": jnp.zeros(k, jnp.int32)}
  counts = panoptic.init(CATEGORIES)
  for step in range(6):
    images = [random_image(rng) for _ in range(4)]
    maps = [np.stack([im[k] for im in images]) for k in (0, 3)]
    segs = [{key: np.stack([im[k][key] for im in images]) for key in images[0][k]}
            for k in (1, 4)]
    valid = np.array([True, True, step % 2 == 0, True])
    got = _batch_counts(maps[1], segs[1], maps[0], segs[0], tuple(CAT_IDS), valid)
    total = jax.tree.map(jnp.add, total, got)
    counts = panoptic.update(counts, maps[1], segs[1], maps[0], segs[0], CATEGORIES, valid)
    for key in ("tp", "fp", "fn"):
      np.testing.assert_array_equal(np.asarray(total[key]), counts[key], err_msg=key)
    np.testing.assert_allclose(np.asarray(total["iou"]), counts["iou"], rtol=1e-6)
  assert counts["tp"].sum() > 10 and counts["fp"].sum() > 10
  a, b = panoptic.compute(total, CATEGORIES), panoptic.compute(counts, CATEGORIES)
  for key in ("pq", "sq", "rq", "pq_things", "pq_stuff"):
    np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)


def test_crowd_and_void_rules_per_image():
  """Images one by one, including ones where a crowd region or void forgives a prediction."""
  rng = np.random.default_rng(1)
  forgiven = 0
  for _ in range(40):
    gt, gseg, gt_info, pred, pseg, pred_info = random_image(rng)
    stats = {c: Stat() for c in CAT_IDS}
    reference_single(stats, gt, gt_info, pred, pred_info)
    counts = panoptic.update(panoptic.init(CATEGORIES), pred, pseg, gt, gseg, CATEGORIES)
    np.testing.assert_array_equal(counts["fp"], [stats[c].fp for c in CAT_IDS])
    np.testing.assert_array_equal(counts["tp"], [stats[c].tp for c in CAT_IDS])
    np.testing.assert_array_equal(counts["fn"], [stats[c].fn for c in CAT_IDS])
    forgiven += len(pred_info) - counts["tp"].sum() - counts["fp"].sum()
  assert forgiven > 5  # the crowd / void rule was exercised


def test_analytic_values():
  # gt: thing segment 1 (class 1) on the left 4 columns, stuff 2 (class 7) on the right 4
  gt = np.zeros((4, 8), np.int32)
  gt[:, :4], gt[:, 4:] = 1, 2
  gseg = {"segment_ids": np.array([1, 2]), "segment_classes": np.array([1, 7])}
  # pred: segment 5 (class 1) covers columns 0-2 (IoU 12/16), segment 6 (class 7) column 3-7
  # (IoU 16/20); segment 9 (class 2) nowhere in gt class 2 -> but it must have pixels, so
  # give it row 0 of columns 0-1, taking them from segment 5
  pred = np.zeros((4, 8), np.int32)
  pred[:, :3], pred[:, 3:] = 5, 6
  pred[0, :2] = 9
  pseg = {"segment_ids": np.array([5, 6, 9]), "segment_classes": np.array([1, 7, 2])}
  out = panoptic.pq(pred, pseg, gt, gseg, CATEGORIES)
  # class 1: IoU 10/16 > 0.5, TP. class 7: 16/20 TP. class 2: FP (no void, no crowd)
  per = out["per_class"]
  np.testing.assert_allclose(per[1]["pq"], 10 / 16)
  np.testing.assert_allclose(per[7]["pq"], 16 / 20)
  assert per[2] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
  np.testing.assert_allclose(out["pq"], (10 / 16 + 16 / 20 + 0) / 3)
  np.testing.assert_allclose(out["rq"], (1 + 1 + 0) / 3)
  np.testing.assert_allclose(out["sq"], (10 / 16 + 16 / 20) / 3)
  assert (out["n"], out["n_things"], out["n_stuff"]) == (3, 2, 1)
  np.testing.assert_allclose(out["pq_stuff"], 16 / 20)
  # the same FP on a crowd region of its class is forgiven
  gseg_crowd = {"segment_ids": np.array([1, 2, 3]), "segment_classes": np.array([1, 7, 2]),
                "segment_iscrowd": np.array([False, False, True])}
  gt2 = gt.copy()
  gt2[0, :2] = 3
  out = panoptic.pq(pred, pseg, gt2, gseg_crowd, CATEGORIES)
  assert out["n"] == 2 and out["per_class"][2]["pq"] == 0.0
  # void pixels leave the IoU: segment 6 over void columns 6-7 of the gt still matches 2
  gt3 = gt.copy()
  gt3[:, 6:] = 0
  out = panoptic.pq(pred, pseg, gt3, gseg, CATEGORIES)
  np.testing.assert_allclose(out["per_class"][7]["pq"], 8 / 12)  # 8 / (20 + 8 - 8 - 8 void)


def test_no_segments_gives_nan_and_valid_skips_images():
  gt = np.zeros((2, 4, 4), np.int32)
  seg = {"segment_ids": np.zeros((2, 0), np.int32), "segment_classes": np.zeros((2, 0))}
  out = panoptic.pq(gt, seg, gt, seg, CATEGORIES)
  assert out["n"] == 0 and np.isnan(out["pq"])
  gt[1, :2] = 4
  gseg = {"segment_ids": np.array([[4], [4]]), "segment_classes": np.array([[1], [1]]),
          "segment_valid": np.array([[False], [True]])}
  out = panoptic.pq(np.zeros_like(gt), seg, gt, gseg, CATEGORIES)
  assert out["per_class"][1]["pq"] == 0.0 and out["n"] == 1  # one FN
  out = panoptic.pq(np.zeros_like(gt), seg, gt, gseg, CATEGORIES, valid=[True, False])
  assert out["n"] == 0


def test_bad_input():
  m = np.zeros((4, 4), np.int32)
  m[0] = 3
  seg = {"segment_ids": np.array([3]), "segment_classes": np.array([1])}
  empty = {"segment_ids": np.zeros(0, np.int32), "segment_classes": np.zeros(0, np.int32)}
  with pytest.raises(ValueError, match="no valid segment"):
    panoptic.pq(m, empty, m, seg, CATEGORIES)
  with pytest.raises(ValueError, match="no valid segment"):
    panoptic.pq(m, seg, m, empty, CATEGORIES)
  with pytest.raises(ValueError, match="no pixels"):
    panoptic.pq(np.zeros_like(m), seg, m, seg, CATEGORIES)
  with pytest.raises(ValueError, match="not in categories"):
    panoptic.pq(m, {"segment_ids": [3], "segment_classes": [5]}, m, seg, CATEGORIES)
  with pytest.raises(ValueError, match="repeated"):
    panoptic.pq(m, {"segment_ids": [3, 3], "segment_classes": [1, 1]}, m, seg, CATEGORIES)
  with pytest.raises(ValueError, match="> 0"):
    panoptic.pq(m, {"segment_ids": [3, 0], "segment_classes": [1, 1]}, m, seg, CATEGORIES)
  with pytest.raises(ValueError, match="same"):
    panoptic.pq(m[:3], seg, m, seg, CATEGORIES)
  with pytest.raises(ValueError, match="integer"):
    panoptic.pq(m.astype(np.float32), seg, m, seg, CATEGORIES)
  with pytest.raises(ValueError, match="shape"):
    panoptic.pq(m, {"segment_ids": [3], "segment_classes": [1, 1]}, m, seg, CATEGORIES)
  with pytest.raises(ValueError, match="categories"):
    panoptic.pq(m, seg, m, seg, {})
  with pytest.raises(ValueError, match="segment_ids"):
    panoptic.pq(m, {"ids": [3]}, m, seg, CATEGORIES)
