"""`python -m jaxcv.metrics.coco GT.json RESULTS.json`: the printed table equals pycocotools'
`COCOeval.summarize()` output line for line (bbox and segm on a small random case with
category-id gaps, crowd GTs and all three size ranges; keypoints and -1 stats through the
formatter), `--json` names, one real subprocess, and the error paths (exit 2, one line)."""
import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pycocotools")
from pycocotools import mask as mu
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jaxcv.metrics import coco, coco_accumulate, coco_summary

H, W = 240, 320
CAT_IDS = [3, 7, 20]  # gaps in the ids


def _polygon(rng, x, y, w, h):
  """An octagon inside the box [x, y, w, h], as a COCO polygon list."""
  t = (np.arange(8) + rng.uniform(-0.3, 0.3, 8)) * (2 * np.pi / 8)
  r = rng.uniform(0.8, 1.0, 8)
  px = x + w / 2 + r * np.cos(t) * w / 2
  py = y + h / 2 + r * np.sin(t) * h / 2
  return [np.round(np.stack([px, py], 1).ravel(), 2).tolist()]


def _counts_list(m):
  """Uncompressed RLE counts (column-major, starting with zeros) of a binary mask."""
  flat = m.ravel(order="F")
  change = np.flatnonzero(np.diff(flat)) + 1
  edges = np.concatenate([[0], change, [flat.size]])
  counts = np.diff(edges).tolist()
  return counts if flat[0] == 0 else [0] + counts


def make_case(seed=0):
  rng = np.random.default_rng(seed)
  img_ids = [5, 11, 12, 40]
  images = [{"id": i, "height": H, "width": W, "file_name": f"{i}.jpg"} for i in img_ids]
  anns, dets = [], []
  for im in img_ids:
    for side in (12, 20, 45, 70, 160, 25, 200):  # areas: small, medium, large
      if im != img_ids[0] and rng.random() < 0.25:  # the first image has all sizes
        continue
      w, h = side * rng.uniform(0.8, 1.2), side * rng.uniform(0.8, 1.2)
      w, h = min(w, W - 2), min(h, H - 2)
      x, y = rng.uniform(0, W - w - 1), rng.uniform(0, H - h - 1)
      crowd = int(side in (25, 45) and rng.random() < 0.4)
      if crowd:
        m = np.zeros((H, W), np.uint8)
        m[int(y):int(y + h), int(x):int(x + w)] = 1
        segm = {"size": [H, W], "counts": _counts_list(m)}
        area = float(m.sum())
      else:
        segm = _polygon(rng, x, y, w, h)
        area = float(mu.area(mu.merge(mu.frPyObjects(segm, H, W))))
      a = {"id": len(anns) + 100, "image_id": im, "category_id": int(rng.choice(CAT_IDS[:2])),
           "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)], "area": area,
           "iscrowd": crowd, "segmentation": segm}
      anns.append(a)
      for _ in range(rng.integers(0, 3)):  # hits, jittered
        b = np.array(a["bbox"]) + rng.normal(0, 0.08 * side, 4) * [1, 1, 0.5, 0.5]
        b[2:] = np.maximum(b[2:], 1)
        poly = (_polygon(rng, *b) if crowd else  # else the GT polygon, moved with the box
                [np.round(np.array(segm[0]) + np.tile(b[:2] - [x, y], 8), 2).tolist()])
        dets.append({"image_id": im, "category_id": a["category_id"],
                     "bbox": np.round(b, 2).tolist(), "segmentation": poly,
                     "score": float(np.round(rng.random(), 2))})
  for _ in range(15):  # false positives, also in the category without GT
    w, h = rng.uniform(8, 100, 2)
    x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
    dets.append({"image_id": int(rng.choice(img_ids)), "category_id": int(rng.choice(CAT_IDS)),
                 "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                 "segmentation": _polygon(rng, x, y, w, h),
                 "score": float(np.round(rng.random(), 2))})
  cats = [{"id": c, "name": f"c{c}", "supercategory": "x"} for c in CAT_IDS]
  return {"images": images, "annotations": anns, "categories": cats}, dets


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp("coco_cli")
  gt, dets = make_case()
  gt_path, det_path = d / "gt.json", d / "preds.json"
  gt_path.write_text(json.dumps(gt))
  det_path.write_text(json.dumps(dets))
  return str(gt_path), str(det_path)


def pycoco_table(gt_path, det_path, iou_type):
  with contextlib.redirect_stdout(io.StringIO()):
    cg = COCO(gt_path)
    e = COCOeval(cg, cg.loadRes(det_path), iou_type)
    e.evaluate()
    e.accumulate()
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    e.summarize()
  return out.getvalue().splitlines(), e.stats


