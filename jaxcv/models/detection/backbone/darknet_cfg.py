"""Darknet cfg files: a parser into typed layer dicts, the official YOLOv3 / YOLOv3-tiny
descriptions for any number of classes, and a rewriter of `classes` / `anchors` in any cfg.

    cfg = parse_cfg(yolov3_cfg(num_classes=3))       # DarknetCfg(net, layers)
    cfg.layers[81]["filters"]                         # 24 = 3 * (5 + 3)
    [y["index"] for y in cfg.yolo_layers]             # [82, 94, 106]

The format (darknet's `parse_network_cfg`): sections `[name]` followed by `key=value` lines;
lines starting with `#` or `;` and blank lines are skipped, whitespace around keys and
values is ignored. The first section is `[net]` (or `[network]`), the input description
(`width`, `height`, `channels`, and the training options, kept as text); every later
section is one layer, numbered from 0 in file order: the index that `[route] layers` and
`[shortcut] from` refer to (negative values count back from the layer itself), that the
darknet `.weights` file follows (`jaxcv.weights.darknet`) and that names the parameters of
`jaxcv.models.detection.backbone.darknet.Darknet` (`layer{i}`).

Sections and keys understood (YOLOv3's, YOLOv3-tiny's, neighbours; YOLOv2's: `darknet_region`):
- `[convolutional]`: `filters`, `size`, `stride`, `activation` (required), `batch_normalize`
  (0), `pad` (0; 1 means padding `size // 2`), `padding` (0, used when `pad=0`). Activations
  `leaky` (slope 0.1), `linear`, `logistic`, `mish`, `swish`. `groups`, `dilation` other than
  1 and `binary` / `xnor` are errors (not implemented). With `pad=0` pytorchyolo still pads
  `(size - 1) // 2`; jaxcv follows darknet's `padding` (every official cfg has `pad=1`).
- `[shortcut]`: `from` (required), `activation` (`linear`); adds layer `from` to the
  previous output (same shape required; pytorchyolo ignores the activation, jaxcv applies it:
  the same for `linear`, the only one the official cfgs use).
- `[route]`: `layers` (required, one or more indices), `groups` (1), `group_id` (0): the
  channel concatenation of those layers' outputs (`groups` / `group_id` take one slice of it,
  as pytorchyolo for YOLOv4-tiny).
- `[upsample]`: `stride` (required): nearest-neighbour, integer factor.
- `[maxpool]`: `size`, `stride` (required). See `Darknet` for the padding of `size=2
  stride=1` (YOLOv3-tiny's layer 11): pytorchyolo pads right/bottom with ZEROS, darknet
  with -inf (its `-FLT_MAX` start of the max); jaxcv follows pytorchyolo by default.
- `[yolo]`: `mask`, `anchors`, `classes` (required), `num` (the number of anchors),
  `jitter` (.2), `ignore_thresh` (.5), `truth_thresh` (1), `random` (0); `new_coords` other
  than 0 and `scale_x_y` other than 1 are errors. The layer before it must output
  `len(mask) * (5 + classes)` channels.
Other keys are kept in `options` (text) and otherwise ignored, as darknet ignores unused
fields.

Errors (`DarknetCfgError`, a ValueError, naming the line): an unknown section, a `key=value`
line outside a section or without `=`, a missing required key, a value that is not a number,
a route / shortcut to a layer that does not exist (or to a later one, or to a `[yolo]`
layer), a mask index beyond the anchors, channel counts that do not fit.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxcv.models.detection.backbone import darknet_region as region


class DarknetCfgError(ValueError):
  """A darknet cfg text that cannot be parsed or built; the message names the line."""


ACTIVATIONS = ("leaky", "linear", "logistic", "mish", "swish")
LAYER_TYPES = ("convolutional", "shortcut", "route", "upsample", "maxpool", "yolo") + region.LAYERS
REQUIRED = object()


class DarknetCfg(NamedTuple):
  """A parsed cfg: `net` (the `[net]` section: `width`, `height`, `channels` as ints,
  `options` the raw key -> text) and `layers` (one dict per later section, in order; each
  has `type`, `index`, `line` (of its `[section]` header), `in_channels`, `out_channels`,
  `options` and its typed keys; see the module docstring). Cached by `parse_cfg`: do not
  mutate."""
  net: dict
  layers: tuple

  @property
  def conv_layers(self) -> list[dict]:
    return [l for l in self.layers if l["type"] == "convolutional"]

  @property
  def yolo_layers(self) -> list[dict]:
    return [l for l in self.layers if l["type"] == "yolo"]


def _int(v: str, key: str, where: str) -> int:
  try:
    return int(v.strip())
  except ValueError:
    try:
      f = float(v)
    except ValueError:
      f = None
    if f is not None and f == int(f):
      return int(f)
    raise DarknetCfgError(f"{where}: {key}={v!r} is not an integer") from None


def _float(v: str, key: str, where: str) -> float:
  try:
    return float(v.strip())
  except ValueError:
    raise DarknetCfgError(f"{where}: {key}={v!r} is not a number") from None


def _ints(v: str, key: str, where: str) -> tuple[int, ...]:
  parts = [p for p in v.split(",") if p.strip()]
  if not parts:
    raise DarknetCfgError(f"{where}: {key} is empty")
  return tuple(_int(p, key, where) for p in parts)


def _floats(v: str, key: str, where: str) -> tuple[float, ...]:
  parts = [p for p in v.split(",") if p.strip()]
  if not parts:
    raise DarknetCfgError(f"{where}: {key} is empty")
  return tuple(_float(p, key, where) for p in parts)


def _text(v: str, key: str, where: str) -> str:
  return v.strip()


# section -> key -> (parser, default); REQUIRED marks keys without a default
SPEC: dict[str, dict[str, tuple[Any, Any]]] = {
    "net": {"width": (_int, 416), "height": (_int, 416), "channels": (_int, 3)},
    "convolutional": {"filters": (_int, REQUIRED), "size": (_int, REQUIRED),
                      "stride": (_int, REQUIRED), "activation": (_text, REQUIRED),
                      "batch_normalize": (_int, 0), "pad": (_int, 0), "padding": (_int, 0)},
    "shortcut": {"from": (_int, REQUIRED), "activation": (_text, "linear")},
    "route": {"layers": (_ints, REQUIRED), "groups": (_int, 1), "group_id": (_int, 0)},
    "upsample": {"stride": (_int, REQUIRED)},
    "maxpool": {"size": (_int, REQUIRED), "stride": (_int, REQUIRED)},
    "yolo": {"mask": (_ints, REQUIRED), "anchors": (_floats, REQUIRED),
             "classes": (_int, REQUIRED), "num": (_int, None), "jitter": (_float, 0.2),
             "ignore_thresh": (_float, 0.5), "truth_thresh": (_float, 1.0),
             "random": (_int, 0)},
}
# keys whose non-default values change the computation in ways not implemented here
UNSUPPORTED = {
    "convolutional": {"groups": "1", "dilation": "1", "binary": "0", "xnor": "0"},
    "yolo": {"new_coords": "0", "scale_x_y": "1"},
    "shortcut": {"weights_type": "none"},
}
region.extend(SPEC, UNSUPPORTED, _int, _float, _floats, REQUIRED)  # [reorg], [region]
ALIASES = {"network": "net", "conv": "convolutional", "max": "maxpool"}


def _sections(text: str) -> list[tuple[str, int, dict[str, tuple[str, int]]]]:
  """`(name, header line, {key: (value, line)})` per section, darknet's `read_cfg` rules."""
  out: list[tuple[str, int, dict]] = []
  for n, raw in enumerate(text.splitlines(), start=1):
    line = raw.strip()
    if not line or line[0] in "#;":
      continue
    if line.startswith("["):
      if not line.endswith("]"):
        raise DarknetCfgError(f"line {n}: section header {line!r} has no closing ']'")
      out.append((line[1:-1].strip().lower(), n, {}))
      continue
    if not out:
      raise DarknetCfgError(f"line {n}: {line!r} comes before the first [section]")
    if "=" not in line:
      raise DarknetCfgError(f"line {n}: {line!r} is not key=value (section [{out[-1][0]}] "
                            f"at line {out[-1][1]})")
    key, value = line.split("=", 1)
    out[-1][2][key.strip()] = (value.strip(), n)
  return out


