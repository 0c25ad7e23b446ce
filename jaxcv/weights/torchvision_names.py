"""Which torchvision module each jaxcv module is, per model family, and the model kwargs a
torchvision state_dict determines (widths, branches, v1/v2), with the checks that name a
state_dict of the wrong model. Used by `jaxcv.weights.torchvision` (the conversion itself).

`FAMILIES[name] = (module_name(jaxcv path, params) -> torch module name, torch name of the
layer num_classes is read from)`; `KWARGS[name](state_dict) -> dict`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Path = tuple[str, ...]


def _resnet_module(path: Path, params: Mapping) -> str:
  """('stage3', 'block2', 'conv1') -> 'layer3.1.conv1'; stem and head to conv1/bn1/fc."""
  del params
  if path[0] == "stem":
    return {"conv": "conv1", "bn": "bn1"}[path[1]]
  if path[0] == "head":
    return "fc"
  stage, block, layer = path
  layer = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(layer, layer)
  return f"layer{stage[len('stage'):]}.{int(block[len('block'):]) - 1}.{layer}"


def _features_index(params: Mapping, path: Path, layers_per_conv: int, pool_layers: int) -> int:
  """Index in torch's `features` Sequential of the layer at jaxcv `(stageS, convK|bnK)`."""
  index = 0
  for s in range(1, int(path[0][len("stage"):])):
    num_convs = sum(1 for k in params[f"stage{s}"] if k.startswith("conv"))
    index += num_convs * layers_per_conv + pool_layers
  k = int(re.sub(r"\D", "", path[1]))  # conv3 / bn3 -> 3
  return index + (k - 1) * layers_per_conv + (1 if path[1].startswith("bn") else 0)


def _vgg_module(path: Path, params: Mapping) -> str:
  """VGG: features.i (conv [+ BN] + ReLU per conv, a pool per stage), classifier.0/3/6."""
  if path[0] == "classifier":
    return {"fc1": "classifier.0", "fc2": "classifier.3"}[path[1]]
  if path[0] == "head":
    return "classifier.6"
  has_bn = any(k.startswith("bn") for k in params["stage1"])
  return f"features.{_features_index(params, path, 3 if has_bn else 2, 1)}"


def _alexnet_module(path: Path, params: Mapping) -> str:
  """AlexNet: features 0, 3 (stage1, 2), 6, 8, 10 (stage3); classifier.1/4/6."""
  del params
  if path[0] == "classifier":
    return {"fc1": "classifier.1", "fc2": "classifier.4"}[path[1]]
  if path[0] == "head":
    return "classifier.6"
  first = {"stage1": 0, "stage2": 3, "stage3": 6}[path[0]]
  return f"features.{first + 2 * (int(path[1][len('conv'):]) - 1)}"


def _head_module(path: Path, params: Mapping) -> str:
  """torchvision FCNHead (`conv`, `bn`, `cls`: Sequential 0, 1, 4) or DeepLabHead (ASPP at 0,
  then `conv`, `bn`, `cls` at 1, 2, 4), relative to the head's torch name."""
  if path[0] != "aspp":
    indices = {"conv": 1, "bn": 2, "cls": 4} if "aspp" in params else {"conv": 0, "bn": 1,
                                                                      "cls": 4}
    return str(indices[path[0]])
  branch, layer = path[1:]
  index = {"conv": 0, "bn": 1}[layer]
  if branch == "project":
    return f"0.project.{index}"
  if branch == "conv1x1":
    return f"0.convs.0.{index}"
  if branch == "pooling":  # ASPPPooling: AdaptiveAvgPool2d at 0, then conv, bn
    rates = sum(1 for k in params["aspp"] if k.startswith("atrous"))
    return f"0.convs.{rates + 1}.{index + 1}"
  return f"0.convs.{int(branch[len('atrous'):])}.{index}"