def run_main(capsys, *argv):
  rc = coco.main(list(argv))
  out, err = capsys.readouterr()
  return rc, out, err


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_table_equals_pycocotools(files, capsys, iou_type):
  ref, ref_stats = pycoco_table(*files, iou_type)
  rc, out, err = run_main(capsys, *files, "--iou-type", iou_type)
  assert rc == 0 and err == ""
  assert out.splitlines() == ref
  assert len(ref) == 12
  assert (ref_stats >= 0).all() and ref_stats[0] > 0  # no -1 rows: GT in every size range

  rc, out, _ = run_main(capsys, *files, "--iou-type", iou_type, "--json")
  got = json.loads(out)
  assert rc == 0
  assert list(got) == ["map", "map50", "map75", "map_small", "map_medium", "map_large",
                       "mar1", "mar10", "mar100", "mar_small", "mar_medium", "mar_large"]
  np.testing.assert_array_equal(list(got.values()), ref_stats)


def _fake_eval(rng, iou_type):
  """A COCOeval with random precision / recall (some all -1 slices) and no evaluation."""
  e = COCOeval(iouType=iou_type)
  p = e.params
  t, r, k, a, m = len(p.iouThrs), len(p.recThrs), 3, len(p.areaRng), len(p.maxDets)
  prec = rng.random((t, r, k, a, m))
  rec = rng.random((t, k, a, m))
  prec[:, :, 1] = -1; rec[:, 1] = -1  # a category without GT
  prec[..., a - 1, :] = -1; rec[..., a - 1, :] = -1  # no large GT: stat -1
  e.eval = {"precision": prec, "recall": rec}
  return e, prec, rec


@pytest.mark.parametrize("iou_type", ["keypoints", "bbox"])
def test_summary_lines_format(iou_type):
  e, prec, rec = _fake_eval(np.random.default_rng(1), iou_type)
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    e.summarize()
  stats = coco_accumulate.summarize(prec, rec, iou_type == "keypoints")
  np.testing.assert_allclose(stats, e.stats, rtol=1e-12)
  lines = coco_summary.summary_lines(stats, iou_type)
  assert lines == out.getvalue().splitlines()
  assert len(lines) == (10 if iou_type == "keypoints" else 12)
  assert lines[-1].endswith("= -1.000")
  names = coco_summary.stats_dict(stats, iou_type)
  if iou_type == "keypoints":
    assert list(names) == ["map", "map50", "map75", "map_medium", "map_large", "mar20",
                           "mar50", "mar75", "mar_medium", "mar_large"]
  with pytest.raises(ValueError, match="12 stats"):
    coco_summary.summary_lines(stats[:5], "segm")


def test_module_runs_as_script(files, capsys):
  proc = subprocess.run([sys.executable, "-m", "jaxcv.metrics.coco", *files],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  rc, out, _ = run_main(capsys, *files)
  assert rc == 0
  assert proc.stdout == out
  assert proc.stdout.splitlines()[0].startswith(
      " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = ")


def _one_error_line(err):
  assert err.count("\n") == 1 and err.startswith("error: ")
  assert "Traceback" not in err
  return err


def test_detection_without_score(files, tmp_path, capsys):
  dets = json.loads(open(files[1]).read())
  del dets[3]["score"]
  p = tmp_path / "bad_preds.json"
  p.write_text(json.dumps(dets))
  rc, out, err = run_main(capsys, files[0], str(p))
  assert rc == 2 and out == ""
  err = _one_error_line(err)
  assert str(p) in err and "dets[3]" in err and "no 'score'" in err


def test_bad_ground_truth_names_gt_file(files, tmp_path, capsys):
  gt = json.loads(open(files[0]).read())
  gt["annotations"][0]["bbox"][2] = -4.0
  p = tmp_path / "bad_gt.json"
  p.write_text(json.dumps(gt))
  rc, _, err = run_main(capsys, str(p), files[1])
  assert rc == 2
  assert str(p) in _one_error_line(err)


def test_missing_and_invalid_files(files, tmp_path, capsys):
  missing = str(tmp_path / "nope.json")
  rc, out, err = run_main(capsys, files[0], missing)
  assert rc == 2 and out == ""
  assert missing in _one_error_line(err) and "No such file" in err
  bad = tmp_path / "truncated.json"
  bad.write_text('{"images": [')
  rc, _, err = run_main(capsys, str(bad), files[1])
  assert rc == 2
  assert str(bad) in _one_error_line(err) and "not valid JSON" in err
