"""YOLOv3 / YOLOv3-tiny without torch: the darknet cfg parser and its errors, the official
cfg texts, `.weights` files (round trip, named errors), the model's output contract and
input checks, the max-pool padding, and the loss (a hand-computed case term by term, the
gradient against a NumPy transcription of darknet's `forward_yolo_layer`, jit / grad / vmap
over padded targets). pytorchyolo parity: tests/test_yolo_torch.py."""
import io
import math
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import models
from jaxcv.models.detection.backbone import darknet_cfg as dc
from jaxcv.models.detection.backbone.darknet import Darknet
from jaxcv.models.detection.dense_heads.yolo_loss import LOSS_NAMES, yolo_losses
from jaxcv.models.detection.meta_arch.yolo import yolo_detections
from jaxcv.weights import darknet as dw

TINY_MASKS = ((3, 4, 5), (0, 1, 2))


# --- cfg ------------------------------------------------------------------------------------

def test_official_cfgs():
  v3 = dc.parse_cfg(dc.YOLOV3_CFG)
  assert len(v3.layers) == 107 and len(v3.conv_layers) == 75
  assert [y["index"] for y in v3.yolo_layers] == [82, 94, 106]
  assert [y["mask"] for y in v3.yolo_layers] == [(6, 7, 8), (3, 4, 5), (0, 1, 2)]
  assert v3.layers[83]["layers"] == (79,) and v3.layers[86]["layers"] == (85, 61)
  assert v3.layers[98]["layers"] == (97, 36) and v3.layers[4]["from"] == 1
  assert (v3.net["width"], v3.net["height"]) == (608, 608)
  assert v3.yolo_layers[0]["ignore_thresh"] == 0.7
  assert v3.yolo_layers[0]["anchors"] == tuple(tuple(map(float, a)) for a in dc.YOLOV3_ANCHORS)
  assert dc.num_weights(v3) == dc.YOLOV3_NUM_WEIGHTS       # yolov3.weights: 248,007,048 B
  assert 20 + 4 * dc.YOLOV3_NUM_WEIGHTS == 248_007_048
  tiny = dc.parse_cfg(dc.YOLOV3_TINY_CFG)
  assert len(tiny.layers) == 24 and [y["index"] for y in tiny.yolo_layers] == [16, 23]
  assert tiny.layers[11]["type"] == "maxpool" and tiny.layers[11]["stride"] == 1
  assert tiny.layers[20]["layers"] == (19, 8) and tiny.layers[17]["layers"] == (13,)
  assert dc.num_weights(tiny) == dc.YOLOV3_TINY_NUM_WEIGHTS
  assert 20 + 4 * dc.YOLOV3_TINY_NUM_WEIGHTS == 35_434_956
  assert tiny.net["width"] == 416


def test_num_classes_and_rewrite():
  for make in (dc.yolov3_cfg, dc.yolov3_tiny_cfg):
    cfg = dc.parse_cfg(make(3))
    for y in cfg.yolo_layers:
      assert y["classes"] == 3 and cfg.layers[y["index"] - 1]["filters"] == 24
    official = make()
    assert dc.rewrite_cfg(official, num_classes=3) == make(3)
  anchors = [(5, 6), (7, 8.5), (9, 10), (11, 12), (13, 14), (15, 16)]
  new = dc.parse_cfg(dc.rewrite_cfg(dc.YOLOV3_TINY_CFG, anchors=anchors))
  assert new.yolo_layers[1]["anchors"][1] == (7.0, 8.5)
  assert dc.parse_cfg(dc.yolov3_tiny_cfg(80, anchors=anchors)).yolo_layers[0]["anchors"] == \
      new.yolo_layers[0]["anchors"]
  narrow = dc.parse_cfg(dc.yolov3_cfg(2, width_mult=0.125))
  assert narrow.layers[0]["filters"] == 4 and narrow.layers[81]["filters"] == 21
  with pytest.raises(ValueError, match="anchors must be 9"):
    dc.yolov3_cfg(80, anchors=anchors)
  with pytest.raises(ValueError, match="num_classes"):
    dc.yolov3_cfg(0)


NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"
CONV = "[convolutional]\nfilters={f}\nsize=1\nstride=1\npad=1\nactivation=linear\n"
YOLO = "[yolo]\nmask=0\nanchors=10,10\nclasses=1\n"