def _typed(kind: str, header: int, opts: dict[str, tuple[str, int]]) -> dict:
  where = f"[{kind}] at line {header}"
  d: dict[str, Any] = {}
  for key, (fn, default) in SPEC[kind].items():
    if key in opts:
      value, n = opts[key]
      d[key] = fn(value, key, f"{where} (line {n})")
    elif default is REQUIRED:
      raise DarknetCfgError(f"{where}: missing required key {key!r}")
    else:
      d[key] = default
  for key, default in UNSUPPORTED.get(kind, {}).items():
    if key in opts and opts[key][0].strip().lower() not in (default, default + ".0"):
      raise DarknetCfgError(f"{where} (line {opts[key][1]}): {key}={opts[key][0]} is not "
                            f"supported (only {default})")
  d["options"] = {k: v for k, (v, _) in opts.items()}
  return d


def _resolve(index: int, i: int, key: str, where: str, layers: list[dict]) -> int:
  j = index + i if index < 0 else index
  if not 0 <= j < i:
    raise DarknetCfgError(f"{where}: {key}={index} refers to layer {j}, which does not exist "
                          f"before layer {i} (layers 0..{i - 1})")
  if layers[j]["type"] in ("yolo", "region"):
    raise DarknetCfgError(f"{where}: {key}={index} refers to layer {j}, a [{layers[j]['type']}] "
                          "layer, whose output is the decoded detections, not a feature map")
  return j


