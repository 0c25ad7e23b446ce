"""VOC mAP against a NumPy port of the devkit's VOCevaldet.m / VOCap.m written here as plain
loops over detections and ground-truth objects, on random cases with difficult objects,
duplicate detections, tied scores, empty classes, both interpolations and the +1 convention;
input formats; analytic values; input errors."""
import numpy as np
import pytest

from jaxcv.metrics import voc

C = 4


def devkit_ap(recs, det_list, cls, minoverlap=0.5, use_07=False, plus_one=False,
              inclusive=True):
  """VOCevaldet for one class. recs: list of per-image lists of objects (dicts with bbox,
  cls, difficult); det_list: (image index, class, score, bbox) tuples in input order."""
  e = 1.0 if plus_one else 0.0
  gt, npos = [], 0
  for objects in recs:
    objs = [o for o in objects if o["cls"] == cls]
    gt.append({"BB": [o["bbox"] for o in objs], "diff": [o["difficult"] for o in objs],
               "det": [False] * len(objs)})
    npos += sum(not o["difficult"] for o in objs)
  dets = [d for d in det_list if d[1] == cls]
  # MATLAB sort(-confidence) is stable
  order = sorted(range(len(dets)), key=lambda k: -dets[k][2])
  tp, fp = [0] * len(dets), [0] * len(dets)
  for d, k in enumerate(order):
    i, bb = dets[k][0], dets[k][3]
    ovmax, jmax = -np.inf, -1
    for j, bbgt in enumerate(gt[i]["BB"]):
      bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
      iw = bi[2] - bi[0] + e
      ih = bi[3] - bi[1] + e
      if iw > 0 and ih > 0:
        ua = ((bb[2] - bb[0] + e) * (bb[3] - bb[1] + e)
              + (bbgt[2] - bbgt[0] + e) * (bbgt[3] - bbgt[1] + e) - iw * ih)
        ov = iw * ih / ua
        if ov > ovmax:
          ovmax, jmax = ov, j
    if (ovmax >= minoverlap) if inclusive else (ovmax > minoverlap):
      if not gt[i]["diff"][jmax]:
        if not gt[i]["det"][jmax]:
          tp[d] = 1
          gt[i]["det"][jmax] = True
        else:
          fp[d] = 1
    else:
      fp[d] = 1
  if npos == 0:
    return np.nan
  ctp, cfp, rec, prec = 0, 0, [], []
  for d in range(len(dets)):
    ctp += tp[d]
    cfp += fp[d]
    rec.append(ctp / npos)
    prec.append(ctp / (ctp + cfp) if ctp + cfp else 0.0)
  if use_07:
    ap = 0.0
    for t in range(11):
      ps = [p for p, r in zip(prec, rec) if r >= t / 10]
      ap += (max(ps) if ps else 0.0) / 11
    return ap
  mrec = [0.0] + rec + [1.0]
  mpre = [0.0] + prec + [0.0]
  for i in range(len(mpre) - 2, -1, -1):
    mpre[i] = max(mpre[i], mpre[i + 1])
  return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec))
             if mrec[i] != mrec[i - 1])


def random_case(rng, n_images=6, integer=True):
  recs, gt = [], []
  for _ in range(n_images):
    n = int(rng.integers(0, 6))
    xy = rng.integers(0, 30, (n, 2)) if integer else rng.uniform(0, 30, (n, 2))
    wh = rng.integers(0, 15, (n, 2)) if integer else rng.uniform(0, 15, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float64)
    classes = rng.integers(1, C, n)  # class C never has ground truth
    difficult = rng.random(n) < 0.25
    gt.append({"boxes": boxes.astype(np.float32), "classes": classes, "difficult": difficult})
    recs.append([{"bbox": boxes[k].astype(np.float32).astype(np.float64).tolist(),
                  "cls": int(classes[k]), "difficult": bool(difficult[k])} for k in range(n)])
  dets = []
  for i, g in enumerate(gt):
    for k in range(len(g["classes"])):  # near-copies of gt boxes, some twice (duplicates)
      for _ in range(int(rng.integers(0, 3))):
        jitter = rng.integers(-3, 4, 4) if integer else rng.normal(0, 2, 4)
        b = g["boxes"][k] + jitter
        b[2:] = np.maximum(b[2:], b[:2])
        dets.append((i, int(g["classes"][k]) if rng.random() < 0.9 else int(rng.integers(1, C)),
                     float(rng.integers(0, 5)) if integer else float(rng.random()), b))
    for _ in range(int(rng.integers(0, 4))):  # background detections, also of class C
      xy = rng.integers(0, 30, 2)
      dets.append((i, int(rng.integers(1, C + 1)), float(rng.integers(0, 5)),
                   np.concatenate([xy, xy + rng.integers(0, 15, 2)]).astype(np.float64)))
  dets = [(i, c, s, np.asarray(b, np.float32)) for i, c, s, b in dets]
  arrays = {"image_id": np.array([d[0] for d in dets], np.int64),
            "classes": np.array([d[1] for d in dets], np.int64),
            "scores": np.array([d[2] for d in dets], np.float32),
            "boxes": np.array([d[3] for d in dets], np.float32).reshape(-1, 4)}
  det_list = [(d[0], d[1], float(np.float32(d[2])), d[3].astype(np.float64).tolist())
              for d in dets]
  return gt, recs, arrays, det_list


