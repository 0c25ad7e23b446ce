"""Bad input to COCO evaluation (jaxcv.metrics.coco_inputs, via coco.evaluate and
COCOEvaluator): each case raises GroundTruthError or DetectionError (ValueErrors) whose
message names the problem, the record and the rule. pycocotools would accept most of these
and return numbers (all zeros for inverted GT boxes, all -1 for NaN GT areas)."""
import copy

import numpy as np
import pytest

from jaxcv.metrics import coco, coco_rle
from jaxcv.metrics.coco import COCOInputError, DetectionError, GroundTruthError


def _case():
  gt = {"images": [{"id": 1, "height": 10, "width": 10}, {"id": 2, "height": 10, "width": 10}],
        "categories": [{"id": 3}, {"id": 5}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 4, 4],
                         "area": 16.0, "iscrowd": 0, "segmentation": coco_rle.encode(np.eye(10)),
                         "keypoints": [1, 1, 2] * 17, "num_keypoints": 17},
                        {"id": 2, "image_id": 2, "category_id": 5, "bbox": [2, 2, 3, 3],
                         "area": 9.0, "iscrowd": 0, "segmentation": coco_rle.encode(np.eye(10)),
                         "keypoints": [2, 2, 2] * 17, "num_keypoints": 17}]}
  ok = {"image_id": 1, "category_id": 3, "bbox": [1, 1, 3, 3], "score": 0.5,
        "segmentation": coco_rle.encode(np.eye(10)), "keypoints": [1, 1, 1] * 17}
  return gt, ok


def _for(ok, iou_type):
  """A result with only the field of `iou_type` (COCO.loadRes' branch follows the first)."""
  keep = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}[iou_type]
  return {k: v for k, v in ok.items() if k not in ("bbox", "segmentation", "keypoints")
          or k == keep}


def test_valid_case_evaluates():
  gt, ok = _case()
  for iou_type in ("bbox", "segm", "keypoints"):
    assert coco.evaluate(gt, [_for(ok, iou_type)], iou_type).shape in ((12,), (10,))


NAN, INF = float("nan"), float("inf")
D1 = r"dets\[1\] \(image_id 1, category_id 3\)"
DET_CASES = [  # change to the second result, iou type, message
    ({"image_id": 7}, "bbox", r"dets\[1\] \(image_id 7, category_id 3\): image_id 7 is not in "
     r"gt\['images'\] \(image ids not in gt: \[7\]\)"),
    ({"category_id": 4}, "bbox", r"category_id 4 is not in gt\['categories'\] \(category ids"),
    ({"bbox": [1, 1, -2, 3]}, "bbox",
     D1 + r": bbox \[1.0, 1.0, -2.0, 3.0\] must be \[x, y, w, h\], finite with w, h >= 0"),
    ({"bbox": [1, NAN, 2, 3]}, "bbox", D1 + r": bbox \[1.0, nan, 2.0, 3.0\] must be .*finite"),
    ({"bbox": [1, 1, INF, 3]}, "bbox", "finite with w, h >= 0"),
    ({"bbox": [1, 1, 3]}, "bbox", D1 + r": bbox \[1, 1, 3\] must be a list of 4 numbers"),
    ({"bbox": [1, 1, "3", 3]}, "bbox", "must be a list of 4 numbers"),
    ({"bbox": None}, "bbox", "must be a list of 4 numbers"),
    ({"score": NAN}, "bbox", D1 + r": score nan must be finite \(1 detection scores are NaN"),
    ({"score": -INF}, "bbox", "score -inf must be finite"),
    ({"score": "0.5"}, "bbox", r"score '0.5' must be a number"),
    ({"score": None}, "bbox", "score None must be a number"),
    ({"image_id": 1.5}, "bbox", "image_id 1.5 must be an integer"),
    ({"image_id": True}, "bbox", "image_id True must be an integer"),
    ({"category_id": "3"}, "bbox", "category_id '3' must be an integer"),
    ({"segmentation": [[1, 1, 5]]}, "segm", "polygon"),  # fewer than 3 points
    ({"segmentation": coco_rle.encode(np.ones((4, 4)))}, "segm",
     r"dets\[1\] .*: mask size \[4, 4\] differs from its image's \[10, 10\]"),
    ({"segmentation": 3}, "segm", "segmentation must be an RLE dict or polygon list"),
    ({"keypoints": [1, 2, 2]}, "keypoints", r"keypoints \[1, 2, 2\] must be a list of 51 numbers"),
    ({"keypoints": [1, NAN, 2] * 17}, "keypoints", D1 + ": keypoints must be finite numbers"),
]


@pytest.mark.parametrize("change, iou_type, match", DET_CASES)
def test_bad_detection(change, iou_type, match):
  gt, ok = _case()
  ok = _for(ok, iou_type)
  with pytest.raises(DetectionError, match=match):
    coco.evaluate(gt, [ok, dict(ok, **change)], iou_type)