@functools.lru_cache(maxsize=64)
def parse_cfg(text: str) -> DarknetCfg:
  """Parses darknet cfg text (see the module docstring); `DarknetCfgError` names the line."""
  if not isinstance(text, str):
    raise TypeError(f"parse_cfg takes the cfg text (str); got {type(text).__name__}")
  sections = _sections(text)
  if not sections:
    raise DarknetCfgError("the cfg has no sections (it must start with [net])")
  name, header, opts = sections[0]
  if ALIASES.get(name, name) != "net":
    raise DarknetCfgError(f"line {header}: the first section must be [net]; got [{name}]")
  net = _typed("net", header, opts)
  net["line"] = header
  if min(net["width"], net["height"], net["channels"]) < 1:
    raise DarknetCfgError(f"[net] at line {header}: width, height and channels must be >= 1")
  layers: list[dict] = []
  channels = net["channels"]
  for i, (name, header, opts) in enumerate(sections[1:]):
    kind = ALIASES.get(name, name)
    if kind not in LAYER_TYPES:
      raise DarknetCfgError(f"line {header}: unknown section [{name}] (layer {i}); known: "
                            f"{', '.join('[' + t + ']' for t in LAYER_TYPES)} after [net]")
    where = f"[{kind}] at line {header} (layer {i})"
    d = _typed(kind, header, opts)
    d.update(type=kind, index=i, line=header, in_channels=channels)
    if kind == "convolutional":
      if d["activation"] not in ACTIVATIONS:
        raise DarknetCfgError(f"{where}: activation {d['activation']!r} is not one of "
                              f"{list(ACTIVATIONS)}")
      if d["filters"] < 1 or d["size"] < 1 or d["stride"] < 1:
        raise DarknetCfgError(f"{where}: filters, size and stride must be >= 1")
      d["batch_normalize"] = bool(d["batch_normalize"])
      d["padding"] = d["size"] // 2 if d["pad"] else d["padding"]
      out = d["filters"]
    elif kind == "shortcut":
      d["from"] = _resolve(d["from"], i, "from", where, layers)
      if d["activation"] not in ACTIVATIONS:
        raise DarknetCfgError(f"{where}: activation {d['activation']!r} is not one of "
                              f"{list(ACTIVATIONS)}")
      if layers[d["from"]]["out_channels"] != channels:
        raise DarknetCfgError(f"{where}: from={d['from']} has "
                              f"{layers[d['from']]['out_channels']} channels, the previous "
                              f"layer {channels}: a shortcut adds equal shapes")
      out = channels
    elif kind == "route":
      d["layers"] = tuple(_resolve(j, i, "layers", where, layers) for j in d["layers"])
      total = sum(layers[j]["out_channels"] for j in d["layers"])
      if d["groups"] < 1 or not 0 <= d["group_id"] < d["groups"] or total % d["groups"]:
        raise DarknetCfgError(f"{where}: groups={d['groups']} group_id={d['group_id']} do "
                              f"not split {total} channels")
      out = total // d["groups"]
    elif kind == "upsample":
      if d["stride"] < 1:
        raise DarknetCfgError(f"{where}: stride must be >= 1 (downsampling is not supported)")
      out = channels
    elif kind == "maxpool":
      if d["size"] < 1 or d["stride"] < 1:
        raise DarknetCfgError(f"{where}: size and stride must be >= 1")
      out = channels
    elif kind in region.LAYERS:
      out = region.check(kind, d, channels, where, DarknetCfgError)
    else:  # yolo
      a = d["anchors"]
      if len(a) % 2:
        raise DarknetCfgError(f"{where}: anchors has {len(a)} numbers, not (w, h) pairs")
      d["anchors"] = tuple(zip(a[0::2], a[1::2]))
      if d["num"] is None:
        d["num"] = len(d["anchors"])
      if d["num"] != len(d["anchors"]):
        raise DarknetCfgError(f"{where}: num={d['num']} but anchors has "
                              f"{len(d['anchors'])} pairs")
      bad = [m for m in d["mask"] if not 0 <= m < d["num"]]
      if bad:
        raise DarknetCfgError(f"{where}: mask {list(d['mask'])} names anchors {bad} outside "
                              f"0..{d['num'] - 1}")
      if d["classes"] < 1:
        raise DarknetCfgError(f"{where}: classes must be >= 1")
      need = len(d["mask"]) * (5 + d["classes"])
      if channels != need:
        raise DarknetCfgError(f"{where}: the layer before it outputs {channels} channels; "
                              f"{len(d['mask'])} anchors x (5 + {d['classes']} classes) needs "
                              f"{need} (filters={need} in that [convolutional])")
      out = channels
    d["out_channels"] = out
    layers.append(d)
    channels = out
  if not any(l["type"] in ("yolo", "region") for l in layers):
    raise DarknetCfgError("the cfg has no [yolo] layer (nor [region]): nothing to detect with")
  return DarknetCfg(net, tuple(layers))