@pytest.mark.parametrize("text, match", [
    (NET + "[dropout]\nprobability=.5\n", r"line 5: unknown section \[dropout\]"),
    (NET + "[convolutional]\nfilters=6\nsize=1\nactivation=linear\n",
     r"missing required key 'stride'"),
    (NET + CONV.format(f=6) + "[route]\nlayers=-3\n" + YOLO,
     r"layers=-3 refers to layer -2, which does not exist"),
    (NET + CONV.format(f=6) + "[route]\nlayers=4\n" + YOLO,
     r"layers=4 refers to layer 4, which does not exist before layer 1"),
    (NET + CONV.format(f=6) + YOLO + "[route]\nlayers=-1\n",
     r"a \[yolo\] layer"),
    (NET + CONV.format(f=6) + "[shortcut]\nfrom=-5\n" + YOLO, r"from=-5 refers to layer -4"),
    (NET + CONV.format(f=7) + YOLO, r"outputs 7 channels; 1 anchors x \(5 \+ 1 classes\)"),
    (NET + CONV.format(f=6) + "[yolo]\nmask=1\nanchors=10,10\nclasses=1\n",
     r"mask \[1\] names anchors \[1\] outside 0..0"),
    (NET + CONV.format(f=6) + "[yolo]\nmask=0\nanchors=10,10,3\nclasses=1\n",
     r"anchors has 3 numbers"),
    (NET + "[convolutional]\nfilters=six\nsize=1\nstride=1\nactivation=linear\n" + YOLO,
     r"line 6\): filters='six' is not an integer"),
    (NET + CONV.replace("linear", "relu6").format(f=6) + YOLO, r"activation 'relu6'"),
    (NET + CONV.format(f=6) + "groups=2\n" + YOLO, r"groups=2 is not supported"),
    ("width=3\n" + NET, r"line 1: 'width=3' comes before the first \[section\]"),
    (NET + "[maxpool]\nsize 2\n", r"'size 2' is not key=value"),
    (CONV.format(f=6) + YOLO, r"the first section must be \[net\]"),
    (NET + CONV.format(f=6), r"no \[yolo\] layer"),
    ("# nothing\n", r"no sections"),
])
def test_cfg_errors(text, match):
  with pytest.raises(dc.DarknetCfgError, match=match):
    dc.parse_cfg(text)


def test_cfg_format_details():
  text = ("[net]\n; comment\n  width = 32 \nheight=32\nchannels=3\nbatch=8\n\n"
          "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\n"
          "activation=leaky\nunknown_key=1\n"
          "[maxpool]\nsize=2\nstride=2\n"
          "[route]\nlayers=-1,0\n"
          "[convolutional]\nfilters=6\nsize=1\nstride=1\npad=0\nactivation=linear\n"
          "[yolo]\nmask=0\nanchors=10,10, 20,20\nclasses=1\nnum=2\n")
  cfg = dc.parse_cfg(text)
  assert cfg.net["width"] == 32 and cfg.net["options"]["batch"] == "8"
  conv = cfg.layers[0]
  assert conv["batch_normalize"] is True and conv["padding"] == 1
  assert conv["options"]["unknown_key"] == "1"
  assert cfg.layers[2]["layers"] == (1, 0) and cfg.layers[2]["out_channels"] == 16
  assert cfg.layers[3]["padding"] == 0 and cfg.layers[3]["in_channels"] == 16
  assert cfg.yolo_layers[0]["ignore_thresh"] == 0.5   # darknet's default


# --- weights --------------------------------------------------------------------------------

def _tiny3():
  return dc.parse_cfg(dc.yolov3_tiny_cfg(3, width_mult=0.25))


