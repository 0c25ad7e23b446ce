"""COCO polygon segmentations (jaxcv.metrics.coco_rle polygons / merge, and jaxcv.metrics.coco
with polygon GT and results) against pycocotools: rleFrPoly counts (via frPyObjects), the
merged union as COCO.annToRLE, merge union / intersection, and segm evaluation stats."""
import contextlib
import copy
import io

import numpy as np
import pytest

pytest.importorskip("pycocotools")
from pycocotools import mask as mu
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jaxcv.metrics import coco, coco_rle


def _polygon(rng, kind, h, w):
  """One flat polygon [x0, y0, ...] of the given kind (float coordinates)."""
  cx, cy = rng.uniform(-0.2 * w, 1.2 * w), rng.uniform(-0.2 * h, 1.2 * h)
  r = rng.uniform(0.5, 0.6 * max(h, w))
  k = int(rng.integers(3, 12))
  ang = np.sort(rng.uniform(0, 2 * np.pi, k))
  if kind == "convex":
    rad = np.full(k, r)
  elif kind == "concave":  # star-shaped, radii vary
    rad = r * rng.uniform(0.2, 1.0, k)
  elif kind == "tiny":  # within a pixel or two
    rad = rng.uniform(0.05, 1.2, k)
  elif kind == "self_intersecting":
    ang = rng.uniform(0, 2 * np.pi, k)
    rad = r * rng.uniform(0.3, 1.0, k)
  elif kind == "outside":  # mostly outside the image, some vertices far out
    rad = r * rng.uniform(1.0, 3.0, k)
    cx, cy = rng.choice([-1.0, 1.0]) * w * rng.uniform(0.5, 1.5), rng.uniform(-h, 2 * h)
  else:
    raise AssertionError(kind)
  xy = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
  q = rng.random()
  if q < 0.2:
    xy = np.round(xy)  # integer vertices: boundaries through pixel centres
  elif q < 0.35:
    xy = np.round(xy * 2) / 2  # half-integers: the (int)(5 x + .5) ties
  elif q < 0.5:
    xy = np.round(xy * 5) / 5 - 0.1  # on the 1/5 grid's rounding ties
  if rng.random() < 0.15:  # repeated vertex (zero-length edge: s = 0 / 0 in C)
    i = int(rng.integers(len(xy)))
    xy = np.insert(xy, i, xy[i], axis=0)
  if rng.random() < 0.1:  # collinear vertex
    i = int(rng.integers(len(xy) - 1))
    xy = np.insert(xy, i + 1, (xy[i] + xy[i + 1]) / 2, axis=0)
  return xy.ravel().tolist()


def _object(rng, h, w):
  kinds = ["convex", "concave", "tiny", "self_intersecting", "outside"]
  polys = [_polygon(rng, kinds[int(rng.integers(len(kinds)))], h, w)
           for _ in range(int(rng.integers(1, 5)))]
  if len(polys) > 1 and rng.random() < 0.3:  # later degenerate parts: < 3 points, odd length
    polys.insert(int(rng.integers(1, len(polys) + 1)),
                 rng.uniform(-1, max(h, w), int(rng.choice([0, 1, 2, 3, 4, 5]))).tolist())
  if rng.random() < 0.1:  # odd length: the trailing number is ignored
    polys[0] = polys[0] + [float(rng.uniform(0, w))]
  return polys


def test_polygons_equal_pycocotools():
  rng = np.random.default_rng(0)
  n_multi = n_degenerate = n_nonempty = 0
  for i in range(300):
    h, w = (int(v) for v in rng.integers(1, 48, 2))
    polys = _object(rng, h, w)
    ref_list = mu.frPyObjects(polys, h, w)
    ours_list = coco_rle.from_polygons(polys, h, w)
    assert [r["counts"] for r in ours_list] == [r["counts"] for r in ref_list], (i, polys)
    ref = mu.merge(ref_list)
    ours = coco_rle.polygons_to_rle(polys, h, w)
    assert ours["counts"] == ref["counts"] and ours["size"] == list(ref["size"]), (i, polys)
    counts = coco_rle.polygons_to_counts(polys, h, w)
    np.testing.assert_array_equal(counts, coco_rle.string_to_counts(ref["counts"]))
    assert coco_rle.area(ours) == mu.area(ref)
    n_multi += len(polys) > 1
    n_degenerate += any(len(p) < 6 for p in polys)
    n_nonempty += mu.area(ref) > 0
  assert n_multi >= 100 and n_degenerate >= 20 and n_nonempty >= 200


