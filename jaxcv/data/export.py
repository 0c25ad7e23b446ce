"""Export of a data set split to COCO-format json, so pycocotools and jaxcv's evaluator read
the same ground truth.

The json is built from the very batches the evaluation loop sees (`ExampleDataset.get`,
padded, with the split's preprocessing), through `jaxcv.metrics.coco.to_coco_gt`: image ids
equal the batches' `image_id`, `area` is the batch's `area` (the instance-mask pixel count
where the data set has masks), `iscrowd` and keypoints come along (in COCO's pixel
convention, centres at integers: labelled keypoints' x, y minus 0.5, the inverse of the
`coco_json` loader), and `segmentation` is the RLE of each instance mask (counts as
text: the dict is json-ready). Category ids are the batch classes 1..C.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def split_batches(dataset, batch_size: int = 16):
  """The whole split in order as padded batches with `example_valid` (host NumPy)."""
  n = len(dataset)
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    valid = idx < n
    batch = dataset.get(np.where(valid, idx, 0))
    batch["example_valid"] = valid
    yield batch


def to_coco(dataset, batch_size: int = 16, category_names: Sequence[str] | None = None,
            keypoint_names: Sequence[str] | None = None, path: str | Path | None = None
            ) -> dict:
  """COCO gt dict (`images`, `annotations`, `categories`) of every example of `dataset`.

  `category_names[c - 1]` names class c (default: the class number); `keypoint_names` is
  added to every category (COCO's keypoint categories). With `path`, also written there.
  """
  from jaxcv.metrics import coco, coco_rle  # noqa: PLC0415 - keeps jaxcv.data free of jax imports

  counts = getattr(dataset, "class_counts", {})
  num_classes = int(counts.get("classes", dataset.num_classes))
  gt = coco.to_coco_gt(split_batches(dataset, batch_size), num_classes=num_classes)
  for cat in gt["categories"]:
    c = int(cat["id"])
    if category_names is not None:
      if not 1 <= c <= len(category_names):
        raise ValueError(f"class {c} has no name; {len(category_names)} names given")
      cat["name"] = str(category_names[c - 1])
    if keypoint_names is not None:
      cat["keypoints"] = [str(k) for k in keypoint_names]
      cat["skeleton"] = []
  for ann in gt["annotations"]:  # jaxcv's continuous pixels -> COCO's (centres at integers)
    if "segmentation" in ann:  # json-ready: compressed counts as text
      ann["segmentation"] = coco_rle.to_json(ann["segmentation"])
    if "keypoints" in ann:
      kp = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
      kp[kp[:, 2] > 0, :2] -= 0.5
      ann["keypoints"] = kp.ravel().tolist()
  if path is not None:
    Path(path).write_text(json.dumps(gt))
  return gt