def test_weights_round_trip(tmp_path):
  cfg = _tiny3()
  v = dw.random_variables(cfg, seed=3)
  path = tmp_path / "w.weights"
  n = dw.write_weights(path, v, cfg, header=(0, 2, 5, 2**40))
  assert n == path.stat().st_size == 20 + 4 * dc.num_weights(cfg)
  assert dw.read_header(path) == dw.Header(0, 2, 5, 2**40)
  back = dw.read_weights(path, cfg)
  jax.tree.map(np.testing.assert_array_equal, back, v)
  # bytes and file objects too; writing what was read gives the same bytes
  data = path.read_bytes()
  jax.tree.map(np.testing.assert_array_equal, dw.read_weights(data, cfg), v)
  buf = io.BytesIO()
  dw.write_weights(buf, dw.read_weights(io.BytesIO(data), cfg), cfg, header=(0, 2, 5, 2**40))
  assert buf.getvalue() == data
  # an old header: seen as int32
  dw.write_weights(path, v, cfg, header=(0, 1, 0, 7))
  assert path.stat().st_size == 16 + 4 * dc.num_weights(cfg)
  assert dw.read_header(path).seen == 7
  jax.tree.map(np.testing.assert_array_equal, dw.read_weights(path, cfg), v)
  # the layout is the model's: same tree, same shapes as init
  model = models.create("yolov3_tiny_w4", num_classes=3)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  assert jax.tree.structure(shapes) == jax.tree.structure(back)
  jax.tree.map(lambda s, a: (s.shape == a.shape) or pytest.fail(f"{s.shape} {a.shape}"),
               shapes, back)
  # the darknet layout of one kernel: (out, in, kh, kw) after the BN block
  raw = np.frombuffer(data[20:], "<f4")
  f0 = cfg.layers[0]["filters"]
  np.testing.assert_array_equal(raw[:f0], v["params"]["layer0"]["bn"]["bias"])
  np.testing.assert_array_equal(raw[f0:2 * f0], v["params"]["layer0"]["bn"]["scale"])
  k = raw[4 * f0:4 * f0 + f0 * 27].reshape(f0, 3, 3, 3)
  np.testing.assert_array_equal(k.transpose(2, 3, 1, 0), v["params"]["layer0"]["conv"]["kernel"])


def test_weights_upto(tmp_path):
  cfg = _tiny3()
  v = dw.random_variables(cfg, seed=0)
  path = tmp_path / "backbone.conv.13"
  dw.write_weights(path, v, cfg, upto=13)
  part = dw.read_weights(path, cfg, upto=13)
  assert sorted(part["params"]) == sorted(f"layer{i}" for i in (0, 2, 4, 6, 8, 10, 12))
  with pytest.raises(dw.DarknetWeightsError, match="too short"):
    dw.read_weights(path, cfg)


def test_weights_errors(tmp_path):
  cfg = _tiny3()
  need = dc.num_weights(cfg)
  path = tmp_path / "w.weights"
  dw.write_weights(path, dw.random_variables(cfg), cfg)
  data = path.read_bytes()
  with pytest.raises(dw.DarknetWeightsError,
                     match=f"too short .* need {need} float32 values after the 20-byte "
                           f"header; found {need - 10}"):
    dw.read_weights(data[:-40], cfg)
  with pytest.raises(dw.DarknetWeightsError, match=f"too long .* need {need} .* found "
                                                   f"{need + 3}"):
    dw.read_weights(data + bytes(12), cfg)
  with pytest.raises(dw.DarknetWeightsError, match="and 2 stray bytes"):
    dw.read_weights(data + bytes(2), cfg)
  with pytest.raises(dw.DarknetWeightsError, match="shorter than a darknet header"):
    dw.read_weights(data[:8], cfg)
  with pytest.raises(dw.DarknetWeightsError, match="transposed"):
    dw.read_weights(struct.pack("<3i", 1000, 0, 0) + data[12:], cfg)
  with pytest.raises(dw.DarknetWeightsError, match="negative"):
    dw.read_weights(struct.pack("<3i", -1, 0, 0) + data[12:], cfg)
  with pytest.raises(dw.DarknetWeightsError, match="header cut short"):
    dw.read_weights(data[:16], cfg)
  # the full model's cfg on the narrow file: the counts say so
  with pytest.raises(dw.DarknetWeightsError, match="too short"):
    dw.read_weights(data, dc.YOLOV3_TINY_CFG)
  v = dw.random_variables(cfg)
  del v["batch_stats"]["layer4"]
  with pytest.raises(dw.DarknetWeightsError, match="no layer4/bn/mean"):
    dw.write_weights(tmp_path / "x", v, cfg)
  v = dw.random_variables(cfg)
  v["params"]["layer15"]["conv"]["kernel"] = np.zeros((1, 1, 2, 2), np.float32)
  with pytest.raises(dw.DarknetWeightsError, match="layer15/conv/kernel has shape"):
    dw.write_weights(tmp_path / "x", v, cfg)


# --- model ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
  model = models.create("yolov3_tiny_w4", num_classes=3, score_thresh=0.3,
                        detections_per_img=20)
  variables = dw.read_weights(_bytes_of(dw.random_variables(model.darknet, 2), model.darknet),
                              model.darknet)
  return model, variables


