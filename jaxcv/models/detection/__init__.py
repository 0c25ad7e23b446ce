"""Detectors, laid out by architecture as detectron2's `modeling/` is: one idea per file.

- `backbone/`: feature extractors for detection: `fpn.py` (torchvision's
  FeaturePyramidNetwork and its extra levels), `resnet_fpn.py` (a ResNet body with an FPN,
  torchvision's `resnet_fpn_backbone` / `_resnet_fpn_extractor`, `trainable_backbone_layers`).
- `proposal_generator/`: `anchor_generator.py` (torchvision's AnchorGenerator as a static
  table per canvas), `rpn_head.py` (RPNHead), `rpn.py` (proposal selection, RPN targets and
  losses).
- `roi_heads/`: `box_head.py` (TwoMLPHead, the v2 conv+FC head), `box_predictor.py`
  (FastRCNNPredictor), `sampling.py` (proposal matching and sampling for training),
  `fast_rcnn.py` (the box losses and the test-time postprocess).
- `dense_heads/`: the one-stage detectors' shared parts, each usable alone:
  `retinanet_head.py` (the conv tower and RetinaNetHead), `fcos_head.py`,
  `anchor_assignment.py` (IoU matching of ground truth to anchors, also the RPN's),
  `fcos_loss.py` (FCOS's point assignment and losses), `retinanet_loss.py` (focal and box
  losses), `postprocess.py` (per-level top-k, class-aware NMS: RetinaNet's and FCOS's
  test-time selection).
- `meta_arch/`: whole detectors, each saying only what differs (`faster_rcnn.py`,
  `mask_rcnn.py`, `keypoint_rcnn.py`, `panoptic_fpn.py`; `dense_detector.py` with
  `retinanet.py` and `fcos.py`); `inputs.py` the input checks they share.

The output contract (docs/conventions.md, "Detection outputs"): in evaluation a detector
returns `{"boxes" [B, D, 4], "scores" [B, D], "classes" [B, D] (1..C), "valid" [B, D]}` in
the pixels of its input canvas, clipped to each image's valid size; in training a dict of
scalar losses. Everything is static-shape: padded with validity masks, random only through
the `sample` PRNG stream.
"""