def test_polygon_special_cases():
  cases = [
      (10, 12, [[1, 1, 5, 1, 5, 5, 1, 5]]),  # integer square
      (10, 12, [[0, 0, 12, 0, 12, 10, 0, 10]]),  # whole image (first count 0)
      (10, 12, [[-5, -5, 20, -5, 20, 20, -5, 20]]),  # covers the image from outside
      (10, 12, [[-0.3, -0.3, 0.3, -0.3, 0.3, 0.3]]),  # around pixel (0, 0), negative coords
      (10, 12, [[3.2, 3.2, 3.3, 3.2, 3.3, 3.3]]),  # tinier than a pixel
      (10, 12, [[2, 2, 2, 2, 2, 2]]),  # all vertices equal
      (10, 12, [[1, 1, 5, 5, 9, 9]]),  # collinear
      (10, 12, [[1, 1, 5, 1, 5, 5], [], [7], [2, 2], [2, 2, 3, 3], [1, 1, 4, 1, 4]]),
      (10, 12, [[1, 1, 5, 1, 5, 5], [1, 1, 5, 1, 5, 5]]),  # the same part twice
      (10, 12, [[11.4, 0, 11.6, 0, 11.6, 10, 11.4, 10]]),  # last column, y up to h
      (1, 1, [[0, 0, 1, 0, 1, 1, 0, 1]]),
      (7, 9, [[-100.1, -100.1, 100.1, -100.1, 100.1, 100.1]]),
  ]
  for h, w, polys in cases:
    ref = mu.merge(mu.frPyObjects(polys, h, w))
    assert coco_rle.polygons_to_rle(polys, h, w)["counts"] == ref["counts"], polys
    for p, r in zip(polys, mu.frPyObjects(polys, h, w)):
      assert coco_rle.from_polygon(p, h, w)["counts"] == r["counts"], p


@pytest.mark.parametrize("polys", [[], [[1, 1, 5, 5]], [[1, 1, 5]], [[1, 1]], [[]]])
def test_polygons_rejected_like_pycocotools(polys):
  """pycocotools fails on these (IndexError / TypeError / Exception); we raise ValueError."""
  with pytest.raises(Exception):  # noqa: B017
    mu.frPyObjects(polys, 10, 12)
  with pytest.raises(ValueError, match="polygon"):
    coco_rle.polygons_to_rle(polys, 10, 12)
  with pytest.raises(ValueError, match="polygon"):
    coco_rle.from_polygons(polys, 10, 12)


def test_merge_equals_pycocotools():
  rng = np.random.default_rng(1)
  for i in range(100):
    h, w = (int(v) for v in rng.integers(1, 30, 2))
    n = int(rng.integers(1, 5))
    masks = [(rng.random((h, w)) < p).astype(np.uint8) for p in rng.uniform(0, 1, n)]
    if i % 5 == 0:
      masks[0][:] = 1
    if i % 7 == 0:
      masks[-1][:] = 0
    rles = [mu.encode(np.asfortranarray(m)) for m in masks]
    for intersect in (False, True):
      ref = mu.merge(rles, intersect=int(intersect))
      ours = coco_rle.merge(rles, intersect=intersect)
      assert ours["counts"] == ref["counts"], (i, intersect)
      combined = np.all(masks, 0) if intersect else np.any(masks, 0)
      np.testing.assert_array_equal(coco_rle.decode(ours), combined)
  with pytest.raises(ValueError, match="different sizes"):
    coco_rle.merge([coco_rle.encode(np.ones((2, 3))), coco_rle.encode(np.ones((3, 2)))])
  with pytest.raises(ValueError, match="at least one"):
    coco_rle.merge([])


# ------------------------------------------------------------------------------------------
# Evaluation with polygon GT and polygon results.

def _pycoco(gt, dets):
  with contextlib.redirect_stdout(io.StringIO()):
    cg = COCO()
    cg.dataset = copy.deepcopy(gt)
    cg.createIndex()
    e = COCOeval(cg, cg.loadRes(copy.deepcopy(dets)), "segm")
    e.evaluate()
    e.accumulate()
    e.summarize()
  return e