def _bytes_of(v, cfg):
  buf = io.BytesIO()
  dw.write_weights(buf, v, cfg)
  return buf.getvalue()


def test_create_and_contract(tiny):
  model, variables = tiny
  assert "yolov3" in models.names() and "yolov3_tiny" in models.names()
  assert isinstance(models.create("yolov3_tiny", num_classes=3), models.get("yolov3"))
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 96, 3))
  hw = jnp.array([[64, 96], [40, 50]], jnp.int32)
  dets, aux = jax.jit(model.apply)(variables, x, hw)
  assert dets["boxes"].shape == (2, 20, 4) and dets["boxes"].dtype == jnp.float32
  assert dets["classes"].dtype == jnp.int32 and dets["valid"].dtype == jnp.bool_
  assert [r.shape for r in aux["raw"]] == [(2, 2, 3, 3, 8), (2, 4, 6, 3, 8)]
  assert [b.shape for b in aux["boxes"]] == [(2, 2, 3, 3, 4), (2, 4, 6, 3, 4)]
  assert aux["strides"] == [32.0, 16.0]
  for i in range(2):
    valid = np.asarray(dets["valid"][i])
    n = valid.sum()
    assert n > 0 and valid[:n].all() and not valid[n:].any()   # a prefix
    s = np.asarray(dets["scores"][i, :n])
    assert np.all(np.diff(s) <= 0) and np.all(s > 0.3)
    c = np.asarray(dets["classes"][i])
    assert set(c[:n]) <= {1, 2, 3} and not c[n:].any()
    b = np.asarray(dets["boxes"][i])
    h, w = np.asarray(hw[i])
    assert b[:n, [0, 2]].min() >= 0 and b[:n, [0, 2]].max() <= w
    assert b[:n, [1, 3]].min() >= 0 and b[:n, [1, 3]].max() <= h
    assert not b[n:].any()


def test_bad_inputs(tiny):
  model, variables = tiny
  with pytest.raises(ValueError, match=r"divisible by 32 .* got 64x80"):
    model.apply(variables, jnp.zeros((1, 64, 80, 3)))
  with pytest.raises(ValueError, match="3"):
    model.apply(variables, jnp.zeros((1, 64, 64, 1)))
  with pytest.raises(ValueError, match=r"frozen_stages \['layer1'\]"):
    models.create("yolov3_tiny_w4", num_classes=3, frozen_stages=("layer1",)).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match=r"classes=\[80\] but num_classes=3"):
    models.create("yolov3", num_classes=3, darknet_cfg=dc.YOLOV3_TINY_CFG).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match="arch must be one of"):
    models.create("yolov3", num_classes=3, arch="yolov4").init(
        jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match="xy_loss"):
    models.create("yolov3_tiny_w4", num_classes=3, xy_loss="l1").init(
        jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match="targets"):
    model.apply(variables, jnp.zeros((1, 64, 64, 3)), train=True, mutable=["batch_stats"])


def test_custom_cfg_and_frozen(tiny):
  model, variables = tiny
  same = models.create("yolov3", num_classes=3, darknet_cfg=model.cfg_text,
                       score_thresh=0.3, detections_per_img=20)
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 64, 64, 3))
  a, _ = jax.jit(model.apply)(variables, x)
  b, _ = jax.jit(same.apply)(variables, x)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  # frozen layers keep their running statistics in training
  t = {"boxes": jnp.array([[[4.0, 4.0, 30.0, 40.0]]]), "classes": jnp.array([[1]]),
       "box_valid": jnp.array([[True]])}
  frozen = models.create("yolov3_tiny_w4", num_classes=3, frozen_stages=("layer0",))
  _, upd = jax.jit(lambda v, x, t: frozen.apply(v, x, None, t, train=True,
                                                mutable=["batch_stats"]))(variables, x, t)
  np.testing.assert_array_equal(upd["batch_stats"]["layer0"]["bn"]["mean"],
                                variables["batch_stats"]["layer0"]["bn"]["mean"])
  assert not np.allclose(upd["batch_stats"]["layer2"]["bn"]["mean"],
                         variables["batch_stats"]["layer2"]["bn"]["mean"])