def _segmentation_module(path: Path, params: Mapping) -> str:
  """torchvision's FCN / DeepLabV3: `backbone.` + the ResNet's names, `classifier.` (jaxcv
  `head`) and `aux_classifier.` (jaxcv `aux`)."""
  if path[0] in ("head", "aux"):
    torch_head = {"head": "classifier", "aux": "aux_classifier"}[path[0]]
    return f"{torch_head}.{_head_module(path[1:], params[path[0]])}"
  return f"backbone.{_resnet_module(path, params)}"


def _segmentation_kwargs(state: Mapping) -> dict:
  """torchvision builds the auxiliary head only with `aux_loss=True`; so does jaxcv."""
  return {"aux_loss": "aux_classifier.4.weight" in state}


def _detection_module(path: Path, params: Mapping) -> str:
  """torchvision's FasterRCNN: `backbone.body.` (the ResNet), `backbone.fpn.inner_blocks.i.0/1`
  and `layer_blocks.i.0/1`, `rpn.head.conv.i.0`, `rpn.head.cls_logits/bbox_pred`,
  `roi_heads.box_head.fc6/fc7` (TwoMLPHead) or `.i.0/1` convs and `.k` Linear after its
  Flatten (FastRCNNConvFCHead), `roi_heads.box_predictor.cls_score/bbox_pred`."""
  top = path[0]
  if top == "fpn" and path[1] in ("p6", "p7"):  # LastLevelP6P7
    return f"backbone.fpn.extra_blocks.{path[1]}"
  if top == "fpn":
    kind, i = re.match(r"(inner|layer)(\d+)", path[1]).groups()
    return f"backbone.fpn.{kind}_blocks.{i}.{ {'conv': 0, 'bn': 1}[path[2]]}"
  if top == "rpn_head":
    if path[1].startswith("conv"):
      return f"rpn.head.conv.{path[1][len('conv'):]}.0"
    return f"rpn.head.{path[1]}"
  if top == "box_head":
    layer = path[1]
    if layer in ("fc6", "fc7"):
      return f"roi_heads.box_head.{layer}"
    num_convs = sum(1 for k in params["box_head"] if k.startswith("conv"))
    if layer.startswith("fc"):  # Linear layers after the Flatten, each followed by a ReLU
      return f"roi_heads.box_head.{num_convs + 1 + 2 * int(layer[2:])}"
    return f"roi_heads.box_head.{int(layer[-1])}.{0 if layer.startswith('conv') else 1}"
  if top == "box_predictor":
    return f"roi_heads.box_predictor.{path[1]}"
  if top == "mask_head":  # MaskRCNNHeads: Conv2dNormActivation blocks
    i = int(re.search(r"\d+$", path[1]).group())  # conv{i} / bn{i}
    return f"roi_heads.mask_head.{i}.{0 if path[1].startswith('conv') else 1}"
  if top == "keypoint_head":  # KeypointRCNNHeads: Conv2d, ReLU, Conv2d, ...
    return f"roi_heads.keypoint_head.{2 * int(path[1][4:])}"
  if top in ("mask_predictor", "keypoint_predictor"):
    return f"roi_heads.{top}.{path[1]}"
  return f"backbone.body.{_resnet_module(path, params)}"


_DENSE_HEAD_PARTS = {"cls_tower": "classification_head.conv",
                     "reg_tower": "regression_head.conv",
                     "cls_logits": "classification_head.cls_logits",
                     "bbox_reg": "regression_head.bbox_reg",
                     "bbox_ctrness": "regression_head.bbox_ctrness"}


