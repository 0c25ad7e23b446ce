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

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import models
from jaxcv.weights.torchvision_names import (FAMILIES as _FAMILIES, INIT_SIZE as _INIT_SIZE,
                                             KWARGS as _KWARGS, Path)


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
# parameters at the model's top level (SSD's L2Norm weight), kept under their own name
_TOP = {"scale_weight": ("scale_weight", None)}
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
  size = _INIT_SIZE.get(name, 64)  # big enough for the family's strides / extra layers
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  target = jax.eval_shape(model.init, jax.random.key(0), x)
  params_target = target["params"]

  def module_name(path):
    return module_of(path, params_target)

  used: set[str] = set()
  errors: list[str] = []
  params = _fill(params_target, lambda path, leaves: (
      _TOP if not path else _NORM if "scale" in leaves else _DENSE if leaves["kernel"].ndim != 4 else
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