def test_darknet_module_and_maxpool_padding():
  text = ("[net]\nwidth=32\nheight=32\nchannels=3\n"
          "[convolutional]\nfilters=6\nsize=1\nstride=1\npad=1\nactivation=linear\n"
          "[maxpool]\nsize=2\nstride=1\n"
          "[yolo]\nmask=0\nanchors=10,10\nclasses=1\n")
  x = -jnp.abs(jax.random.normal(jax.random.PRNGKey(0), (1, 4, 4, 3))) - 1.0
  v = Darknet(text).init(jax.random.PRNGKey(0), x)
  v = {"params": {"layer0": {"conv": {"kernel": jnp.eye(3, 6)[None, None],
                                      "bias": jnp.zeros(6)}}}}
  # all inputs negative: pytorchyolo's zero padding wins on the last row / column,
  # darknet's -inf padding never does
  (zero,), _ = Darknet(text).apply(v, x)
  (dark,), _ = Darknet(text, maxpool_pad_value=-jnp.inf).apply(v, x)
  xp = np.pad(np.asarray(x), ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=-np.inf)
  ref = np.maximum.reduce([xp[:, :-1, :-1], xp[:, 1:, :-1], xp[:, :-1, 1:], xp[:, 1:, 1:]])
  np.testing.assert_allclose(np.asarray(dark)[..., 0, :3], ref, rtol=1e-6)
  assert zero.shape == (1, 4, 4, 1, 6)
  np.testing.assert_allclose(np.asarray(zero)[0, :3, :3, 0, :3], ref[0, :3, :3], rtol=1e-6)
  assert np.all(np.asarray(zero)[0, 3, :, 0, :3] == 0)
  assert np.all(np.asarray(dark)[0, 3, :, 0, :3] < 0)


def test_selection_rules():
  # two predictions, two classes: the multi-label rule keeps every (box, class) above the
  # threshold, the best-class rule one per box; objectness alone must pass too
  obj = jnp.array([[0.9, 0.2, 0.8]])
  cls = jnp.array([[[0.9, 0.5], [1.0, 1.0], [0.1, 0.2]]])
  boxes = jnp.array([[[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]]], jnp.float32)
  kw = dict(score_thresh=0.15, nms_thresh=0.5, topk_candidates=100, detections_per_img=5)
  hw = jnp.array([[64, 64]])
  multi = yolo_detections(obj, cls, boxes, hw, multi_label=True, **kw)
  np.testing.assert_allclose(multi["scores"][0], [0.81, 0.45, 0.16, 0, 0], rtol=1e-6)
  np.testing.assert_array_equal(multi["classes"][0], [1, 2, 2, 0, 0])
  best = yolo_detections(obj, cls, boxes, hw, multi_label=False, **kw)
  np.testing.assert_allclose(best["scores"][0], [0.81, 0.16, 0, 0, 0], rtol=1e-6)
  # a box wholly outside image_hw (in the padding) is never a detection
  out = yolo_detections(obj, cls, boxes, jnp.array([[15, 15]]), multi_label=True, **kw)
  np.testing.assert_array_equal(out["classes"][0], [1, 2, 0, 0, 0])
  np.testing.assert_allclose(out["boxes"][0, 0], [0, 0, 10, 10])


# --- loss -----------------------------------------------------------------------------------

def _bce(x, t):
  return math.log1p(math.exp(x)) - t * x