@pytest.mark.parametrize("key, iou_type", [("score", "bbox"), ("image_id", "bbox"),
                                           ("category_id", "segm"), ("bbox", "bbox"),
                                           ("segmentation", "segm"), ("keypoints", "keypoints")])
def test_detection_missing_key(key, iou_type):
  gt, ok = _case()
  ok = _for(ok, iou_type)
  bad = {k: v for k, v in ok.items() if k != key}
  with pytest.raises(DetectionError, match=rf"dets\[1\] .*has no '{key}'; "):
    coco.evaluate(gt, [ok, bad], iou_type)
  assert issubclass(DetectionError, COCOInputError) and issubclass(COCOInputError, ValueError)


def test_detections_not_a_list_of_dicts():
  gt, ok = _case()
  with pytest.raises(DetectionError, match="dets must be a list of dicts, got dict"):
    coco.evaluate(gt, ok)
  with pytest.raises(DetectionError, match=r"dets\[1\] must be a dict, got list"):
    coco.evaluate(gt, [ok, [1, 2]])
  with pytest.raises(DetectionError, match=r"results need 'bbox', 'segmentation' or"):
    coco.evaluate(gt, [{"image_id": 1, "category_id": 3, "score": 0.5}])


A0 = r"gt\['annotations'\]\[0\] \(id 1, image_id 1\)"
GT_CASES = [  # change to annotation 0, iou type, message
    ({"bbox": [1, 1, -4, 4]}, "bbox", A0 + r": bbox \[1.0, 1.0, -4.0, 4.0\] must be "
     r"\[x, y, w, h\], finite with w, h >= 0 \(1 such boxes\)"),
    ({"bbox": [1, 1, 4, -0.5]}, "bbox", "finite with w, h >= 0"),
    ({"bbox": [NAN, 1, 4, 4]}, "bbox", A0 + r": bbox \[nan, 1.0, 4.0, 4.0\]"),
    ({"bbox": [1, 1, 4, INF]}, "keypoints", "finite with w, h >= 0"),  # OKS uses the gt box
    ({"bbox": [1, 1, 4]}, "bbox", A0 + r": bbox \[1, 1, 4\] must be a list of 4 numbers"),
    ({"area": NAN}, "bbox", A0 + r": area nan must be a finite number >= 0"),
    ({"area": INF}, "segm", "area inf must be a finite number >= 0"),
    ({"area": -1.0}, "keypoints", "area -1.0 must be a finite number >= 0"),
    ({"area": "16"}, "bbox", "area '16' must be a number"),
    ({"image_id": 9}, "bbox", r"\(id 1, image_id 9\): image_id 9 is not in gt\['images'\]"),
    ({"category_id": 4}, "bbox", r"category_id 4 is not in gt\['categories'\]"),
    ({"id": 2}, "bbox", r"annotation id 2 appears 2 times \(at indices \[0, 1\]\); annotation "
     "ids must be unique"),
    ({"id": 1.5}, "bbox", r"id 1.5 must be an integer"),
    ({"keypoints": [1, 1, 2] * 16}, "keypoints", "must be a list of 51 numbers"),
    ({"keypoints": [1, INF, 2] * 17}, "keypoints", A0 + ": keypoints must be finite numbers"),
    ({"segmentation": coco_rle.encode(np.ones((4, 4)))}, "segm", A0 + ": mask size"),
]


@pytest.mark.parametrize("change, iou_type, match", GT_CASES)
def test_bad_ground_truth(change, iou_type, match):
  gt, ok = _case()
  gt["annotations"][0].update(change)
  with pytest.raises(GroundTruthError, match=match):
    coco.evaluate(gt, [_for(ok, iou_type)], iou_type)


@pytest.mark.parametrize("key, iou_type", [("id", "bbox"), ("image_id", "bbox"),
                                           ("category_id", "bbox"), ("area", "segm"),
                                           ("bbox", "bbox"), ("bbox", "keypoints"),
                                           ("segmentation", "segm"), ("keypoints", "keypoints")])
def test_ground_truth_missing_key(key, iou_type):
  gt, ok = _case()
  del gt["annotations"][1][key]
  with pytest.raises(GroundTruthError, match=rf"gt\['annotations'\]\[1\].* has no '{key}'; "):
    coco.evaluate(gt, [_for(ok, iou_type)], iou_type)


def test_fields_of_other_iou_types_are_not_checked():
  gt, ok = _case()
  gt["annotations"][0]["bbox"] = [NAN, 1, -4, 4]  # segm does not read the gt box
  assert coco.evaluate(gt, [_for(ok, "segm")], "segm").shape == (12,)