def _dense_module(fcos: bool):
  """torchvision's RetinaNet / FCOS: the backbone and FPN as FasterRCNN's (P6/P7 are
  `backbone.fpn.extra_blocks.p6/p7`); the head's towers `head.classification_head.conv` and
  `head.regression_head.conv` are Conv2dNormActivation blocks `.i.0/1` in RetinaNet and a
  flat Sequential of (Conv2d, GroupNorm, ReLU) `.3i` / `.3i+1` in FCOS; then `.cls_logits`,
  `.bbox_reg` and FCOS's `.bbox_ctrness`."""
  def module(path: Path, params: Mapping) -> str:
    if path[0] != "head":
      return _detection_module(path, params)
    part = _DENSE_HEAD_PARTS[path[1]]
    if not path[1].endswith("_tower"):
      return f"head.{part}"
    i, norm = int(path[2][4:]), path[3] != "conv"
    return f"head.{part}.{3 * i + norm}" if fcos else f"head.{part}.{i}.{int(norm)}"
  return module


def _check_dense_state(name: str, state: Mapping, expected: str) -> None:
  if "head.classification_head.cls_logits.weight" not in state:
    raise ValueError(f"{name}: this state_dict is not a torchvision RetinaNet / FCOS (no "
                     f"head.classification_head.cls_logits); its keys start "
                     f"{sorted(state)[:5]}")
  found = _state_backbone(state)
  if found != expected:
    raise ValueError(f"{name} has a {expected} backbone, but this state_dict's "
                     f"backbone.body is {found}")
  fcos = "head.regression_head.bbox_ctrness.weight" in state
  if fcos != name.startswith("fcos"):
    raise ValueError(f"{name}: this state_dict is a torchvision "
                     f"{'FCOS' if fcos else 'RetinaNet'} (head with"
                     f"{'' if fcos else 'out'} bbox_ctrness)")


def _fcos_kwargs(name: str):
  def kwargs(state: Mapping) -> dict:
    _check_dense_state(name, state, _FCOS[name])
    return {"num_classes": state["head.classification_head.cls_logits.weight"].shape[0] - 1,
            "width": state["backbone.body.conv1.weight"].shape[0],
            "fpn_channels": state["backbone.fpn.inner_blocks.0.0.weight"].shape[0]}
  return kwargs


_FCOS = {"fcos_resnet18_fpn": "resnet18", "fcos_resnet34_fpn": "resnet34",
         "fcos_resnet50_fpn": "resnet50"}
_RETINANETS = {"retinanet_resnet18_fpn": "resnet18", "retinanet_resnet18_fpn_v2": "resnet18",
               "retinanet_resnet34_fpn": "resnet34",
               "retinanet_resnet50_fpn": "resnet50", "retinanet_resnet50_fpn_v2": "resnet50"}


def _retinanet_kwargs(name: str):
  def kwargs(state: Mapping) -> dict:
    _check_dense_state(name, state, _RETINANETS[name])
    v2 = "head.classification_head.conv.0.1.weight" in state  # GroupNorm heads
    if v2 != name.endswith("_v2"):
      other = name.removesuffix("_v2") + ("_v2" if v2 else "")
      raise ValueError(f"this state_dict is torchvision's {other} (heads "
                       f"{'with' if v2 else 'without'} GroupNorm), not {name}")
    anchors = state["head.regression_head.bbox_reg.weight"].shape[0] // 4
    fpn = state["backbone.fpn.inner_blocks.0.0.weight"].shape[0]
    p6_in = state["backbone.fpn.extra_blocks.p6.weight"].shape[1]
    out = {"num_classes": state["head.classification_head.cls_logits.weight"].shape[0]
                          // anchors - 1,
           "width": state["backbone.body.conv1.weight"].shape[0], "fpn_channels": fpn,
           # LastLevelP6P7 on P5 when its in_channels equal the FPN's, else on C5
           "fpn_extra": "p6p7" if p6_in == fpn else "p6p7_c5"}
    if not v2:  # torchvision's v1 COCO weights run FrozenBatchNorm2d with eps 0
      out["norm_epsilon"] = 0.0
    return out
  return kwargs


_DETECTION_BACKBONES = {
    **{f"{kind}rcnn_{b}_fpn": b for kind in ("faster", "mask")
       for b in ("resnet18", "resnet34", "resnet50", "resnet101")},
    "fasterrcnn_resnet50_fpn_v2": "resnet50", "maskrcnn_resnet50_fpn_v2": "resnet50",
    **{f"keypointrcnn_{b}_fpn": b for b in ("resnet18", "resnet34", "resnet50")}}
