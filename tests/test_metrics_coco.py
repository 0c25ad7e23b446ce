"""COCO evaluation (jaxcv.metrics.coco) against pycocotools 2.0.x: summary stats and the full
precision / recall / scores arrays on random cases (crowd GTs, GT areas exactly 32^2 and 96^2,
tied scores within and across images, > 100 detections in a pair, categories and images
without GT, empty result lists), the padded-batch evaluator against `evaluate` on its own json
export, the RLE codec against pycocotools.mask, bit-exact bbox IoU, NumPy's
summation order, and that float64 stays scoped to the evaluator."""
import contextlib
import copy
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("pycocotools")
from pycocotools import mask as mu
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jaxcv.metrics import coco, coco_inputs, coco_match, coco_rle


def make_case(rng, iou_type="bbox", n_img=6, n_cat=4, big_pair=False, num_kpts=17, hw=(24, 32)):
  img_ids = rng.choice(np.arange(1, 1000), n_img, replace=False).tolist()
  cat_ids = sorted(rng.choice(np.arange(1, 50), n_cat, replace=False).tolist())
  H, W = hw
  images = [{"id": int(i), "height": H, "width": W} for i in img_ids]
  anns, dets = [], []
  ann_ids = rng.permutation(np.arange(1, 10000))
  gt_cats = cat_ids[:-1] if n_cat > 1 else cat_ids  # last category has no gt
  for im in img_ids:
    if rng.random() < 0.15:
      continue  # image without gt
    for _ in range(rng.integers(0, 7)):
      c = int(rng.choice(gt_cats))
      a = _gt_ann(rng, iou_type, H, W, num_kpts)
      a.update(id=int(ann_ids[len(anns)]), image_id=int(im), category_id=c)
      anns.append(a)
  # duplicated gt (ties between gts)
  if anns and rng.random() < 0.5:
    a = copy.deepcopy(anns[rng.integers(len(anns))]); a["id"] = int(ann_ids[len(anns)])
    anns.append(a)
  for a in anns:
    for _ in range(rng.integers(0, 3)):
      dets.append(_jitter(rng, a, iou_type, H, W, num_kpts))
  for _ in range(rng.integers(0, 4 * n_img)):
    im = int(rng.choice(img_ids)); c = int(rng.choice(cat_ids))
    b = _gt_ann(rng, iou_type, H, W, num_kpts)
    dets.append(_det_from(b, iou_type, im, c, rng))
  if big_pair:
    im = int(rng.choice(img_ids)); c = int(gt_cats[0])
    for _ in range(rng.integers(100, 130)):
      b = _gt_ann(rng, iou_type, H, W, num_kpts)
      dets.append(_det_from(b, iou_type, im, c, rng))
    a = _gt_ann(rng, iou_type, H, W, num_kpts)
    a.update(id=int(ann_ids[len(anns)]), image_id=im, category_id=c); anns.append(a)
  order = rng.permutation(len(dets))
  dets = [dets[i] for i in order]
  gt = {"images": images, "annotations": anns,
        "categories": [{"id": int(c), "name": str(c)} for c in cat_ids]}
  return gt, dets

def _box(rng, H, W):
  kind = rng.integers(4)
  if kind == 0:  # exact area 32^2 or 96^2 boxes
    s = float(rng.choice([32, 96])); return [float(rng.integers(0, 5)), float(rng.integers(0, 5)), s, s]
  scale = float(rng.choice([10, 40, 120]))
  w, h = rng.uniform(1, scale, 2)
  if rng.random() < 0.3:
    w, h = np.round(w), np.round(h)
  return [float(np.round(rng.uniform(0, W), 1)), float(np.round(rng.uniform(0, H), 1)), float(w), float(h)]