def _iou_xyxy(a, b):
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_loss_hand_computed():
  """One box on a 64x64 canvas, tiny's anchors, two layers (strides 32, 16), C = 2."""
  anchors = np.asarray(dc.YOLOV3_TINY_ANCHORS, np.float32)
  raw = [np.zeros((2, 2, 3, 7), np.float32), np.zeros((4, 4, 3, 7), np.float32)]
  box = [10.0, 12.0, 30.0, 40.0]   # w 20, h 28, centre (20, 26)
  # best anchor by centred IoU: (23, 27), index 1, in layer 1 (mask 0, 1, 2) at a = 1;
  # cell column floor(20 / 16) = 1, row floor(26 / 16) = 1; offset (0.25, 0.625)
  raw[1][1, 1, 1] = [0.3, -0.2, 0.1, -0.4, 0.5, 1.0, -1.0]
  targets = {"boxes": jnp.array([[box, [0, 0, 0, 0]]]), "classes": jnp.array([[2, 0]]),
             "box_valid": jnp.array([[True, False]])}
  thresh = 0.25
  got = yolo_losses([jnp.asarray(r)[None] for r in raw], (32, 16), anchors, TINY_MASKS,
                    (thresh, thresh), targets, (64, 64))
  scale = 2 - 20 * 28 / (64 * 64)
  want = {
      "loss_xy": scale * (_bce(0.3, 0.25) + _bce(-0.2, 0.625)),
      "loss_wh": scale * 0.5 * ((0.1 - math.log(20 / 23)) ** 2
                                + (-0.4 - math.log(28 / 27)) ** 2),
      "loss_obj": _bce(0.5, 1.0),
      "loss_cls": _bce(1.0, 0.0) + _bce(-1.0, 1.0),
  }
  # background: every other prediction (raw 0: log 2 each) unless its box, an anchor-sized
  # box at its cell's centre, overlaps the ground truth by IoU > thresh
  count = 0
  for layer, (stride, mask) in enumerate(zip((32, 16), TINY_MASKS)):
    g = 64 // stride
    for i in range(g):
      for j in range(g):
        for a, k in enumerate(mask):
          if (layer, i, j, a) == (1, 1, 1, 1):
            continue
          cx, cy = (j + 0.5) * stride, (i + 0.5) * stride
          w, h = anchors[k]
          pred = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
          count += _iou_xyxy(pred, box) <= thresh
  assert 0 < count < 59   # some are ignored
  want["loss_noobj"] = count * math.log(2)
  assert set(got) == set(LOSS_NAMES)
  for k, v in want.items():
    np.testing.assert_allclose(float(got[k]), v, rtol=1e-5, err_msg=k)
  # the mse variant of the centre term
  mse = yolo_losses([jnp.asarray(r)[None] for r in raw], (32, 16), anchors, TINY_MASKS,
                    (thresh, thresh), targets, (64, 64), xy_loss="mse")
  sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
  np.testing.assert_allclose(float(mse["loss_xy"]), scale * 0.5 * (
      (sig(0.3) - 0.25) ** 2 + (sig(-0.2) - 0.625) ** 2), rtol=1e-5)


def darknet_delta(raw, strides, anchors, masks, thresh, boxes, classes, canvas_hw):
  """NumPy transcription of pjreddie/darknet src/yolo_layer.c forward_yolo_layer (one
  image): the `l.delta` it writes for each [yolo] layer, as `[H, W, A, 5 + C]`. Truths are
  relative to the network input (`truth.x = centre / W`, ...), classes 0-based."""
  H, W = canvas_hw
  sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
  truths = [((b[0] + b[2]) / 2 / W, (b[1] + b[3]) / 2 / H, (b[2] - b[0]) / W,
             (b[3] - b[1]) / H, c) for b, c in zip(boxes, classes)]

  def box_iou(a, b):   # darknet's box_iou on (x, y, w, h)
    def overlap(x1, w1, x2, w2):
      return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
    w = overlap(a[0], a[2], b[0], b[2])
    h = overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if w < 0 or h < 0 else w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)

  deltas = []
  for r, stride, mask, th in zip(raw, strides, masks, thresh):
    lh, lw, n_a, _ = r.shape
    out = r.astype(np.float64).copy()
    out[..., :2] = sig(out[..., :2])
    out[..., 4:] = sig(out[..., 4:])
    delta = np.zeros_like(out)
    for j in range(lh):
      for i in range(lw):
        for n in range(n_a):
          pred = ((i + out[j, i, n, 0]) / lw, (j + out[j, i, n, 1]) / lh,
                  np.exp(out[j, i, n, 2]) * anchors[mask[n]][0] / W,
                  np.exp(out[j, i, n, 3]) * anchors[mask[n]][1] / H)
          best = 0.0
          for t in truths:
            best = max(best, box_iou(pred, t[:4]))
          delta[j, i, n, 4] = 0 - out[j, i, n, 4]
          if best > th:
            delta[j, i, n, 4] = 0
    for t in truths:
      i, j = int(t[0] * lw), int(t[1] * lh)
      best_iou, best_n = 0.0, 0
      for n in range(len(anchors)):
        iou = box_iou((0, 0, anchors[n][0] / W, anchors[n][1] / H), (0, 0, t[2], t[3]))
        if iou > best_iou:
          best_iou, best_n = iou, n
      if best_n not in mask:
        continue
      mask_n = list(mask).index(best_n)
      scale = 2 - t[2] * t[3]
      tx, ty = t[0] * lw - i, t[1] * lh - j
      tw = np.log(t[2] * W / anchors[best_n][0])
      th_ = np.log(t[3] * H / anchors[best_n][1])
      d = delta[j, i, mask_n]
      o = out[j, i, mask_n]
      d[0], d[1] = scale * (tx - o[0]), scale * (ty - o[1])
      d[2], d[3] = scale * (tw - o[2]), scale * (th_ - o[3])
      d[4] = 1 - o[4]
      c = t[4]
      if d[5]:
        d[5 + c] = 1 - o[5 + c]
      else:
        for k in range(out.shape[-1] - 5):
          d[5 + k] = (1.0 if k == c else 0.0) - o[5 + k]
    deltas.append(delta)
  return deltas