# the branch a detector's state_dict must have (and the others must not)
_BRANCHES = {"mask": "roi_heads.mask_predictor.mask_fcn_logits.weight",
             "keypoint": "roi_heads.keypoint_predictor.kps_score_lowres.weight"}


def _branch_kwargs(name: str, state: Mapping) -> dict:
  """The mask / keypoint branch's widths read from the state_dict, after checking that the
  state_dict has the branches `name` has."""
  kind = name.split("rcnn")[0]
  want = kind if kind in _BRANCHES else None
  have = next((b for b, k in _BRANCHES.items() if k in state), None)
  if want != have:
    def what(branch):
      return f"a {branch} branch ({_BRANCHES[branch]})" if branch else "no mask or keypoint branch"
    raise ValueError(f"{name} has {what(want)}; this state_dict has {what(have)} (a torchvision "
                     f"{ {'mask': 'MaskRCNN', 'keypoint': 'KeypointRCNN'}.get(have, 'FasterRCNN')})")
  if kind == "mask":
    convs = sorted({int(k.split(".")[2]) for k in state
                    if k.startswith("roi_heads.mask_head.") and k.endswith(".0.weight")})
    return {"mask_layers": tuple(state[f"roi_heads.mask_head.{i}.0.weight"].shape[0]
                                 for i in convs),
            "mask_dim_reduced": state["roi_heads.mask_predictor.conv5_mask.weight"].shape[1]}
  if kind == "keypoint":
    convs = sorted({int(k.split(".")[2]) for k in state
                    if k.startswith("roi_heads.keypoint_head.") and k.endswith(".weight")})
    return {"keypoint_layers": tuple(state[f"roi_heads.keypoint_head.{i}.weight"].shape[0]
                                     for i in convs),
            "num_keypoints": state[_BRANCHES["keypoint"]].shape[1]}
  return {}


def _state_backbone(state: Mapping) -> str:
  """The torchvision ResNet a detector state_dict's `backbone.body.*` is."""
  blocks = {k: len({key.split(".")[3] for key in state
                    if key.startswith(f"backbone.body.layer{k}.")}) for k in (1, 2, 3, 4)}
  bottleneck = "backbone.body.layer1.0.conv3.weight" in state
  for name, (sizes, block) in _RESNET_SPECS.items():
    if tuple(blocks.values()) == sizes and (block == "bottleneck") == bottleneck:
      return name
  return f"an unknown ResNet ({'bottleneck' if bottleneck else 'basic'} blocks {blocks})"


_RESNET_SPECS = {"resnet18": ((2, 2, 2, 2), "basic"), "resnet34": ((3, 4, 6, 3), "basic"),
                 "resnet50": ((3, 4, 6, 3), "bottleneck"),
                 "resnet101": ((3, 4, 23, 3), "bottleneck")}


def _detection_kwargs(name: str):
  def kwargs(state: Mapping) -> dict:
    if "backbone.body.conv1.weight" not in state or "rpn.head.cls_logits.weight" not in state:
      raise ValueError(f"{name}: this state_dict is not a torchvision FasterRCNN (no "
                       f"backbone.body.conv1 / rpn.head.cls_logits); its keys start "
                       f"{sorted(state)[:5]}")
    found, expected = _state_backbone(state), _DETECTION_BACKBONES[name]
    if found != expected:
      raise ValueError(f"{name} has a {expected} backbone, but this state_dict's "
                       f"backbone.body is {found}")
    v2 = "rpn.head.conv.1.0.weight" in state
    if v2 != name.endswith("_v2"):
      other = name.removesuffix("_v2") + ("_v2" if v2 else "")
      raise ValueError(f"this state_dict is torchvision's {other} (RPN head with "
                       f"{2 if v2 else 1} conv), not {name}")
    out = {"num_classes": state["roi_heads.box_predictor.cls_score.weight"].shape[0] - 1,
           "width": state["backbone.body.conv1.weight"].shape[0],
           "fpn_channels": state["backbone.fpn.inner_blocks.0.0.weight"].shape[0],
           "representation_size": state["roi_heads.box_predictor.cls_score.weight"].shape[1],
           **_branch_kwargs(name, state)}
    if not v2:  # torchvision's v1 COCO detectors run FrozenBatchNorm2d with eps 0
      out["norm_epsilon"] = 0.0
    return out
  return kwargs


