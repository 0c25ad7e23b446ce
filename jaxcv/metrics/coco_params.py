"""pycocotools' `COCOeval.Params`: the thresholds, area ranges and detection limits of COCO
evaluation, shared by the evaluator's parts (`coco_inputs`, `coco_match`, `coco_accumulate`,
`coco`). Re-exported by `jaxcv.metrics.coco`."""
from __future__ import annotations

import numpy as np

IOU_TYPES = ("bbox", "segm", "keypoints")
# np.linspace exactly as Params.setDetParams writes it (the float64 values matter for ==)
IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
COCO_KPT_OKS_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07,
                                1.07, .87, .87, .89, .89]) / 10.0
DET_AREA_RNG = np.array([[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2],
                         [96 ** 2, 1e5 ** 2]], dtype=np.float64)
KP_AREA_RNG = np.array([[0 ** 2, 1e5 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]],
                       dtype=np.float64)
DET_MAX_DETS = (1, 10, 100)
KP_MAX_DETS = (20,)
