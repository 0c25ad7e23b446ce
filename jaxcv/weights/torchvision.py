"""torchvision state_dicts -> jaxcv variables, for `jaxcv.models.create(name)`.

    variables = convert("resnet50", torch.load("resnet50-11ad3fa6.pth"))
    model = jaxcv.models.create("resnet50", num_classes=1000)
    # or both at once, with num_classes (and aux_loss) read from the state_dict:
    model, variables = load("resnet50", torch.load("resnet50-11ad3fa6.pth"))
    logits, _ = model.apply(variables, images_nhwc)   # images normalised as torchvision's

Layouts: Conv weight OIHW -> kernel HWIO, Linear weight (out, in) -> kernel (in, out),
BatchNorm weight/bias -> params scale/bias, running_mean/var -> batch_stats mean/var
(`num_batches_tracked` is dropped). Segmentation models (`fcn_resnet50`,
`deeplabv3_resnet50`): `backbone.*` is the ResNet, `classifier.*` the jaxcv `head` and
`aux_classifier.*` the jaxcv `aux` head. jaxcv flattens feature maps in torch's C,H,W order
(`common.flatten_chw`), so fc weights need no permutation. torch itself is not imported:
tensors are read through `.detach().cpu().numpy()`.

The jaxcv tree comes from `jax.eval_shape` of `init`; every jaxcv leaf must be filled and
every state_dict entry used, with matching shapes, or `convert` raises a ValueError.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import models

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
    return f"roi_heads.mask_head.{int(path[1][4:])}.{0 if path[1].startswith('conv') else 1}"
  if top == "keypoint_head":  # KeypointRCNNHeads: Conv2d, ReLU, Conv2d, ...
    return f"roi_heads.keypoint_head.{2 * int(path[1][4:])}"
  if top in ("mask_predictor", "keypoint_predictor"):
    return f"roi_heads.{top}.{path[1]}"
  return f"backbone.body.{_resnet_module(path, params)}"


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


# Model kwargs read from the state_dict (besides num_classes from the last Linear layer).
_KWARGS: dict[str, Callable[[Mapping], dict]] = {
    "fcn_resnet50": _segmentation_kwargs, "deeplabv3_resnet50": _segmentation_kwargs,
    **{n: _detection_kwargs(n) for n in _DETECTION_BACKBONES}}

_FAMILIES: dict[str, tuple[Callable[[Path, Mapping], str], str]] = {
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
}


def names() -> list[str]:
  """Model names `convert` knows."""
  return sorted(_FAMILIES)


def _to_numpy(v: Any) -> np.ndarray:
  if hasattr(v, "detach"):  # a torch tensor; torch stays an optional dependency
    v = v.detach().cpu().numpy()
  return np.asarray(v, dtype=np.float32)


def _modules(tree: Mapping, prefix: Path = ()):
  """Yields `(path, leaves)` for each dict of `tree` whose values are arrays (a layer)."""
  leaves = {k: v for k, v in tree.items() if not isinstance(v, Mapping)}
  if leaves:
    yield prefix, leaves
  for k, v in tree.items():
    if isinstance(v, Mapping):
      yield from _modules(v, prefix + (k,))


def _linear_kernel(w: np.ndarray, rows: int = 256) -> np.ndarray:
  """`w.T`, contiguous; copied in row blocks, ~4x faster than numpy's copy of a big `.T`."""
  out = np.empty(w.shape[::-1], w.dtype)
  for i in range(0, w.shape[0], rows):
    out[:, i:i + rows] = w[i:i + rows].T
  return out


# jaxcv leaf -> (torch suffix, layout change); which applies depends on the layer kind.
_CONV = {"kernel": ("weight", lambda w: w.transpose(2, 3, 1, 0)), "bias": ("bias", None)}
_DENSE = {"kernel": ("weight", _linear_kernel), "bias": ("bias", None)}
_NORM = {"scale": ("weight", None), "bias": ("bias", None)}
_STATS = {"mean": ("running_mean", None), "var": ("running_var", None)}
# ConvTranspose2d weight [in, out, kh, kw] -> [kh, kw, in, out] (jaxcv.layers.ConvTranspose)
_CONV_T = {"kernel": ("weight", lambda w: w.transpose(2, 3, 0, 1)), "bias": ("bias", None)}
_TRANSPOSED = ("conv5_mask", "kps_score_lowres")  # the transposed convs of the RoI heads


