"""YOLOv2's darknet cfg sections, `[reorg]` and `[region]`, for the parser of
`jaxcv.models.detection.backbone.darknet_cfg` (which imports this module and calls `extend`
and `check`; nothing here imports it, so the error class comes in as an argument).

- `[reorg]`: `stride` (darknet's default 1): the passthrough layer's space-to-depth, output
  `[H / stride, W / stride, C * stride^2]`. `reverse`, `flatten` and `extra` other than 0 are
  errors (not implemented). The element order is darknet's (`reorg_cpu` called by
  `forward_reorg_layer` with the INPUT's w, h, c and forward=0), see
  `jaxcv.models.detection.backbone.darknet.reorg`.
- `[region]`: `anchors` and `classes` (required; anchors in cells of the region's grid,
  darknet's unit), `num` (the number of anchors; default their count), `coords` (4),
  `softmax` (must be 1: softmax over the classes, YOLOv2's; darknet's default 0 is not
  implemented), and the training options of darknet's `parse_region` with darknet's
  defaults: `thresh` (.5; the IoU above which a prediction is not background),
  `object_scale`, `noobject_scale`, `class_scale`, `coord_scale` (1 each), `rescore` (0;
  1: the objectness target is the IoU of the prediction with its ground truth),
  `bias_match` (0; 1: a ground truth's anchor is chosen by the anchors' shapes, 0: by the
  predicted shapes), `jitter` (.2), `random` (0), `absolute` (0, read and ignored as
  darknet's region layer does). `coords` other than 4 (masks), `background` other than 0,
  `tree` and `map` (YOLO9000's hierarchy) are errors. The layer before it must output
  `num * (5 + classes)` channels; its raw output is `[B, H, W, num, 5 + classes]` as a
  [yolo] layer's (darknet's `entry_index`: anchor-major channels, then x, y, w, h,
  objectness, classes).
"""
from __future__ import annotations

from typing import Any

LAYERS = ("reorg", "region")


def extend(spec: dict, unsupported: dict, as_int, as_float, as_floats, required) -> None:
  """Adds the two sections' keys to the parser's `SPEC` / `UNSUPPORTED` tables (its value
  parsers and required-marker passed in)."""
  spec["reorg"] = {"stride": (as_int, 1)}
  spec["region"] = {
      "anchors": (as_floats, required), "classes": (as_int, required), "num": (as_int, None),
      "coords": (as_int, 4), "softmax": (as_int, 0), "thresh": (as_float, 0.5),
      "object_scale": (as_float, 1.0), "noobject_scale": (as_float, 1.0),
      "class_scale": (as_float, 1.0), "coord_scale": (as_float, 1.0),
      "rescore": (as_int, 0), "bias_match": (as_int, 0), "jitter": (as_float, 0.2),
      "random": (as_int, 0), "absolute": (as_int, 0)}
  unsupported["reorg"] = {"reverse": "0", "flatten": "0", "extra": "0"}
  unsupported["region"] = {"coords": "4", "background": "0"}


def check(kind: str, d: dict, channels: int, where: str, error: type) -> int:
  """Checks and completes the typed layer dict `d` of a `[reorg]` / `[region]` section whose
  input has `channels` channels; returns its output channels. Raises `error(message)`."""
  if kind == "reorg":
    if d["stride"] < 1:
      raise error(f"{where}: stride must be >= 1; got {d['stride']}")
    return channels * d["stride"] ** 2
  for key in ("tree", "map"):
    if key in d["options"]:
      raise error(f"{where}: {key}= (YOLO9000's class hierarchy) is not supported")
  if d["softmax"] != 1:
    raise error(f"{where}: softmax={d['softmax']} (logistic classes) is not supported; "
                "only softmax=1, YOLOv2's class softmax")
  a = d["anchors"]
  if len(a) % 2:
    raise error(f"{where}: anchors has {len(a)} numbers, not (w, h) pairs")
  d["anchors"] = tuple(zip(a[0::2], a[1::2]))
  if not all(w > 0 and h > 0 for w, h in d["anchors"]):
    raise error(f"{where}: anchors must be positive (w, h) pairs in grid cells")
  if d["num"] is None:
    d["num"] = len(d["anchors"])
  if d["num"] != len(d["anchors"]):
    raise error(f"{where}: num={d['num']} but anchors has {len(d['anchors'])} pairs")
  if d["classes"] < 1:
    raise error(f"{where}: classes must be >= 1")
  for key in ("rescore", "bias_match"):
    d[key] = bool(d[key])
  need = d["num"] * (5 + d["classes"])
  if channels != need:
    raise error(f"{where}: the layer before it outputs {channels} channels; {d['num']} "
                f"anchors x (5 + {d['classes']} classes) needs {need} (filters={need} in "
                "that [convolutional])")
  return channels


def options_of(region: dict) -> dict[str, Any]:
  """The training options of a parsed `[region]` layer dict, by name."""
  return {k: region[k] for k in ("thresh", "object_scale", "noobject_scale", "class_scale",
                                 "coord_scale", "rescore", "bias_match")}
