"""COCO detection evaluation (bbox, segm, keypoints) as jit-compiled JAX, equal to pycocotools.

Why: JAX vision code usually copies outputs to the host and runs pycocotools (about a minute
for COCO val). Here only JSON parsing and packing are host-side NumPy; IoU / mask IoU / OKS,
the greedy matching and the precision / recall accumulation are jit-compiled and vectorised
over (image, category) pairs, IoU thresholds and area ranges. The numbers are those of
pycocotools 2.0.x `COCO.loadRes` + `COCOeval(evaluate, accumulate, summarize)`.

Public API:
- `evaluate(gt, dets, iou_type="bbox", kpt_oks_sigmas=None) -> np.ndarray`: the summary stats
  (12 for bbox / segm, 10 for keypoints), as `COCOeval.stats`.
- `evaluate_full(...) -> COCOEvalResult(stats, precision [T,R,K,A,M], recall [T,K,A,M],
  scores [T,R,K,A,M])`, equal to `COCOeval.eval`.
- `COCOEvaluator`: accumulates padded model outputs and ground truth batches (conventions in
  docs/conventions.md) and returns `map`, `map50`, ... (+ `mask_map`, `kp_map`).
- `to_coco_gt(batches, ...)`, `to_coco_dets(outputs_and_ids, ...)`: export to COCO json dicts.
- `summary_lines(stats, iou_type)`, `stats_dict(stats, iou_type)` (`coco_summary`): the
  `COCOeval.summarize()` table and the stats by metric name (`map`, `map50`, ..., `mar100`).

Command line: `python -m jaxcv.metrics.coco GT.json RESULTS.json [--iou-type bbox|segm|
keypoints] [--json]` evaluates a COCO results file against a ground-truth file and prints
pycocotools' summary table (12 lines, keypoints 10), or with `--json` the stats as one JSON
dict by metric name; exit 0. A missing or unreadable file, invalid JSON or bad input (the
checks below) prints one line `error: ...` naming the file on stderr and exits 2, no
traceback. `main(argv)` returns the exit code.

The parts, one idea a file: `coco_params` (COCOeval.Params), `coco_inputs` (checking and
packing the gt dict and result list), `coco_match` (IoU / mask IoU / OKS and the greedy
matching), `coco_accumulate` (accumulate and summarize), `coco_batches` (padded batches ->
COCO json, `COCOEvaluator`), `coco_rle` (the RLE / polygon codec), `coco_summary` (the
summary table and metric names). This module runs them and keeps the public names.

Semantics reproduced from pycocotools (cocoeval.py, coco.py, maskApi.c); the matching and
accumulation rules are listed in `coco_match` and `coco_accumulate`:
- loadRes: detection ids 1..N in list order; `area` = w*h when the first result has a
  non-empty `bbox`, else the RLE mask area (segm), else the keypoint-extent box (keypoints).
- gt ignore = iscrowd (keypoints: or num_keypoints == 0).

Numerics: float64 inside a scoped `jax.enable_x64(True)` (the global flag is not touched;
training dtypes stay float32). On a backend without float64 (TPU) the evaluator runs on the
host CPU device. XLA CPU contracts `a * b + c` into FMA; products that feed additions get a
runtime `+ 0.0` so they round as in C. bbox and mask IoU are therefore bit-identical to
pycocotools; OKS can differ from NumPy's by a few ulp because XLA's `exp` is not libm's.

Inputs accepted: `segmentation` as RLE dicts (compressed `counts` str/bytes, or uncompressed
count lists) or polygon lists `[[x0, y0, x1, y1, ...], ...]` in GT and results, rasterised
as pycocotools' annToRLE (`merge(frPyObjects(polys, h, w))`, ported in `coco_rle`: identical
counts). GT area is always the annotation's `area` field; a polygon result's area is that of
its merged RLE (segm branch of loadRes) or w*h when the first result has a bbox (bbox branch,
as pycocotools). pycocotools' own loadRes fails on polygon results without a bbox
(maskUtils.area of a list); here they are evaluated as their merged RLEs would be.
Polygon lists pycocotools cannot read (empty, or a first polygon of <= 4 numbers) raise
ValueError.
Bad input raises `GroundTruthError` / `DetectionError` (both `COCOInputError`, a ValueError)
naming the record and the rule (list in `coco_inputs`): missing keys, duplicate or
non-integer ids, annotations or results on an unknown image or category, boxes that are not
finite `[x, y, w, h]` with w, h >= 0, a ground-truth `area` that is NaN, infinite or
negative, a result without a finite `score`, wrong keypoint lengths, masks of another size
than their image. pycocotools accepts most of these and returns numbers (an annotation on an
unknown image is dropped there).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from jaxcv.metrics import coco_accumulate, coco_match
from jaxcv.metrics.coco_inputs import (COCOInputError, Data, DetectionError,  # noqa: F401
                                       GroundTruthError, pack, sigmas_for)
from jaxcv.metrics.coco_params import (COCO_KPT_OKS_SIGMAS, DET_AREA_RNG,  # noqa: F401
                                       DET_MAX_DETS, IOU_THRS, IOU_TYPES, KP_AREA_RNG,
                                       KP_MAX_DETS, REC_THRS)
from jaxcv.metrics.coco_summary import stats_dict, summary_lines


class COCOEvalResult(NamedTuple):
  """`stats` as COCOeval.stats; `precision [T,R,K,A,M]`, `recall [T,K,A,M]`, `scores
  [T,R,K,A,M]` as COCOeval.eval (float64; K = categories sorted by id)."""
  stats: np.ndarray
  precision: np.ndarray
  recall: np.ndarray
  scores: np.ndarray


@contextlib.contextmanager
def _x64_scope():
  """float64 for the evaluator's jitted calls only; host CPU where the backend has no f64."""
  with jax.enable_x64(True):
    if jax.default_backend() == "tpu":
      with jax.default_device(jax.devices("cpu")[0]):
        yield
    else:
      yield


