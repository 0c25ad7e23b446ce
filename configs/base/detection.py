"""Detection on the `shapes` scenes (`get_config`) and the small Faster R-CNN of its
experiments (`faster_rcnn`).

`get_config()` is what the detection shapes experiments share: 128x128 scenes with boxes,
classes, crowd flags and areas, horizontal flips, the `resize_to_canvas` preprocess
(torchvision's resize rule, the identity here, which records each image's valid size),
the `detection` task (COCO mAP on the host), Adam with a cosine schedule. It sets no
model: each experiment names its own (`faster_rcnn(...)` for Faster R-CNN);
`one_stage_config(model)` is it for the one-stage detectors, whose head is `head`.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "detection"
  c.data = {"name": "shapes", "image_size": 128,
            "keys": ("boxes", "classes", "iscrowd", "area"), "max_boxes": 8,
            "split_sizes": {"train": 2000, "validation": 100, "test": 200}, "seed": 0,
            "train_split": "train", "eval_splits": ("validation", "test"),
            "augmentation": ("random_hflip",),
            "preprocess": (("resize_to_canvas", {"min_size": 128, "max_size": 128,
                                                 "canvas": 128}),),
            "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
  c.loss = {}
  c.batch_size = 8
  c.eval_batch_size = 50
  c.num_steps = 2000
  c.optimizer = {"name": "adam", "learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8,
                 "weight_decay": 0.0, "weight_decay_mask": "kernels", "grad_clip_norm": 10.0}
  c.schedule = {"name": "cosine", "warmup_steps": 100}
  c.transfer = {"frozen": (), "head": ("box_predictor",), "backbone_lr_mult": 1.0,
                "init_from": "", "init_exclude": ("box_predictor",)}
  c.dtype = "float32"
  c.eval_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.log_every = 25
  c.best_metric = "map"
  c.best_mode = "max"
  c.seed = 0
  c.progress_bar = True
  c.prefetch = 2
  c.data_workers = 1
  c.mesh = {"shape": {"data": -1}, "shard_params": False, "shard_params_min_size": 2**16}
  return c


def one_stage_config(model: dict) -> ml_collections.ConfigDict:
  """`get_config()` for a one-stage detector (`retinanet()`, `fcos()`): the class and box
  outputs are all in its `head` (not a `box_predictor`), which is what a transfer run
  re-initialises and trains as the head."""
  c = get_config()
  c.model = model
  c.transfer.head = ("head",)
  c.transfer.init_exclude = ("head",)
  return c


def faster_rcnn(**changes) -> dict:
  """A small Faster R-CNN for 128x128 scenes: ResNet-18 at width 16 (BatchNorm, all layers
  trained: no pretrained weights), a 64-channel FPN, anchors 8..128 px (the scenes' objects
  are 8-60 px), fewer proposals than torchvision's 2000/1000 (a 128 px canvas has 4,092
  anchors), a 256-wide box head; `changes` override."""
  return {"name": "fasterrcnn_resnet18_fpn", "width": 16, "backbone_norm": "batch",
          "trainable_backbone_layers": 5, "fpn_channels": 64,
          "anchor_sizes": ((8,), (16,), (32,), (64,), (128,)),
          "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
          "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 100,
          "box_batch_size_per_image": 128, "representation_size": 256, **changes}


def mask_rcnn(**changes) -> dict:
  """`faster_rcnn()` with torchvision's mask branch, narrowed to 32 channels (four 3x3
  convs, the 2x transposed conv, the 28x28 per-class logits; at 64 channels the branch cost
  a 2-core CPU 1.3 s per step, at 32 0.7 s: benchmarks in BENCHMARKS.md)."""
  return faster_rcnn(**{"name": "maskrcnn_resnet18_fpn", "mask_layers": (32, 32, 32, 32),
                        "mask_dim_reduced": 32, **changes})


def keypoint_rcnn(**changes) -> dict:
  """`faster_rcnn()` with torchvision's keypoint branch, narrowed: eight 3x3 convs of 32
  (torchvision: 512; at 64 a step cost 2.3 s on 2 cores, at 32 0.8 s) before the 56x56
  heatmaps (`num_keypoints` comes from the data set)."""
  return faster_rcnn(**{"name": "keypointrcnn_resnet18_fpn", "keypoint_layers": (32,) * 8,
                        **changes})


def retinanet(**changes) -> dict:
  """A small RetinaNet for 128x128 scenes: `faster_rcnn()`'s ResNet-18 at width 16 and
  64-channel FPN (P3..P7), torchvision's three anchor sizes per level scaled from 32..512 to
  8..128 px (8, 10, 12 on P3 up to 128, 161, 203 on P7), at most 100 detections per image
  (torchvision: 300; the scenes hold at most 8 objects); `changes` override."""
  sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (8, 16, 32, 64, 128))
  return {"name": "retinanet_resnet18_fpn", "width": 16, "backbone_norm": "batch",
          "trainable_backbone_layers": 5, "fpn_channels": 64, "anchor_sizes": sizes,
          "detections_per_img": 100, **changes}


def fcos(**changes) -> dict:
  """A small FCOS for 128x128 scenes: `retinanet()`'s backbone and FPN, torchvision's
  per-level squares 8..128 px (the strides) and scale ranges (the scenes' objects, 8-60 px,
  fall almost all in P3's range, up to 64 px); `changes` override."""
  return {"name": "fcos_resnet18_fpn", "width": 16, "backbone_norm": "batch",
          "trainable_backbone_layers": 5, "fpn_channels": 64, **changes}


def ssd(**changes) -> dict:
  """A small SSD for 128x128 scenes: torchvision's SSD VGG-16 extractor at width 16 (VGG
  widths 16..128, fc 256) with BatchNorm after every extractor conv (from scratch, plain
  VGG's loss stalled: classification 4.0 from step 300 to 800); SSD300's four extra blocks
  need ~270 px, so three smaller ones (strides 32, 64, 128: maps 16, 8, 4, 2, 1); default
  boxes from 0.07 of the image (9 px on the stride-8 map, the scenes' smallest objects) to
  0.9; torchvision's matcher, 3:1 hard negatives, selection (score 0.01, NMS 0.45), at most
  100 detections; `changes` override."""
  return {"name": "ssd300_vgg16", "width": 16, "backbone_norm": "batch",
          "extra_layers": ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 2, 1, 0)),
          "aspect_ratios": ((2,), (2, 3), (2, 3), (2,), (2,)),
          "scales": (0.07, 0.15, 0.33, 0.51, 0.69, 0.9), "steps": (8, 16, 32, 64, 128),
          "detections_per_img": 100, **changes}


# SSD's training augmentation (torchvision's references/detection presets "ssd"): photometric
# distortion, zoom out (up to 2x here: the scenes' objects are already small), IoU crop, flip;
# the canvas resize then brings every image back to 128 px
SSD_AUGMENTATION = (("photometric_distort", {}),
                    ("random_zoom_out", {"side_range": (1.0, 2.0), "fill": (0.5, 0.5, 0.5)}),
                    ("random_iou_crop", {}), ("random_hflip", {}))


def with_keys(c: ml_collections.ConfigDict, *keys: str) -> ml_collections.ConfigDict:
  """`c` with more per-object labels loaded (`masks`, `keypoints`)."""
  c.data["keys"] = tuple(c.data["keys"]) + tuple(keys)
  return c


def panoptic_fpn(**changes) -> dict:
  """`mask_rcnn()` with detectron2's semantic FPN head (64 channels, GroupNorm) and its merge;
  the stuff area limit scaled from detectron2's 4096 px at ~800 px images to 64 px at 128."""
  return mask_rcnn(**{"name": "panopticfpn_resnet18_fpn", "sem_seg_conv_dims": 64,
                      "combine_stuff_area_thresh": 64, **changes})