def num_weights(cfg: DarknetCfg | str) -> int:
  """float32 values a darknet `.weights` file holds for `cfg` after its header: per
  convolutional layer, BN (bias, scale, mean, var) or the conv bias, then the kernel."""
  cfg = parse_cfg(cfg) if isinstance(cfg, str) else cfg
  return sum(4 * l["filters"] * l["batch_normalize"] + l["filters"] * (not l["batch_normalize"])
             + l["filters"] * l["in_channels"] * l["size"] ** 2 for l in cfg.conv_layers)


# ------------------------------------------------------------------------------------------
# The official descriptions (pjreddie/darknet cfg/yolov3.cfg, cfg/yolov3-tiny.cfg)

YOLOV3_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90),
                  (156, 198), (373, 326))
YOLOV3_TINY_ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))


def _net(width: int, height: int, testing: bool, batch: int, subdivisions: int) -> str:
  lines = ["[net]", "# Testing"]
  lines += ["batch=1", "subdivisions=1"] if testing else ["# batch=1", "# subdivisions=1"]
  lines += ["# Training"]
  lines += ([f"# batch={batch}", f"# subdivisions={subdivisions}"] if testing
            else [f"batch={batch}", f"subdivisions={subdivisions}"])
  lines += [f"width={width}", f"height={height}", "channels=3", "momentum=0.9",
            "decay=0.0005", "angle=0", "saturation = 1.5", "exposure = 1.5", "hue=.1", "",
            "learning_rate=0.001", "burn_in=1000", "max_batches = 500200", "policy=steps",
            "steps=400000,450000", "scales=.1,.1", ""]
  return "\n".join(lines)


