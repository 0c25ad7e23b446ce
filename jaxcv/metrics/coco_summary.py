"""pycocotools' `COCOeval.summarize()` table for `COCOeval.stats`, and jaxcv's metric names
for those stats (docs/conventions.md "Metrics"). Used by `python -m jaxcv.metrics.coco`.

The rows, in stats order: bbox / segm 12 (AP, AP50, AP75, APs, APm, APl at maxDets 100; AR at
maxDets 1, 10, 100; ARs, ARm, ARl), keypoints 10 (AP, AP50, AP75, APm, APl, AR, AR50, AR75,
ARm, ARl, all at maxDets 20). Names: `map`, `map50`, `map75`, `map_small`, `map_medium`,
`map_large`, `mar1`, `mar10`, `mar100`, `mar_small`, `mar_medium`, `mar_large`; keypoints
`map`, `map50`, `map75`, `map_medium`, `map_large`, `mar20`, `mar50`, `mar75` (AR at IoU /
OKS .50 and .75), `mar_medium`, `mar_large`.
"""
from __future__ import annotations

from jaxcv.metrics.coco_params import IOU_THRS, IOU_TYPES

# (AP or AR, IoU threshold or None for all, area range, maxDets, name), in COCOeval.stats order
_DET_ROWS = (
    (1, None, "all", 100, "map"), (1, .5, "all", 100, "map50"), (1, .75, "all", 100, "map75"),
    (1, None, "small", 100, "map_small"), (1, None, "medium", 100, "map_medium"),
    (1, None, "large", 100, "map_large"), (0, None, "all", 1, "mar1"),
    (0, None, "all", 10, "mar10"), (0, None, "all", 100, "mar100"),
    (0, None, "small", 100, "mar_small"), (0, None, "medium", 100, "mar_medium"),
    (0, None, "large", 100, "mar_large"))
_KP_ROWS = (
    (1, None, "all", 20, "map"), (1, .5, "all", 20, "map50"), (1, .75, "all", 20, "map75"),
    (1, None, "medium", 20, "map_medium"), (1, None, "large", 20, "map_large"),
    (0, None, "all", 20, "mar20"), (0, .5, "all", 20, "mar50"), (0, .75, "all", 20, "mar75"),
    (0, None, "medium", 20, "mar_medium"), (0, None, "large", 20, "mar_large"))


def _rows(stats, iou_type: str):
  if iou_type not in IOU_TYPES:
    raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
  rows = _KP_ROWS if iou_type == "keypoints" else _DET_ROWS
  if len(stats) != len(rows):
    raise ValueError(f"{iou_type} has {len(rows)} stats, got {len(stats)}")
  return rows


def summary_lines(stats, iou_type: str = "bbox") -> list[str]:
  """The lines `COCOeval.summarize()` prints for these stats (12, or 10 for keypoints)."""
  fmt = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
  all_ious = f"{IOU_THRS[0]:0.2f}:{IOU_THRS[-1]:0.2f}"
  return [fmt.format("Average Precision" if ap else "Average Recall", "(AP)" if ap else "(AR)",
                     all_ious if iou is None else f"{iou:0.2f}", area, md, float(s))
          for (ap, iou, area, md, _), s in zip(_rows(stats, iou_type), stats)]


def stats_dict(stats, iou_type: str = "bbox") -> dict[str, float]:
  """The stats by jaxcv's metric names (module docstring), -1 where pycocotools has -1."""
  return {row[-1]: float(s) for row, s in zip(_rows(stats, iou_type), stats)}