def evaluate_data(data: Data, sigmas=None) -> COCOEvalResult:
  """evaluate + accumulate + summarize of packed, checked data (`coco_inputs.pack`, or
  `coco_batches` straight from padded batches)."""
  kp = data.iou_type == "keypoints"
  area_rng = KP_AREA_RNG if kp else DET_AREA_RNG
  max_dets = KP_MAX_DETS if kp else DET_MAX_DETS
  with _x64_scope():
    matches = coco_match.match_detections(data, sigmas, IOU_THRS, area_rng, max_dets[-1])
    npig = coco_accumulate.count_gt(data, area_rng)
    precision, recall, scores = coco_accumulate.accumulate(data, matches, npig, area_rng,
                                                           max_dets)
  stats = coco_accumulate.summarize(precision, recall, kp)
  return COCOEvalResult(stats, precision, recall, scores)


def evaluate_full(gt: dict, dets: Sequence[dict], iou_type: str = "bbox",
                  kpt_oks_sigmas=None) -> COCOEvalResult:
  """pycocotools' COCO(gt).loadRes(dets) + COCOeval(iou_type): evaluate, accumulate and
  summarize. Returns stats and the full precision / recall / scores arrays (float64).
  Bad input: GroundTruthError / DetectionError (module docstring)."""
  sigmas = sigmas_for(iou_type, kpt_oks_sigmas)
  data = pack(gt, dets, iou_type, None if sigmas is None else sigmas.size)
  return evaluate_data(data, sigmas)


def evaluate(gt: dict, dets: Sequence[dict], iou_type: str = "bbox",
             kpt_oks_sigmas=None) -> np.ndarray:
  """COCOeval.stats for COCO gt dict and result list: 12 numbers for bbox / segm
  (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl), 10 for keypoints."""
  return evaluate_full(gt, dets, iou_type, kpt_oks_sigmas).stats


# Padded batches (docs/conventions.md) -> COCO json, and the training-loop evaluator; at the
# end because coco_batches uses evaluate_data.
from jaxcv.metrics.coco_batches import (COCOEvaluator, to_coco_dets,  # noqa: E402,F401
                                        to_coco_gt)


class _FileError(Exception):
  """A command-line input file that cannot be read or parsed (message names the file)."""


def _read_json(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except OSError as e:
    raise _FileError(f"cannot read {path}: {e.strerror or e}") from None
  except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
    raise _FileError(f"{path} is not valid JSON: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m jaxcv.metrics.coco GT.json RESULTS.json [--iou-type T] [--json]` (module
  docstring). Returns 0, or 2 after printing `error: ...` on stderr (argparse exits 2 itself
  on bad arguments)."""
  parser = argparse.ArgumentParser(
      prog="python -m jaxcv.metrics.coco",
      description="Evaluate a COCO results file against COCO ground truth (numbers equal to "
                  "pycocotools' COCOeval) and print its summary table.")
  parser.add_argument("gt", metavar="GT.json", help="COCO ground truth (images, annotations, "
                      "categories)")
  parser.add_argument("results", metavar="RESULTS.json", help="COCO results: a list of "
                      "{image_id, category_id, score, bbox | segmentation | keypoints}")
  parser.add_argument("--iou-type", choices=IOU_TYPES, default="bbox")
  parser.add_argument("--json", action="store_true",
                      help="print the stats as a JSON dict by metric name instead")
  args = parser.parse_args(argv)
  try:
    gt, dets = _read_json(args.gt), _read_json(args.results)
    stats = evaluate(gt, dets, args.iou_type)
  except _FileError as e:
    msg = str(e)
  except GroundTruthError as e:
    msg = f"{args.gt}: {e}"
  except DetectionError as e:
    msg = f"{args.results}: {e}"
  except ValueError as e:  # other unreadable input, e.g. a malformed RLE string
    msg = str(e)
  else:
    if args.json:
      print(json.dumps(stats_dict(stats, args.iou_type)))
    else:
      print("\n".join(summary_lines(stats, args.iou_type)))
    return 0
  print(f"error: {msg}", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