@pytest.mark.parametrize("use_07", [False, True])
@pytest.mark.parametrize("plus_one", [False, True])
def test_matches_devkit_port_on_random_cases(use_07, plus_one):
  rng = np.random.default_rng(int(use_07) * 2 + int(plus_one))
  checked = 0
  for case in range(40):
    integer = case % 2 == 0  # integer boxes and scores: exact IoU ties and tied scores
    gt, recs, dets, det_list = random_case(rng, integer=integer)
    thr = [0.5, 0.3, 0.7, 0.0][case % 4]  # 0: touching boxes stay FP
    out = voc.evaluate(gt, dets, thr, use_07, plus_one, num_classes=C)
    ref = [devkit_ap(recs, det_list, c, thr, use_07, plus_one) for c in range(1, C + 1)]
    np.testing.assert_allclose(out["ap"], ref, rtol=0, atol=1e-12)
    assert np.isnan(out["ap"][C - 1])  # no ground truth for class C
    have = ~np.isnan(ref)
    np.testing.assert_allclose(out["map"], np.mean(np.asarray(ref)[have]), atol=1e-12)
    checked += int(np.sum(np.asarray(ref)[have] > 0))
  assert checked > 40  # the cases are not all trivial zeros


def test_iou_exactly_at_threshold_and_exclusive_option():
  # det [0,0,10,10] vs gt [0,0,10,5]: IoU exactly 0.5 -> TP (>=), FP with iou_inclusive=False
  gt = [{"boxes": np.array([[0, 0, 10, 5]], np.float32), "classes": np.array([1])}]
  dets = (np.array([0]), np.array([1]), np.array([0.9]), np.array([[0, 0, 10, 10]], float))
  assert voc.evaluate(gt, dets)["map"] == 1.0
  assert voc.evaluate(gt, dets, iou_inclusive=False)["map"] == 0.0
  recs = [[{"bbox": [0, 0, 10, 5], "cls": 1, "difficult": False}]]
  assert devkit_ap(recs, [(0, 1, 0.9, [0, 0, 10, 10])], 1, inclusive=False) == 0.0


def test_analytic_ap():
  # 2 gts in one image; dets in score order: TP, FP (duplicate), TP, FP (background)
  # recall 1/2,1/2,1,1; precision 1,1/2,2/3,1/2. VOC2010 AP = 1/2*1 + 1/2*2/3 = 5/6.
  # 11-point: t<=0.5 -> 1 (6 levels), t>0.5 -> 2/3 (5 levels): (6 + 10/3) / 11
  gt = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
         "classes": np.array([1, 1]), "difficult": np.array([False, False])},
        {"boxes": np.array([[0, 0, 5, 5]], np.float32), "classes": np.array([2]),
         "difficult": np.array([True])}]  # only a difficult object: AP NaN, not in the mean
  dets = {"image_id": np.array([0, 0, 0, 0, 1]), "classes": np.array([1, 1, 1, 1, 2]),
          "scores": np.array([0.9, 0.8, 0.7, 0.6, 0.99]),
          "boxes": np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 31],
                             [50, 50, 60, 60], [0, 0, 5, 5]], np.float32)}
  out = voc.evaluate(gt, dets, class_names=["a", "b"])
  np.testing.assert_allclose(out["ap"][0], 5 / 6)
  assert np.isnan(out["ap"][1]) and out["map"] == out["ap"][0]
  assert out["ap_per_class"]["a"] == out["ap"][0]
  np.testing.assert_array_equal(out["num_positives"], [2, 0])
  out07 = voc.evaluate(gt, dets, use_07_metric=True, num_classes=2)
  np.testing.assert_allclose(out07["ap"][0], (6 + 10 / 3) / 11)
  # a class with ground truth and no detections has AP 0
  out = voc.evaluate(gt, dict(dets, classes=np.array([2, 2, 2, 2, 2])), num_classes=2)
  assert out["ap"][0] == 0.0