def _jitter_polys(rng, polys):
  out = []
  for p in polys:
    a = np.asarray(p, np.float64)
    a = a[:a.size // 2 * 2].reshape(-1, 2)
    out.append((a * rng.uniform(0.9, 1.1) + rng.normal(0, 0.8, a.shape)).ravel().tolist())
  return out


def _polygon_case(rng, n_img=4, n_cat=3):
  img_ids = rng.choice(np.arange(1, 500), n_img, replace=False).tolist()
  cat_ids = sorted(rng.choice(np.arange(1, 30), n_cat, replace=False).tolist())
  images, anns, dets = [], [], []
  for im in img_ids:
    h, w = (int(v) for v in rng.integers(16, 40, 2))
    images.append({"id": int(im), "height": h, "width": w})
    for _ in range(int(rng.integers(0, 6))):
      polys = _object(rng, h, w)
      while len(polys[0]) <= 4 or not coco_rle.polygons_to_counts(polys, h, w)[1::2].sum():
        polys = _object(rng, h, w)
      crowd = int(rng.random() < 0.15)
      seg = polys
      if crowd:  # COCO crowds are uncompressed RLE
        seg = {"size": [h, w], "counts": coco_rle.polygons_to_counts(polys, h, w).tolist()}
      area = float(coco_rle.polygons_to_counts(polys, h, w)[1::2].sum())
      area = float(rng.choice([area, 32.0 ** 2, 96.0 ** 2, area * 30]))
      a = {"id": len(anns) + 1, "image_id": int(im), "category_id": int(rng.choice(cat_ids)),
           "segmentation": seg, "area": area, "iscrowd": crowd, "bbox": [0.0, 0.0, 1.0, 1.0]}
      anns.append(a)
      for _ in range(int(rng.integers(0, 3))):
        dets.append({"image_id": int(im), "category_id": a["category_id"],
                     "segmentation": _jitter_polys(rng, polys) if rng.random() < 0.8 else polys,
                     "score": float(np.round(rng.random(), 1))})
    for _ in range(int(rng.integers(0, 4))):
      dets.append({"image_id": int(im), "category_id": int(rng.choice(cat_ids)),
                   "segmentation": _object(rng, h, w), "score": float(np.round(rng.random(), 1))})
  dets = [d for d in dets if len(d["segmentation"][0]) > 4]
  gt = {"images": images, "annotations": anns,
        "categories": [{"id": int(c), "name": str(c)} for c in cat_ids]}
  return gt, [dets[i] for i in rng.permutation(len(dets))]


def _as_rle_results(gt, dets):
  """The results with each polygon list replaced by pycocotools' own merged RLE."""
  hw = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
  return [dict(d, segmentation=mu.merge(mu.frPyObjects(d["segmentation"], *hw[d["image_id"]])))
          for d in dets]


def _assert_same(res, e):
  np.testing.assert_allclose(res.stats, e.stats, rtol=0, atol=1e-12)
  for name in ("precision", "recall", "scores"):
    np.testing.assert_allclose(getattr(res, name), e.eval[name], rtol=0, atol=1e-12,
                               err_msg=name)


def test_segm_polygons_equal_pycocotools():
  """Polygon GT (and uncompressed-RLE crowds) with polygon results. pycocotools' loadRes
  cannot take polygon results without a bbox (maskUtils.area fails on a list), so the
  results are given to it as its own frPyObjects + merge RLEs: the area of a result is that
  of its merged RLE in both. Every 4th case gives results a bbox instead, which pycocotools
  takes as polygons directly (area = w * h, from loadRes' bbox branch)."""
  rng = np.random.default_rng(2)
  n_crowd = n_with_box = 0
  for i in range(20):
    gt, dets = _polygon_case(rng)
    if i % 4 == 3:
      for d in dets:
        d["bbox"] = [0.0, 0.0, float(rng.uniform(1, 120)), float(rng.uniform(1, 120))]
      e = _pycoco(gt, dets)
      n_with_box += 1
    else:
      e = _pycoco(gt, _as_rle_results(gt, dets))
    res = coco.evaluate_full(gt, dets, "segm")
    _assert_same(res, e)
    np.testing.assert_array_equal(coco.evaluate(gt, dets, "segm"), res.stats)
    n_crowd += any(a["iscrowd"] for a in gt["annotations"])
  assert n_crowd >= 5 and n_with_box == 5


def test_segm_bad_polygons():
  gt = {"images": [{"id": 1, "height": 10, "width": 10}], "categories": [{"id": 3}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "area": 16.0, "iscrowd": 0,
                         "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]}]}
  ok = {"image_id": 1, "category_id": 3, "score": 0.5, "segmentation": [[1, 1, 5, 1, 5, 5]]}
  assert coco.evaluate(gt, [ok], "segm")[1] == 0.0  # IoU 6 / 16 < 0.5
  for bad in ([], [[1, 1, 5, 5]], [[1, 1, 5]], [[1, 1, 5, 1, "a", 5]]):
    with pytest.raises(ValueError, match="polygon"):
      coco.evaluate(gt, [ok, dict(ok, segmentation=bad)], "segm")
    bad_gt = copy.deepcopy(gt)
    bad_gt["annotations"][0]["segmentation"] = bad
    with pytest.raises(ValueError, match="polygon"):
      coco.evaluate(bad_gt, [ok], "segm")