def _gt_ann(rng, iou_type, H, W, K):
  a = {"iscrowd": int(rng.random() < 0.15)}
  if iou_type == "bbox":
    a["bbox"] = _box(rng, H, W)
    a["area"] = a["bbox"][2] * a["bbox"][3]
    r = rng.random()
    if r < 0.1: a["area"] = 32.0 ** 2
    elif r < 0.2: a["area"] = 96.0 ** 2
  elif iou_type == "segm":
    m = np.zeros((H, W), np.uint8)
    x0, y0 = rng.integers(0, W), rng.integers(0, H)
    m[y0:y0 + rng.integers(1, H), x0:x0 + rng.integers(1, W)] = 1
    m &= (rng.random((H, W)) < rng.choice([1.0, 0.8])).astype(np.uint8)
    rle = mu.encode(np.asfortranarray(m))
    if a["iscrowd"]:
      rle = {"size": [H, W], "counts": _counts_list(m)}  # uncompressed like COCO crowds
    else:
      rle["counts"] = rle["counts"].decode() if rng.random() < 0.5 else rle["counts"]
    a["segmentation"] = rle
    a["area"] = float(rng.choice([m.sum(), 32 ** 2, 96 ** 2, m.sum() * 40.0]))
    a["bbox"] = [0.0, 0.0, 1.0, 1.0]
  else:
    x0, y0 = rng.uniform(0, W), rng.uniform(0, H)
    bw, bh = rng.uniform(2, 60, 2)
    kp = np.stack([x0 + rng.uniform(0, bw, K), y0 + rng.uniform(0, bh, K),
                   rng.choice([0, 1, 2], K, p=[0.3, 0.35, 0.35])], 1)
    if rng.random() < 0.2:
      kp[:, 2] = 0
    kp[kp[:, 2] == 0, :2] = 0
    a["keypoints"] = np.round(kp, 2).ravel().tolist()
    a["num_keypoints"] = int((kp[:, 2] > 0).sum())
    a["bbox"] = [float(x0), float(y0), float(bw), float(bh)]
    a["area"] = float(rng.choice([bw * bh, 32 ** 2, 96 ** 2, bw * bh * 5]))
  return a

def _counts_list(m):
  flat = m.ravel(order="F"); out = []; p = 0; c = 0
  for v in flat:
    if v != p: out.append(c); c = 0; p = v
    c += 1
  out.append(c); return out

def _det_from(a, iou_type, im, c, rng):
  d = {"image_id": im, "category_id": c, "score": float(np.round(rng.random(), 1))}
  if iou_type == "bbox": d["bbox"] = list(a["bbox"])
  elif iou_type == "segm":
    s = dict(a["segmentation"])
    if isinstance(s["counts"], list):
          s = mu.frPyObjects(s, *s["size"])
    d["segmentation"] = s
  else: d["keypoints"] = list(a["keypoints"])
  return d

def _jitter(rng, a, iou_type, H, W, K):
  d = _det_from(a, iou_type, a["image_id"], a["category_id"], rng)
  if iou_type == "bbox" and rng.random() < 0.7:
    b = np.array(d["bbox"]); b[:2] += rng.normal(0, 0.05 * b[2:].mean() + 0.1, 2); b[2:] *= rng.uniform(0.85, 1.15, 2)
    d["bbox"] = b.tolist()
  elif iou_type == "keypoints" and rng.random() < 0.8:
    k = np.array(d["keypoints"]).reshape(-1, 3); k[:, :2] += rng.normal(0, 2, (k.shape[0], 2)); k[:, 2] = 1
    d["keypoints"] = k.ravel().tolist()
  return d



def pycoco(gt, dets, iou_type, sigmas=None):
  """pycocotools' COCO + loadRes + COCOeval (an empty result list gets an empty result set,
  which loadRes itself cannot build)."""
  with contextlib.redirect_stdout(io.StringIO()):
    cg = COCO()
    cg.dataset = copy.deepcopy(gt)
    cg.createIndex()
    if dets:
      cd = cg.loadRes(copy.deepcopy(dets))
    else:
      cd = COCO()
      cd.dataset = {"images": list(gt["images"]), "annotations": [],
                    "categories": copy.deepcopy(gt["categories"])}
      cd.createIndex()
    e = COCOeval(cg, cd, iou_type)
    if sigmas is not None:
      e.params.kpt_oks_sigmas = np.asarray(sigmas)
    e.evaluate()
    e.accumulate()
    e.summarize()
  return e


def _assert_same(res, e, arrays=True):
  assert res.stats.shape == np.asarray(e.stats).shape
  np.testing.assert_allclose(res.stats, e.stats, rtol=0, atol=1e-12)
  if arrays:
    for name in ("precision", "recall", "scores"):
      np.testing.assert_allclose(getattr(res, name), e.eval[name], rtol=0, atol=1e-12,
                                 err_msg=name)


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
def test_random_cases_equal_pycocotools(iou_type):
  rng = np.random.default_rng({"bbox": 0, "segm": 1, "keypoints": 2}[iou_type])
  n_big = n_empty = 0
  for i in range(50):
    gt, dets = make_case(rng, iou_type, n_img=5, big_pair=(i % 10 == 0))
    if i % 12 == 5:
      dets = []
    n_big += i % 10 == 0
    n_empty += not dets
    e = pycoco(gt, dets, iou_type)
    res = coco.evaluate_full(gt, dets, iou_type)
    _assert_same(res, e)
    np.testing.assert_array_equal(coco.evaluate(gt, dets, iou_type), res.stats)
  assert n_big >= 5 and n_empty >= 4