def test_tied_scores_keep_input_order():
  # equal scores: the detection given first is matched first (stable sort)
  gt = [{"boxes": np.array([[0, 0, 10, 10]], np.float32), "classes": np.array([1])}]
  boxes = np.array([[50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
  dets = (np.array([0, 0]), np.array([1, 1]), np.array([0.5, 0.5]), boxes)
  # FP then TP: precision 0, 1/2 at recall 0, 1 -> AP 1/2; the other order would give 1
  assert voc.evaluate(gt, dets)["map"] == 0.5
  assert voc.evaluate(gt, (dets[0], dets[1], dets[2], boxes[::-1]))["map"] == 1.0


def test_input_formats_agree():
  rng = np.random.default_rng(7)
  gt, _, dets, _ = random_case(rng, n_images=5)
  ref = voc.evaluate(gt, dets, num_classes=C)["ap"]
  # mapping with string ids
  names = [f"{i:06d}" for i in range(len(gt))]
  mapped = voc.evaluate(dict(zip(names, gt)),
                        dict(dets, image_id=np.array([names[i] for i in dets["image_id"]])),
                        num_classes=C)["ap"]
  np.testing.assert_array_equal(mapped, ref)
  # padded batch arrays with box_valid, and padded [B, K] detections with valid
  m = 8
  batch = {"image_id": np.arange(len(gt)) + 100, "boxes": np.zeros((len(gt), m, 4), np.float32),
           "classes": np.ones((len(gt), m), np.int32), "box_valid": np.zeros((len(gt), m), bool),
           "difficult": np.zeros((len(gt), m), bool)}
  for i, g in enumerate(gt):
    n = len(g["classes"])
    batch["boxes"][i, :n] = g["boxes"]
    batch["classes"][i, :n] = g["classes"]
    batch["box_valid"][i, :n] = True
    batch["difficult"][i, :n] = g["difficult"]
  k = 16
  pd = {"image_id": batch["image_id"], "boxes": np.zeros((len(gt), k, 4), np.float32),
        "classes": np.ones((len(gt), k), np.int32), "scores": np.zeros((len(gt), k)),
        "valid": np.zeros((len(gt), k), bool)}
  for i in range(len(gt)):
    sel = np.nonzero(dets["image_id"] == i)[0]
    assert len(sel) <= k
    for name in ("boxes", "classes", "scores"):
      pd[name][i, :len(sel)] = dets[name][sel]
    pd["valid"][i, :len(sel)] = True
  # detections regrouped by image change the input order of tied scores, so compare with
  # the ungrouped result only where scores are distinct
  regrouped = {name: np.concatenate([dets[name][dets["image_id"] == i] for i in range(len(gt))])
               for name in dets}
  ref = voc.evaluate(gt, regrouped, num_classes=C)["ap"]
  np.testing.assert_array_equal(voc.evaluate(batch, pd, num_classes=C)["ap"], ref)


def test_bad_input():
  gt = [{"boxes": np.array([[0, 0, 10, 10]], np.float32), "classes": np.array([1])}]

  def dets(**kw):
    d = {"image_id": np.array([0]), "classes": np.array([1]), "scores": np.array([0.5]),
         "boxes": np.array([[0, 0, 10, 10]], np.float32)}
    d.update(kw)
    return d

  with pytest.raises(ValueError, match="image id"):
    voc.evaluate(gt, dets(image_id=np.array([3])))
  with pytest.raises(ValueError, match="must be in 1..2"):
    voc.evaluate(gt, dets(classes=np.array([3])), num_classes=2)
  with pytest.raises(ValueError, match="must be in 1..1"):
    voc.evaluate(gt, dets(classes=np.array([0])))
  with pytest.raises(ValueError, match="x2 < x1"):
    voc.evaluate(gt, dets(boxes=np.array([[5, 0, 4, 10]], np.float32)))
  with pytest.raises(ValueError, match="x2 < x1"):
    voc.evaluate([{"boxes": np.array([[0, 9, 10, 8]]), "classes": [1]}], dets())
  with pytest.raises(ValueError, match="NaN"):
    voc.evaluate(gt, dets(scores=np.array([np.nan])))
  with pytest.raises(ValueError, match="NaN"):
    voc.evaluate(gt, dets(boxes=np.array([[0, 0, np.nan, 1]])))
  with pytest.raises(ValueError, match="last dim 4"):
    voc.evaluate(gt, dets(boxes=np.zeros((1, 5))))
  with pytest.raises(ValueError, match="shape"):
    voc.evaluate(gt, dets(scores=np.array([0.5, 0.4])))
  with pytest.raises(ValueError, match="must match"):
    voc.evaluate([{"boxes": np.zeros((2, 4)), "classes": [1]}], dets())
  with pytest.raises(ValueError, match="iou_threshold"):
    voc.evaluate(gt, dets(), iou_threshold=1.5)
  with pytest.raises(ValueError, match="class_names"):
    voc.evaluate(gt, dets(), class_names=["a"], num_classes=2)