def _fill(tree: Mapping, collection_rules, module_name, state: dict, used: set, errors: list):
  """The tree with each leaf taken from `state`, recording used keys and problems."""
  out: dict[str, Any] = {}
  for path, leaves in _modules(tree):
    node = out
    for p in path:
      node = node.setdefault(p, {})
    rules = collection_rules(path, leaves)
    torch_module = module_name(path)
    for leaf, target in leaves.items():
      suffix, change = rules[leaf]
      key = f"{torch_module}.{suffix}"
      if key not in state:
        errors.append(f"missing key {key!r} (for {'/'.join(path + (leaf,))})")
        continue
      used.add(key)
      if change is not None and state[key].ndim != len(target.shape):
        errors.append(f"{key}: shape {state[key].shape} cannot be "
                      f"{'/'.join(path + (leaf,))} of shape {tuple(target.shape)}")
        continue
      value = change(state[key]) if change else state[key]
      if value.shape != tuple(target.shape):
        errors.append(f"{key}: shape {state[key].shape} gives {value.shape}, but "
                      f"{'/'.join(path + (leaf,))} needs {tuple(target.shape)}")
        continue
      node[leaf] = np.ascontiguousarray(value)
  return out


def load(name: str, state_dict: Mapping[str, Any], **model_kwargs):
  """torchvision `name`'s state_dict -> `(model, variables)`: the jaxcv model built with the
  constructor arguments the state_dict implies (`num_classes` from the last Linear layer, or
  the segmentation head's last 1x1 conv; `aux_loss` from whether `aux_classifier.*` is
  present; detectors: `num_classes` without the background, width, FPN channels, box-head
  size, and for torchvision's v1 detectors `norm_epsilon=0.0`, the FrozenBatchNorm2d eps its
  published COCO weights are meant to run with) and its variables, so that
  `model.apply(variables, images)` works as it is. `model_kwargs` override what is read
  (e.g. `norm_epsilon=1e-5` for a v1 detector trained on an ImageNet backbone only, whose
  FrozenBatchNorm2d kept the default eps).

      model, variables = load("fcn_resnet50", torch.load("fcn_resnet50_coco.pth"))
  """
  if name not in _FAMILIES:
    raise ValueError(f"no torchvision converter for {name!r}; known: {names()}")
  module_of, fc = _FAMILIES[name]
  state = {k: _to_numpy(v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
  if f"{fc}.weight" not in state:
    raise ValueError(f"{name} state_dict has no {fc + '.weight'!r} to read num_classes from; "
                     f"its keys start {sorted(state)[:5]}")
  kwargs = {"num_classes": state[f"{fc}.weight"].shape[0],
            **(_KWARGS[name](state) if name in _KWARGS else {}), **model_kwargs}
  model = models.create(name, **kwargs)
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)  # big enough for every family
  target = jax.eval_shape(model.init, jax.random.key(0), x)
  params_target = target["params"]

  def module_name(path):
    return module_of(path, params_target)

  used: set[str] = set()
  errors: list[str] = []
  params = _fill(params_target, lambda path, leaves: (
      _NORM if "scale" in leaves else _DENSE if leaves["kernel"].ndim != 4 else
      _CONV_T if path[-1] in _TRANSPOSED else _CONV),
      module_name, state, used, errors)
  batch_stats = _fill(target.get("batch_stats", {}), lambda path, leaves: _STATS, module_name,
                      state, used, errors)
  unexpected = sorted(set(state) - used)
  if unexpected:
    errors.append(f"unexpected keys {unexpected}")
  if errors:
    raise ValueError(f"torchvision {name} state_dict does not fit jaxcv {name}:\n  "
                     + "\n  ".join(errors))
  return model, {"params": params, "batch_stats": batch_stats}


def convert(name: str, state_dict: Mapping[str, Any]) -> dict[str, dict]:
  """torchvision `name`'s state_dict -> `{"params": ..., "batch_stats": ...}` of numpy float32.

  The tree has exactly the structure of `models.create(name, num_classes=N).init(...)`, with N
  read from the last Linear layer (segmentation models: the head's last 1x1 conv, and
  `aux_loss` from whether `aux_classifier.*` is present); `batch_stats` is `{}` for models
  without BatchNorm. `load` returns the model built that way beside the variables.
  """
  return load(name, state_dict)[1]


def main(argv=None) -> None:
  """`python -m jaxcv.weights.torchvision NAME in.pth out.msgpack` (needs torch)."""
  import argparse

  import torch  # only here: the command line reads .pth files

  from jaxcv.weights.files import save_variables

  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument("name", choices=names())
  parser.add_argument("checkpoint", help="torchvision .pth state_dict")
  parser.add_argument("output", help=".msgpack file for transfer.init_from")
  args = parser.parse_args(argv)
  state_dict = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
  save_variables(args.output, convert(args.name, state_dict))
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