def test_keypoints_custom_sigmas():
  rng = np.random.default_rng(3)
  sigmas = np.array([.5, .3, .8, .2, .6]) / 10
  for _ in range(5):
    gt, dets = make_case(rng, "keypoints", num_kpts=5)
    _assert_same(coco.evaluate_full(gt, dets, "keypoints", kpt_oks_sigmas=sigmas),
                 pycoco(gt, dets, "keypoints", sigmas))


def test_segm_results_with_bbox_use_box_area():
  """loadRes: when results carry a bbox, their area is w*h even for segm evaluation."""
  rng = np.random.default_rng(4)
  for _ in range(3):
    gt, dets = make_case(rng, "segm")
    for d in dets:
      d["bbox"] = [0.0, 0.0, float(rng.uniform(1, 150)), float(rng.uniform(1, 150))]
    _assert_same(coco.evaluate_full(gt, dets, "segm"), pycoco(gt, dets, "segm"))


def test_gt_id_zero_counts_as_unmatched():
  rng = np.random.default_rng(5)
  gt, dets = make_case(rng, "bbox")
  gt["annotations"][0]["id"] = 0
  dets.append({"image_id": gt["annotations"][0]["image_id"],
               "category_id": gt["annotations"][0]["category_id"],
               "bbox": list(gt["annotations"][0]["bbox"]), "score": 0.99})
  _assert_same(coco.evaluate_full(gt, dets), pycoco(gt, dets, "bbox"))


def test_float64_is_scoped():
  rng = np.random.default_rng(6)
  gt, dets = make_case(rng, "bbox")
  coco.evaluate(gt, dets)
  assert jnp.ones(1).dtype == jnp.float32
  assert not jax.config.jax_enable_x64


def test_bbox_iou_bit_exact():
  rng = np.random.default_rng(7)
  d = rng.uniform(0, 100, (300, 4))
  g = rng.uniform(0, 100, (40, 4))
  crowd = rng.random(40) < 0.3
  ref = mu.iou(d.tolist(), g.tolist(), crowd.astype(np.uint8).tolist())
  dd, gg = np.repeat(d, 40, 0), np.tile(g, (300, 1))
  with jax.enable_x64(True):
    out = np.asarray(coco_match._bbox_iou(dd, gg, np.tile(crowd, 300), np.float64(0.0)))
  np.testing.assert_array_equal(out.reshape(300, 40), ref)


def test_mask_iou_equals_pycocotools():
  rng = np.random.default_rng(8)
  h, w = 23, 31
  masks = [(rng.random((h, w)) < p).astype(np.uint8) for p in rng.uniform(0, 1, 12)]
  masks[0][:] = 0  # empty mask
  rles = [mu.encode(np.asfortranarray(m)) for m in masks]
  crowd = np.array([0, 1] * 6, np.uint8)
  ref = mu.iou(rles, rles, crowd.tolist())
  data = coco_inputs.Data("segm", None, None, None,
                          {"runs": [coco_rle.runs(coco_rle.rle_counts(r)) for r in rles],
                           "crowd": crowd.astype(bool)},
                          {"runs": [coco_rle.runs(coco_rle.rle_counts(r)) for r in rles]})
  di, gi = np.repeat(np.arange(12), 12), np.tile(np.arange(12), 12)
  with jax.enable_x64(True):
    out = coco_match._pair_ious(data, di, gi, None)
  np.testing.assert_array_equal(out.reshape(12, 12), ref)


def test_numpy_summation_order():
  rng = np.random.default_rng(9)
  x = np.exp(-rng.exponential(1, (400, 17)) * rng.choice([1e-3, 1, 30], (400, 1)))
  n = rng.integers(1, 18, 400)
  with jax.enable_x64(True):
    out = np.asarray(jax.jit(coco_match._numpy_sum)(x, n))
  np.testing.assert_array_equal(out, [np.sum(x[i, :n[i]]) for i in range(400)])


def test_rle_codec_equals_pycocotools():
  rng = np.random.default_rng(10)
  for t in range(60):
    h, w = (int(v) for v in rng.integers(0, 40, 2))
    m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
    if t % 3 == 0:
      m[:] = 0
      m[rng.integers(0, h + 1):, :rng.integers(0, w + 1)] = 1
    ref = mu.encode(np.asfortranarray(m))
    ours = coco_rle.encode(m)
    assert ours["counts"] == ref["counts"] and ours["size"] == list(ref["size"])
    np.testing.assert_array_equal(coco_rle.decode(ref), mu.decode(ref))
    np.testing.assert_array_equal(coco_rle.decode(ours), m)
    assert coco_rle.area(ref) == mu.area(ref)
    s = {"size": [h, w], "counts": ref["counts"].decode()}
    np.testing.assert_array_equal(coco_rle.decode(s), m)
    np.testing.assert_array_equal(coco_rle.string_to_counts(ours["counts"]),
                                  coco_rle.mask_counts(m))
  big = np.zeros((700, 900), np.uint8)
  big[100:650, 3:880] = 1
  big[0, 0] = 1
  assert coco_rle.encode(big)["counts"] == mu.encode(np.asfortranarray(big))["counts"]