# --- MobileNetV3 -------------------------------------------------------------------------
# jaxcv `stem`, `blockK`, `last_conv` are torchvision's features.0, features.K, features.N+1;
# in a block, `expand`, `depthwise`, `se`, `project` are `block.i` in that order, counting
# only those present (no `expand` where the expanded width equals the input's).
_MOBILENET_V3_PARTS = ("expand", "depthwise", "se", "project")
# name -> (inverted residual blocks, features index of the C4 block (the last strided one),
# ratio below which last-block / C4 expanded widths mean `reduced_tail`: Large 960/672
# unreduced, 480/672 reduced; Small 576/288 and 288/288)
_MOBILENET_V3 = {"mobilenet_v3_large": (15, 13, 1.0), "mobilenet_v3_small": (11, 9, 1.5)}


def _mobilenet_v3_module(path: Path, params: Mapping) -> str:
  """('block13', 'se', 'fc1') -> 'features.13.block.2.fc1'; ('stem', 'bn') ->
  'features.0.1'; `classifier` and `head` -> classifier.0 / classifier.3."""
  top = path[0]
  if top == "classifier":
    return "classifier.0"
  if top == "head":
    return "classifier.3"
  if top in ("stem", "last_conv"):
    blocks = sum(1 for k in params if re.fullmatch(r"block\d+", k))
    return f"features.{0 if top == 'stem' else blocks + 1}.{ {'conv': 0, 'bn': 1}[path[1]]}"
  part, layer = path[1:]
  index = [p for p in _MOBILENET_V3_PARTS if p in params[top]].index(part)
  layer = layer if part == "se" else {"conv": 0, "bn": 1}[layer]
  return f"features.{top[len('block'):]}.block.{index}.{layer}"


def _mobilenet_v3_kwargs(name: str):
  """Checks that the state_dict is torchvision's MobileNetV3 `name` (Large: 15 blocks,
  Small: 11) and reads `reduced_tail`. `width_mult` is not read: pass it to `load` when the
  weights are not width 1.0 (the shapes then say which layer does not fit)."""
  def kwargs(state: Mapping) -> dict:
    blocks = {int(k.split(".")[1]) for k in state if re.match(r"features\.\d+\.block\.", k)}
    if "features.0.0.weight" not in state or not blocks:
      raise ValueError(f"{name}: this state_dict is not a torchvision MobileNetV3 (no "
                       f"features.0.0 / features.K.block.*); its keys start "
                       f"{sorted(state)[:5]}")
    count, c4, ratio = _MOBILENET_V3[name]
    found = next((n for n, spec in _MOBILENET_V3.items() if spec[0] == len(blocks)), None)
    if found != name:
      what = f"torchvision's {found}" if found else "an unknown MobileNetV3"
      raise ValueError(f"this state_dict is {what} ({len(blocks)} inverted residual blocks, "
                       f"features.1..{max(blocks)}), not {name} ({count} blocks)")
    last = state[f"features.{count}.block.0.0.weight"].shape[0]
    c4_expanded = state[f"features.{c4}.block.0.0.weight"].shape[0]
    return {"reduced_tail": bool(last < ratio * c4_expanded)}
  return kwargs


