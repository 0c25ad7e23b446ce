"""Detection and dense-prediction ops as pure, static-shape JAX functions.

Boxes are `[..., 4]` float32 `(x1, y1, x2, y2)` in pixels, checked by one function
(`boxes.check_boxes`); features are NHWC. Every op works under `jit` and `vmap`; padded inputs
and outputs come with bool validity masks. Ops that rank or keep boxes (the NMS family) raise
`InvalidBoxesError` / `InvalidInputError` (ValueErrors) on bad concrete values and mask them
out under `jit`. Per-image ops (`nms`, `match`, `balanced_sample`, ...) take one image and are
vmapped; `roi_align` takes flat `[K, 4]` boxes with `box_indices`, `roi_align_per_image`
the batched `[B, R, 4]` form. Semantics
follow torchvision (BoxCoder, AnchorGenerator, DefaultBoxGenerator, Matcher, nms, roi_align,
roi_pool, MultiScaleRoIAlign, paste_masks_in_image, Keypoint R-CNN heatmaps, the IoU losses,
sigmoid_focal_loss) and TensorFlow (`combined_non_max_suppression`, soft-NMS), and the tests
compare each with its reference.
"""
from jaxcv.ops.anchors import (YOLO_PRIOR_NAMES, cell_anchors, grid_anchors,  # noqa: F401
                               grid_anchors_per_level, kmeans_anchors, num_anchors_per_location,
                               ssd_default_boxes, ssd_num_anchors_per_location, yolo_priors)
from jaxcv.ops.box_coder import (YoloTargets, decode_boxes, encode_boxes,  # noqa: F401
                                 fcos_centerness, fcos_decode, fcos_ltrb_pairwise,
                                 fcos_ltrb_targets, linear_decode, linear_encode, wh_iou,
                                 yolo_decode, yolo_encode)
from jaxcv.ops.boxes import (InvalidBoxesError, box_area, box_convert, box_iou,  # noqa: F401
                             check_boxes, clip_boxes, complete_box_iou, distance_box_iou,
                             elementwise_box_iou, elementwise_complete_box_iou,
                             elementwise_distance_box_iou, elementwise_generalized_box_iou,
                             generalized_box_iou, small_boxes_mask, valid_boxes_mask)
from jaxcv.ops.common import InvalidInputError  # noqa: F401
from jaxcv.ops.keypoints import heatmaps_to_keypoints, keypoints_to_heatmap  # noqa: F401
from jaxcv.ops.losses import (check_labels, ciou_loss, dice_loss, diou_loss,  # noqa: F401
                              giou_loss, one_pixel_binary_cross_entropy,
                              one_pixel_softmax_cross_entropy, pixel_binary_cross_entropy,
                              pixel_softmax_cross_entropy, sigmoid_focal_loss, smooth_l1_loss,
                              softmax_focal_loss)
from jaxcv.ops.masks import masks_to_boxes, paste_masks_in_image  # noqa: F401
from jaxcv.ops.matching import (BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS,  # noqa: F401
                                BalancedSample, balanced_sample, match, matches_to_labels)
from jaxcv.ops.nms import batched_nms, multiclass_nms, nms, soft_nms  # noqa: F401
from jaxcv.ops.roi import (infer_scale, map_levels, multiscale_roi_align,  # noqa: F401
                           roi_align, roi_align_per_image, roi_pool)