def _batches(rng, n_batches=3, b=3, m=6, d=9, h=16, w=20, k=17, c=4):
  batches, outputs = [], []
  for i in range(n_batches):
    xy = rng.uniform(0, 12, (b, m, 2))
    wh = rng.choice([rng.uniform(1, 9), 4.0, 8.0], (b, m, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    masks = rng.random((b, m, h, w)) < 0.4
    kps = np.concatenate([rng.uniform(0, 20, (b, m, k, 2)), rng.integers(0, 3, (b, m, k, 1))], -1)
    area = rng.choice([32.0 ** 2, 96.0 ** 2, 50.0, 2000.0, 20000.0], (b, m))
    batch = {"image": np.zeros((b, h, w, 3), np.float32),
             "image_id": np.arange(b, dtype=np.int32) + 10 * i + 5,
             "example_valid": np.array([True] * (b - 1) + [i != 1]),
             "boxes": boxes, "classes": rng.integers(1, c, (b, m)).astype(np.int32),
             "box_valid": rng.random((b, m)) < 0.7, "iscrowd": rng.random((b, m)) < 0.15,
             "area": area.astype(np.float32), "masks": masks,
             "keypoints": kps.astype(np.float32)}
    src = rng.integers(0, m, (b, d))
    jit = rng.normal(0, 0.7, (b, d, 4)).astype(np.float32)
    dboxes = np.take_along_axis(boxes, src[..., None], 1) + jit
    dboxes[..., 2:] = np.maximum(dboxes[..., 2:], dboxes[..., :2])
    dmasks = np.take_along_axis(masks, src[..., None, None], 1) ^ (rng.random((b, d, h, w)) < .1)
    out = {"boxes": dboxes, "scores": np.round(rng.random((b, d)), 1).astype(np.float32),
           "classes": np.where(rng.random((b, d)) < 0.8,
                               np.take_along_axis(batch["classes"], src, 1),
                               rng.integers(1, c + 1, (b, d))).astype(np.int32),
           "valid": rng.random((b, d)) < 0.85,
           "masks": np.where(rng.random((b, d, 1, 1)) < 0.5, dmasks, dmasks * 0.7 + 0.2),
           "keypoints": (np.take_along_axis(kps, src[..., None, None], 1)
                         + rng.normal(0, 1, (b, d, k, 3))).astype(np.float32)}
    batches.append(batch)
    outputs.append(out)
  return batches, outputs


def test_evaluator_equals_evaluate_on_export():
  rng = np.random.default_rng(11)
  for _ in range(2):
    batches, outputs = _batches(rng)
    ev = coco.COCOEvaluator(num_classes=4)
    for bt, out in zip(batches, outputs):
      ev.update({k: jnp.asarray(v) for k, v in bt.items()}, out)
    res = ev.results()
    assert set(res) == {"bbox", "segm", "keypoints"}
    gt = coco.to_coco_gt(batches, num_classes=4)
    assert len(gt["images"]) == 8  # one padding example left out
    for iou_type in ("bbox", "segm", "keypoints"):
      dets = coco.to_coco_dets(batches, outputs, iou_type)
      np.testing.assert_array_equal(res[iou_type], coco.evaluate(gt, dets, iou_type))
      # and the exported json against pycocotools itself
      np.testing.assert_allclose(res[iou_type], pycoco(gt, dets, iou_type).stats, atol=1e-12,
                                 rtol=0)
    metrics = ev.compute()
    assert metrics["map"] == res["bbox"][0] and metrics["mar100"] == res["bbox"][8]
    assert metrics["mask_map"] == res["segm"][0] and metrics["kp_map"] == res["keypoints"][0]
    assert set(metrics) == {"map", "map50", "map75", "map_small", "map_medium", "map_large",
                            "mar100", "mask_map", "kp_map"}


def test_export_boxes_are_xywh():
  rng = np.random.default_rng(12)
  batches, _ = _batches(rng, n_batches=1)
  gt = coco.to_coco_gt(batches)
  bt = batches[0]
  b, j = np.nonzero(bt["box_valid"] & bt["example_valid"][:, None])
  x1, y1, x2, y2 = (bt["boxes"][b[0], j[0]].astype(np.float64)).tolist()
  assert gt["annotations"][0]["bbox"] == [x1, y1, x2 - x1, y2 - y1]
  assert gt["annotations"][0]["image_id"] == int(bt["image_id"][b[0]])
  np.testing.assert_array_equal(coco_rle.decode(gt["annotations"][0]["segmentation"]),
                                bt["masks"][b[0], j[0]])
