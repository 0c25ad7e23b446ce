"""YOLOv3 / YOLOv3-tiny against pytorchyolo (eriklindernoren's PyTorch-YOLOv3, PyPI
`pytorchyolo`): one darknet `.weights` file with random values (random BatchNorm statistics,
positive variances) written by jaxcv, loaded by both (`Darknet(cfg).load_darknet_weights`,
eval mode) and by `jaxcv.weights.darknet.read_weights`; raw [yolo] outputs, decoded boxes,
objectness and class probabilities within 1e-4 (relative norm), and the detections after
pytorchyolo's `non_max_suppression`. Also: pytorchyolo's own `save_darknet_weights` gives
back our file byte for byte.

pytorchyolo.models imports pytorchyolo.utils.utils, which imports tqdm, torchvision and
imgaug; imgaug (0.4.0, the last release) cannot be imported with NumPy 2 (`np.sctypes` at
its import) and is used there only by `provide_determinism`, so when it does not import a
stand-in module is put in sys.modules for the import and removed afterwards. torchvision
comes through `torch_reference.import_torchvision` (the CPU shim on these machines).
"""
import importlib
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from torch_reference import import_torchvision, relative_error

pytest.importorskip("pytorchyolo")
torch, torchvision = import_torchvision()

from jaxcv import models  # noqa: E402
from jaxcv.models.detection.backbone.darknet_cfg import (parse_cfg, yolov3_cfg,  # noqa: E402
                                                         yolov3_tiny_cfg)
from jaxcv.weights import darknet as dw  # noqa: E402

TOL = 1e-4


def _import_pytorchyolo():
  stub = None
  try:
    importlib.import_module("imgaug")
  except Exception:  # noqa: BLE001  missing, or broken under NumPy 2
    sys.modules.pop("imgaug", None)
    stub = types.ModuleType("imgaug")
    stub.seed = lambda seed: None
    sys.modules["imgaug"] = stub
  try:
    pm = importlib.import_module("pytorchyolo.models")
    pu = importlib.import_module("pytorchyolo.utils.utils")
  except Exception as e:  # noqa: BLE001
    pytest.skip(f"pytorchyolo.models does not import: {type(e).__name__}: {e}",
                allow_module_level=True)
  finally:
    if stub is not None and sys.modules.get("imgaug") is stub:
      del sys.modules["imgaug"]
  return pm, pu


pym, pyu = _import_pytorchyolo()


def _reference(cfg_text, weights_path, tmp_path):
  cfg_path = tmp_path / "model.cfg"
  cfg_path.write_text(cfg_text)
  net = pym.Darknet(str(cfg_path))
  net.load_darknet_weights(str(weights_path))
  return net.eval()