def test_bad_images_and_categories():
  gt, ok = _case()
  cases = []
  g = copy.deepcopy(gt); g["images"][1]["id"] = 1
  cases.append((g, "bbox", r"image id 1 appears 2 times \(at indices \[0, 1\]\); image ids must "
                "be unique"))
  g = copy.deepcopy(gt); g["categories"].append({"id": 5})
  cases.append((g, "bbox", "category id 5 appears 2 times"))
  g = copy.deepcopy(gt); del g["images"][0]["id"]
  cases.append((g, "bbox", r"gt\['images'\]\[0\] has no 'id'; every image needs an integer"))
  g = copy.deepcopy(gt); del g["images"][1]["height"]
  cases.append((g, "segm", r"gt\['images'\]\[1\] \(id 2\) has no 'height'; segm evaluation needs"))
  g = copy.deepcopy(gt); g["images"][1]["width"] = 0
  cases.append((g, "segm", r"width 0 must be >= 1"))
  g = copy.deepcopy(gt); g["categories"] = [3]
  cases.append((g, "bbox", r"gt\['categories'\]\[0\] must be a dict"))
  cases.append(({"images": []}, "bbox", "gt must be a COCO dict with 'images'"))
  for g, iou_type, match in cases:
    with pytest.raises(GroundTruthError, match=match):
      coco.evaluate(g, [_for(ok, iou_type)], iou_type)


def test_bad_iou_type_and_sigmas():
  gt, ok = _case()
  with pytest.raises(ValueError, match="iou_type"):
    coco.evaluate(gt, [ok], "mask")
  with pytest.raises(DetectionError, match="51 numbers"):
    coco.evaluate(gt, [dict(_for(ok, "keypoints"), keypoints=[1, 1, 1] * 16)], "keypoints")
  with pytest.raises(ValueError, match="kpt_oks_sigmas"):
    coco.evaluate(gt, [_for(ok, "keypoints")], "keypoints", kpt_oks_sigmas=[[0.1]])


# ------------------------------------------------------------------------------------------
# Padded batches: the same rules in COCOEvaluator


def _batch():
  batch = {"image_id": np.array([4, 5], np.int32), "example_valid": np.array([True, True]),
           "boxes": np.array([[[1, 1, 5, 5], [2, 2, 6, 7]], [[0, 0, 3, 3], [9, 9, 0, 0]]],
                             np.float32),
           "classes": np.array([[1, 2], [1, 1]], np.int32),
           "box_valid": np.array([[True, True], [True, False]]),  # row [1, 1] is padding
           "iscrowd": np.zeros((2, 2), bool), "area": np.full((2, 2), 16.0, np.float32)}
  out = {"boxes": batch["boxes"].copy(), "scores": np.array([[0.9, 0.8], [0.7, np.nan]],
                                                            np.float32),
         "classes": batch["classes"].copy(), "valid": batch["box_valid"].copy()}
  return batch, out


def _evaluate_batch(batch, out):
  ev = coco.COCOEvaluator(num_classes=2)
  ev.update(batch, out)
  return ev.compute()


def test_evaluator_padding_rows_are_not_checked():
  assert _evaluate_batch(*_batch())["map"] == 1.0  # padding holds an inverted box, NaN score


@pytest.mark.parametrize("where, key, row, value, error, match", [
    ("gt", "boxes", (0, 1), [6, 2, 2, 7], GroundTruthError,
     r"ground-truth box 1 \(annotation id 2, image_id 4\): bbox \[6.0, 2.0, -4.0, 5.0\] must be "
     r"\[x, y, w, h\], finite with w, h >= 0"),
    ("gt", "boxes", (1, 0), [0, np.nan, 3, 3], GroundTruthError, "ground-truth box 2 .*finite"),
    ("gt", "area", (0, 0), np.nan, GroundTruthError,
     r"ground-truth box 0 \(annotation id 1, image_id 4\): area nan must be a finite number"),
    ("gt", "classes", (0, 0), 3, GroundTruthError, r"class 3 is not one of the categories"),
    ("gt", "image_id", (1,), 4, GroundTruthError, "image_id 4 appears in 2 valid examples"),
    ("det", "boxes", (0, 0), [5, 1, 1, 5], DetectionError,
     r"detection 0 \(image_id 4, class 1\): bbox \[5.0, 1.0, -4.0, 4.0\] must be"),
    ("det", "scores", (1, 0), np.inf, DetectionError,
     r"detection 2 \(image_id 5, class 1\): score inf must be finite"),
    ("det", "classes", (0, 1), 0, DetectionError, r"detection 1 .*: class 0 is not one of"),
])
def test_evaluator_bad_rows(where, key, row, value, error, match):
  batch, out = _batch()
  target = batch if where == "gt" else out
  target[key][row] = value
  with pytest.raises(error, match=match):
    _evaluate_batch(batch, out)