def _ssd_module(path: Path, params: Mapping) -> str:
  """torchvision's SSD300/512 VGG-16: `stage1`..`stage4` are `backbone.features.i` (conv +
  ReLU, a pool per stage, as VGG's), `stage5` and `fc` the first extra block
  (`backbone.extra.0`: pool4, conv5_1..5_3 at 1/3/5, pool5, then fc6/fc7 at `.7.1`/`.7.3`),
  `extraK` `backbone.extra.K` (1x1 conv at 0, kxk conv at 2), the heads
  `head.{classification,regression}_head.module_list.l`, `scale_weight` the L2Norm's."""
  if not path:
    return "backbone"
  top = path[0]
  if top == "head":
    part = {"cls_logits": "classification_head", "bbox_reg": "regression_head"}[path[1]]
    return f"head.{part}.module_list.{path[2][len('level'):]}"
  if top == "stage5":
    return f"backbone.extra.0.{2 * int(path[1][len('conv'):]) - 1}"
  if top == "fc":
    return {"conv6": "backbone.extra.0.7.1", "conv7": "backbone.extra.0.7.3"}[path[1]]
  if top.startswith("extra"):
    return f"backbone.extra.{top[len('extra'):]}.{ {'conv1': 0, 'conv2': 2}[path[1]]}"
  return f"backbone.features.{_features_index(params, path, 2, 1)}"


_SSDS = {"ssd300_vgg16": 4, "ssd512_vgg16": 5}  # extra blocks after the first


def _ssd_kwargs(name: str):
  """num_classes (without the background) from the first classification conv over its 4
  default boxes, `width` from conv1_1; a 300/512 mix-up is named."""
  def kwargs(state: Mapping) -> dict:
    extras = len({k.split(".")[2] for k in state if k.startswith("backbone.extra.")}) - 1
    if extras != _SSDS[name]:
      found = next((n for n, e in _SSDS.items() if e == extras), f"an SSD with {extras}")
      raise ValueError(f"this state_dict is {found} ({extras} extra blocks after "
                       f"backbone.extra.0), not {name} ({_SSDS[name]})")
    anchors = state["head.regression_head.module_list.0.weight"].shape[0] // 4
    return {"num_classes": state["head.classification_head.module_list.0.weight"].shape[0]
                           // anchors - 1,
            "width": state["backbone.features.0.weight"].shape[0]}
  return kwargs


# --- SSDlite: torchvision splits its MobileNetV3 at the C4 block c (features.13) ----------
_SSDLITES = {"ssdlite320_mobilenet_v3_large": 13}
_CONV_BN = {"conv": 0, "bn": 1}


def _ssdlite_module(path: Path, params: Mapping) -> str:
  """`features.K` (`_mobilenet_v3_module`) is `backbone.features.0.K` for K < c, block c's
  expansion `backbone.features.0.c`, its other layers `backbone.features.1.0.i`, then
  `backbone.features.1.(K-c)`; `extraK` `backbone.extra.K-1.{0,1,2}`, the heads
  `head.{classification,regression}_head.module_list.l.{0 (conv, bn), 1}`."""
  if path[0] == "head":
    part = {"cls_logits": "classification_head", "bbox_reg": "regression_head"}[path[1]]
    tail = f"0.{_CONV_BN[path[4]]}" if path[3] == "depthwise" else "1"
    return f"head.{part}.module_list.{path[2][len('level'):]}.{tail}"
  if path[0].startswith("extra"):
    i = {"reduce": 0, "depthwise": 1, "project": 2}[path[1]]
    return f"backbone.extra.{int(path[0][len('extra'):]) - 1}.{i}.{_CONV_BN[path[2]]}"
  c = _SSDLITES["ssdlite320_mobilenet_v3_large"]
  k, rest = _mobilenet_v3_module(path, params).split(".", 2)[1:]
  if int(k) != c:
    return f"backbone.features.{'0.' + k if int(k) < c else f'1.{int(k) - c}'}.{rest}"
  i, layer = rest.split(".", 2)[1:]  # block.i.layer
  return f"backbone.features.{f'0.{c}' if i == '0' else f'1.0.{i}'}.{layer}"