def test_loss_gradient_is_darknets_delta():
  rng = np.random.default_rng(0)
  anchors = np.asarray(dc.YOLOV3_TINY_ANCHORS, np.float32)
  raw = [rng.normal(0, 1, (3, 3, 3, 8)).astype(np.float32),
         rng.normal(0, 1, (6, 6, 3, 8)).astype(np.float32)]
  # box 1 and 2 share a cell and an anchor (the later sets the box, classes are united);
  # a large box for the stride-32 layer; a padding row of NaN
  boxes = np.array([[10, 12, 30, 40], [11, 13, 31, 38], [5, 5, 90, 80], [60, 50, 70, 70],
                    [np.nan] * 4], np.float32)
  classes = np.array([2, 3, 1, 1, 0])
  valid = np.array([True, True, True, True, False])
  thresh = (0.5, 0.5)
  targets = {"boxes": jnp.asarray(boxes)[None], "classes": jnp.asarray(classes)[None],
             "box_valid": jnp.asarray(valid)[None]}

  def total(rs):
    losses = yolo_losses([r[None] for r in rs], (32, 16), anchors, TINY_MASKS, thresh,
                         targets, (96, 96))
    return sum(losses.values())

  grads = jax.jit(jax.grad(total))([jnp.asarray(r) for r in raw])
  deltas = darknet_delta(raw, (32, 16), anchors, TINY_MASKS, thresh, boxes[valid],
                         classes[valid] - 1, (96, 96))
  assert sum(int(np.count_nonzero(d[..., 0])) for d in deltas) == 3   # three boxes trained
  for g, d in zip(grads, deltas):
    np.testing.assert_allclose(np.asarray(g), -d, atol=2e-6, rtol=1e-4)


def test_loss_jit_grad_vmap_over_padded_targets(tiny):
  model, variables = tiny
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 64, 64, 3))
  boxes = jnp.array([[[4.0, 6.0, 30.0, 40.0], [40.0, 30.0, 60.0, 62.0], [0, 0, 0, 0]],
                     [[10.0, 10.0, 50.0, 20.0], [jnp.nan] * 4, [jnp.nan] * 4]])
  targets = {"boxes": boxes, "classes": jnp.array([[1, 3, 0], [2, 0, 0]]),
             "box_valid": jnp.array([[True, True, False], [True, False, False]])}

  def loss(params, x, targets):
    (losses, _), _ = model.apply({**variables, "params": params}, x, None, targets,
                                 train=True, mutable=["batch_stats"])
    return sum(losses.values()), losses

  (value, losses), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
      variables["params"], x, targets)
  assert set(losses) == set(LOSS_NAMES)
  assert all(np.isfinite(float(v)) for v in losses.values())
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(losses["loss_cls"]) > 0 and float(losses["loss_wh"]) > 0
  # the batch loss is the mean of the per-image losses (each with its own padding), on the
  # same raw outputs
  _, aux = jax.jit(model.apply)(variables, x)
  raw = aux["raw"]
  y = [y for y in model.darknet.yolo_layers]
  args = ((32.0, 16.0), jnp.asarray(y[0]["anchors"]), [l["mask"] for l in y],
          [l["ignore_thresh"] for l in y])
  losses_of = jax.jit(lambda raw, t: yolo_losses(raw, *args, t, (64, 64)))
  both = losses_of(raw, targets)
  one = [losses_of([r[i:i + 1] for r in raw],
                   {k: v[i:i + 1, :2 - i] for k, v in targets.items()}) for i in range(2)]
  for k in LOSS_NAMES:
    np.testing.assert_allclose(float(both[k]), (float(one[0][k]) + float(one[1][k])) / 2,
                               rtol=1e-5)