def _run_reference(net, x_nhwc):
  """(raw per yolo layer as [B, H, W, A, 5 + C], eval output [B, N, 5 + C])."""
  raw = []
  hooks = [layer[0].register_forward_hook(lambda m, inp, out: raw.append(inp[0].clone()))
           for layer in net.module_list if isinstance(layer[0], pym.YOLOLayer)]
  with torch.no_grad():
    out = net(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
  for h in hooks:
    h.remove()
  raws = []
  for r in raw:
    b, c, gh, gw = r.shape
    a = 3
    raws.append(r.view(b, a, c // a, gh, gw).permute(0, 3, 4, 1, 2).numpy())
  return raws, out.numpy()


def _ours_flat(aux, b):
  """Our decoded boxes (xyxy), objectness, class probs in pytorchyolo's order (layer,
  anchor, row, column)."""
  boxes, scores = [], []
  for bx, r in zip(aux["boxes"], aux["raw"]):
    boxes.append(np.asarray(bx).transpose(0, 3, 1, 2, 4).reshape(b, -1, 4))
    scores.append(np.asarray(jax.nn.sigmoid(r[..., 4:])).transpose(0, 3, 1, 2, 4)
                  .reshape(b, -1, r.shape[-1] - 4))
  return np.concatenate(boxes, 1), np.concatenate(scores, 1)


def _xyxy(ref):
  cx, cy, w, h = (ref[..., k] for k in range(4))
  return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def _compare(name, num_classes, size, tmp_path, batch=2, conf=0.3, nms=0.4):
  model = models.create(name, num_classes=num_classes, score_thresh=conf, nms_thresh=nms)
  cfg = model.darknet
  variables = dw.random_variables(cfg, seed=1)
  path = tmp_path / "random.weights"
  dw.write_weights(path, variables, cfg, header=(0, 2, 0, 12345))
  t0 = time.perf_counter()
  net = _reference(model.cfg_text, path, tmp_path)
  # pytorchyolo writes back exactly the file it read
  back = tmp_path / "back.weights"
  net.save_darknet_weights(str(back))
  assert back.read_bytes() == path.read_bytes()
  x = np.random.default_rng(0).uniform(0, 1, (batch, size, size, 3)).astype(np.float32)
  ref_raw, ref_out = _run_reference(net, x)
  t1 = time.perf_counter()
  ours = dw.read_weights(path, cfg)
  apply = jax.jit(lambda v, x: model.apply(v, x))
  dets, aux = apply(ours, jnp.asarray(x))
  t2 = time.perf_counter()
  print(f"{name} {size}px: pytorchyolo {t1 - t0:.1f} s, jaxcv (compile + run) {t2 - t1:.1f} s")
  assert len(aux["raw"]) == len(ref_raw)
  for k, (a, r) in enumerate(zip(aux["raw"], ref_raw)):
    assert a.shape == r.shape, (k, a.shape, r.shape)
    assert relative_error(a, r) < TOL, (k, relative_error(a, r))
  boxes, probs = _ours_flat(aux, batch)
  errors = {"raw": max(relative_error(a, r) for a, r in zip(aux["raw"], ref_raw)),
            "boxes": relative_error(boxes, _xyxy(ref_out[..., :4])),
            "scores": relative_error(probs, ref_out[..., 4:])}
  print(f"relative errors: {errors}")
  assert errors["boxes"] < TOL and errors["scores"] < TOL
  # detections: pytorchyolo's non_max_suppression on its own eval output
  ref_dets = pyu.non_max_suppression(torch.from_numpy(ref_out.copy()), conf, nms)
  counts = []
  for i in range(batch):
    r = ref_dets[i].numpy()
    n = int(np.asarray(dets["valid"][i]).sum())
    counts.append((n, len(r)))
    assert n == len(r), (i, n, len(r))
    np.testing.assert_allclose(np.asarray(dets["boxes"][i, :n]),
                               np.clip(r[:, :4], 0, size), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.asarray(dets["scores"][i, :n]), r[:, 4], rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_array_equal(np.asarray(dets["classes"][i, :n]), r[:, 5].astype(int) + 1)
  print(f"detections per image (ours, pytorchyolo): {counts}")
  return counts


def test_yolov3_tiny_matches_pytorchyolo(tmp_path):
  counts = _compare("yolov3_tiny", 80, 128, tmp_path, conf=0.5)
  assert all(n > 0 for n, _ in counts)


def test_yolov3_tiny_single_class_matches_pytorchyolo(tmp_path):
  # one class: pytorchyolo's best-class path (multi_label = nc > 1)
  counts = _compare("yolov3_tiny", 1, 96, tmp_path, conf=0.2)
  assert all(n > 0 for n, _ in counts)


def test_yolov3_matches_pytorchyolo(tmp_path):
  # the full 62M-parameter net, once (about 17 s on 2 shared cores); at 0.3 the top 300 of
  # more candidates: the detections_per_img cut
  counts = _compare("yolov3", 80, 96, tmp_path, batch=1, conf=0.3)
  assert all(n > 0 for n, _ in counts)


def test_official_cfg_texts_build_in_pytorchyolo(tmp_path):
  """pytorchyolo builds our cfg texts with the parameter counts of darknet's own files."""
  for text, convs in ((yolov3_cfg(80), 75), (yolov3_tiny_cfg(80), 13),
                      (yolov3_cfg(3, width_mult=0.125), 75)):
    path = tmp_path / "m.cfg"
    path.write_text(text)
    net = pym.Darknet(str(path))
    cfg = parse_cfg(text)
    assert len(net.module_list) == len(cfg.layers)
    assert len(cfg.conv_layers) == convs
    n = sum(p.numel() for p in net.parameters())
    n += sum(m.running_mean.numel() + m.running_var.numel() for m in net.modules()
             if isinstance(m, torch.nn.BatchNorm2d))
    assert n == dw.num_weights(cfg)