def _conv(filters: int, size: int, stride: int = 1, bn: bool = True,
          activation: str = "leaky") -> str:
  head = "[convolutional]\n" + ("batch_normalize=1\n" if bn else "")
  return (f"{head}filters={filters}\nsize={size}\nstride={stride}\npad=1\n"
          f"activation={activation}\n")


def _yolo(mask: Sequence[int], anchors, num_classes: int) -> str:
  text = ",  ".join(f"{_num(w)},{_num(h)}" for w, h in anchors)
  return (f"[yolo]\nmask = {','.join(str(m) for m in mask)}\nanchors = {text}\n"
          f"classes={num_classes}\nnum={len(anchors)}\njitter=.3\nignore_thresh = .7\n"
          f"truth_thresh = 1\nrandom=1\n")


def _num(v) -> str:
  v = float(v)
  return str(int(v)) if v == int(v) else repr(v)


def _check_common(num_classes, width_mult, anchors, count: int, fn: str):
  if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) \
      or num_classes < 1:
    raise ValueError(f"{fn}: num_classes must be a positive int; got {num_classes!r}")
  if not float(width_mult) > 0:
    raise ValueError(f"{fn}: width_mult must be > 0; got {width_mult!r}")
  a = np.asarray(anchors, np.float64)
  if a.shape != (count, 2) or not np.all(np.isfinite(a)) or not np.all(a > 0):
    raise ValueError(f"{fn}: anchors must be {count} positive (w, h) pairs in pixels; got "
                     f"shape {a.shape}")
  return [tuple(p) for p in a.tolist()]