def _ssdlite_kwargs(name: str):
  """num_classes (no background) from the first classification block over its boxes;
  `reduced_tail` as `_mobilenet_v3_kwargs` (the last block's expansion narrower than C4's);
  a backbone other than MobileNetV3-Large is named. `width_mult`: pass it to `load`."""
  def kwargs(state: Mapping) -> dict:
    c = _SSDLITES[name]
    blocks = [len({k.split(".")[3] for k in state
                   if re.match(rf"backbone\.features\.{i}\.\d+\.block\.", k)}) for i in (0, 1)]
    if f"backbone.features.0.{c}.0.weight" not in state or sum(blocks) + 1 != 15:
      raise ValueError(f"{name}: this state_dict is not a torchvision SSDlite on MobileNetV3-"
                       f"Large (15 blocks, C4 at {c}); keys {sorted(state)[:3]}..")
    last = state[f"backbone.features.1.{blocks[1]}.block.0.0.weight"].shape[0]
    anchors = state["head.regression_head.module_list.0.1.weight"].shape[0] // 4
    return {"num_classes": state["head.classification_head.module_list.0.1.weight"].shape[0]
                           // anchors - 1,
            "reduced_tail": bool(last < state[f"backbone.features.0.{c}.0.weight"].shape[0])}
  return kwargs


# the input size `load` traces the model's variables with (default 64 px)
INIT_SIZE = {"ssd300_vgg16": 300, "ssd512_vgg16": 512}

# Model kwargs read from the state_dict (besides num_classes from the last Linear layer).
KWARGS: dict[str, Callable[[Mapping], dict]] = {
    "fcn_resnet50": _segmentation_kwargs, "deeplabv3_resnet50": _segmentation_kwargs,
    **{n: _detection_kwargs(n) for n in _DETECTION_BACKBONES},
    **{n: _retinanet_kwargs(n) for n in _RETINANETS},
    **{n: _fcos_kwargs(n) for n in _FCOS},
    **{n: _ssd_kwargs(n) for n in _SSDS},
    **{n: _mobilenet_v3_kwargs(n) for n in _MOBILENET_V3},
    **{n: _ssdlite_kwargs(n) for n in _SSDLITES}}

FAMILIES: dict[str, tuple[Callable[[Path, Mapping], str], str]] = {
    # name -> (jaxcv module path -> torch module name, torch name of the last Linear)
    "alexnet": (_alexnet_module, "classifier.6"),
    **{n: (_vgg_module, "classifier.6")
       for v in ("vgg11", "vgg16", "vgg19") for n in (v, f"{v}_bn")},
    **{n: (_resnet_module, "fc") for n in ("resnet18", "resnet34", "resnet50", "resnet101")},
    # segmentation: num_classes from the head's last 1x1 conv
    **{n: (_segmentation_module, "classifier.4") for n in ("fcn_resnet50",
                                                          "deeplabv3_resnet50")},
    # detection: num_classes from the box predictor (minus the background, see _KWARGS)
    **{n: (_detection_module, "roi_heads.box_predictor.cls_score") for n in
       _DETECTION_BACKBONES},
    # RetinaNet: num_classes from the classification head (see _KWARGS)
    **{n: (_dense_module(False), "head.classification_head.cls_logits") for n in _RETINANETS},
    **{n: (_dense_module(True), "head.classification_head.cls_logits") for n in _FCOS},
    # SSD: num_classes from the first classification conv (see _KWARGS)
    **{n: (_ssd_module, "head.classification_head.module_list.0") for n in _SSDS},
    **{n: (_ssdlite_module, "head.classification_head.module_list.0.1") for n in _SSDLITES},
    # MobileNetV3: num_classes from classifier.3 (the last Linear)
    **{n: (_mobilenet_v3_module, "classifier.3") for n in _MOBILENET_V3},
}