def yolov3_cfg(num_classes: int = 80, width: int = 608, height: int | None = None,
               width_mult: float = 1.0, anchors=YOLOV3_ANCHORS) -> str:
  """The text of darknet's cfg/yolov3.cfg (Darknet-53 with three [yolo] layers at strides
  32, 16, 8) for `num_classes` (the convolutions before the [yolo] layers have
  `3 * (5 + num_classes)` filters). `width_mult` scales every other convolution's filters
  (`max(1, round(f * width_mult))`: small variants for tests); `anchors` 9 (w, h) pairs in
  input pixels. 107 layers, yolo at 82, 94, 106."""
  anchors = _check_common(num_classes, width_mult, anchors, 9, "yolov3_cfg")
  f = lambda c: max(1, int(round(c * width_mult)))  # noqa: E731
  out = 3 * (5 + num_classes)
  parts = [_net(width, height or width, False, 64, 16), _conv(f(32), 3)]
  for filters, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
    parts.append(_conv(f(filters), 3, 2))
    for _ in range(blocks):
      parts += [_conv(f(filters // 2), 1), _conv(f(filters), 3),
                "[shortcut]\nfrom=-3\nactivation=linear\n"]
  for k, (filters, mask, skip) in enumerate(((512, (6, 7, 8), 61), (256, (3, 4, 5), 36),
                                             (128, (0, 1, 2), None))):
    if k:
      parts += [_conv(f(filters), 1), "[upsample]\nstride=2\n",
                f"[route]\nlayers = -1, {(61, 36)[k - 1]}\n"]
    for _ in range(3):
      parts += [_conv(f(filters), 1), _conv(f(2 * filters), 3)]
    parts += [_conv(out, 1, bn=False, activation="linear"), _yolo(mask, anchors, num_classes)]
    if skip is not None:
      parts.append("[route]\nlayers = -4\n")
  return "\n".join(parts)


def yolov3_tiny_cfg(num_classes: int = 80, width: int = 416, height: int | None = None,
                    width_mult: float = 1.0, anchors=YOLOV3_TINY_ANCHORS) -> str:
  """The text of darknet's cfg/yolov3-tiny.cfg (seven 3x3 convolutions with max pools, two
  [yolo] layers at strides 32 and 16; the last pool has size 2, stride 1) for
  `num_classes`; `width_mult` and `anchors` (6 pairs) as `yolov3_cfg`. 24 layers, yolo at
  16 and 23."""
  anchors = _check_common(num_classes, width_mult, anchors, 6, "yolov3_tiny_cfg")
  f = lambda c: max(1, int(round(c * width_mult)))  # noqa: E731
  out = 3 * (5 + num_classes)
  parts = [_net(width, height or width, True, 64, 2)]
  for k, filters in enumerate((16, 32, 64, 128, 256, 512)):
    parts += [_conv(f(filters), 3), f"[maxpool]\nsize=2\nstride={1 if k == 5 else 2}\n"]
  parts += [_conv(f(1024), 3), "###########\n", _conv(f(256), 1), _conv(f(512), 3),
            _conv(out, 1, bn=False, activation="linear"), _yolo((3, 4, 5), anchors, num_classes),
            "[route]\nlayers = -4\n", _conv(f(128), 1), "[upsample]\nstride=2\n",
            "[route]\nlayers = -1, 8\n", _conv(f(256), 3),
            _conv(out, 1, bn=False, activation="linear"), _yolo((0, 1, 2), anchors, num_classes)]
  return "\n".join(parts)


YOLOV3_CFG = yolov3_cfg()            # 608x608, 80 classes (cfg/yolov3.cfg)
YOLOV3_TINY_CFG = yolov3_tiny_cfg()  # 416x416, 80 classes (cfg/yolov3-tiny.cfg)
# float32 values of the published yolov3.weights (248,007,048 bytes) and yolov3-tiny.weights
# (35,434,956 bytes) after their 20-byte headers
YOLOV3_NUM_WEIGHTS = 62_001_757
YOLOV3_TINY_NUM_WEIGHTS = 8_858_734


def rewrite_cfg(text: str, num_classes: int | None = None, anchors=None) -> str:
  """`text` with every [yolo] layer's `classes` set to `num_classes` (and the `filters` of
  the [convolutional] right before it to `len(mask) * (5 + num_classes)`) and / or its
  `anchors` (and `num`) replaced by `anchors` ((w, h) pairs in input pixels); every other
  line as it was. The result is parsed, so a cfg it breaks raises `DarknetCfgError`."""
  cfg = parse_cfg(text)
  lines = text.splitlines()
  sections = _sections(text)[1:]
  edits: dict[int, str] = {}   # 1-based line -> new line
  inserts: dict[int, list[str]] = {}  # after header line -> extra lines

  def put(i: int, key: str, value: str):
    _, header, opts = sections[i]
    if key in opts:
      edits[opts[key][1]] = f"{key}={value}"
    else:
      inserts.setdefault(header, []).append(f"{key}={value}")

  if anchors is not None:
    a = np.asarray(anchors, np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or not np.all(np.isfinite(a)) or not np.all(a > 0):
      raise ValueError(f"anchors must be positive (w, h) pairs; got shape {a.shape}")
  for y in cfg.yolo_layers:
    i = y["index"]
    classes = y["classes"] if num_classes is None else int(num_classes)
    if num_classes is not None:
      if classes < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes!r}")
      put(i, "classes", str(classes))
      prev = cfg.layers[i - 1]
      if prev["type"] != "convolutional":
        raise DarknetCfgError(f"[yolo] at line {y['line']}: the layer before it is a "
                              f"[{prev['type']}], so its channels cannot be set for "
                              f"{classes} classes")
      put(i - 1, "filters", str(len(y["mask"]) * (5 + classes)))
    if anchors is not None:
      put(i, "anchors", ",  ".join(f"{_num(w)},{_num(h)}" for w, h in a.tolist()))
      put(i, "num", str(len(a)))
  out = []
  for n, line in enumerate(lines, start=1):
    out.append(edits.get(n, line))
    out.extend(inserts.get(n, []))
  new = "\n".join(out) + ("\n" if text.endswith("\n") else "")
  parse_cfg(new)
  return new
