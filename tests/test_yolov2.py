"""YOLOv2: the yolov2-voc cfg text (layers, weight count = the published .weights files), the
[reorg] / [region] sections and their errors, darknet's reorg against a NumPy transcription
of `reorg_cpu`, the model's output contract under jit, the decode + selection against a
NumPy loop, the region loss against a NumPy transcription of darknet's `forward_region_layer`
(term by term: each loss's gradient is minus darknet's delta on the entries that term writes,
its value `sum(delta^2 / (2 scale))`), named input errors, a few training steps, and the
k-means anchors of the shapes training boxes (printed with their mean IoU)."""
import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcv import models
from jaxcv.models.detection.backbone import darknet_cfg as dc
from jaxcv.models.detection.backbone.darknet import reorg
from jaxcv.models.detection.dense_heads.region_loss import LOSS_NAMES, region_losses
from jaxcv.models.detection.meta_arch.yolov2 import YOLOV2_VOC_CFG, yolov2_voc_cfg
from jaxcv.weights import darknet as dw


def sig(x):
  return 1 / (1 + np.exp(-x))


# --- cfg ------------------------------------------------------------------------------------

def test_yolov2_voc_cfg():
  cfg = dc.parse_cfg(YOLOV2_VOC_CFG)
  assert len(cfg.layers) == 32 and len(cfg.conv_layers) == 23
  kinds = {l["index"]: l["type"] for l in cfg.layers if l["type"] != "convolutional"}
  assert kinds == {1: "maxpool", 3: "maxpool", 7: "maxpool", 11: "maxpool", 17: "maxpool",
                   25: "route", 27: "reorg", 28: "route", 31: "region"}
  assert cfg.layers[25]["layers"] == (16,) and cfg.layers[28]["layers"] == (27, 24)
  assert [cfg.layers[i]["out_channels"] for i in (16, 26, 27, 28, 30)] == [512, 64, 256, 1280,
                                                                            125]
  r = cfg.layers[31]
  assert r["num"] == 5 and r["classes"] == 20 and r["anchors"][0] == (1.3221, 1.73145)
  assert (r["thresh"], r["object_scale"], r["rescore"], r["bias_match"]) == (0.6, 5.0, True,
                                                                             True)
  # the published files: yolov2-voc.weights 202,704,264 bytes (20-byte header),
  # yolov2.weights (COCO, the same network for 80 classes) 203,934,260 (16-byte header)
  assert 20 + 4 * dc.num_weights(cfg) == 202_704_264
  assert 16 + 4 * dc.num_weights(yolov2_voc_cfg(80)) == 203_934_260
  narrow = dc.parse_cfg(yolov2_voc_cfg(3, width_mult=0.125, anchors=[(1, 2), (3, 4)]))
  assert narrow.layers[26]["filters"] == 8 and narrow.layers[30]["filters"] == 16


NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"
CONV = "[convolutional]\nfilters={f}\nsize=1\nstride=1\npad=1\nactivation=linear\n"
REGION = "[region]\nanchors=1,1, 2,2\nclasses=1\nsoftmax=1\n"


@pytest.mark.parametrize("text, match", [
    (NET + CONV.format(f=18) + REGION, r"outputs 18 channels; 2 anchors x \(5 \+ 1 classes\) "
                                       r"needs 12 \(filters=12"),
    (NET + CONV.format(f=12) + REGION.replace("softmax=1", "softmax=0"), "softmax=0"),
    (NET + CONV.format(f=12) + REGION + "tree=data/9k.tree\n", "tree="),
    (NET + CONV.format(f=12) + REGION + "coords=5\n", r"coords=5 is not supported"),
    (NET + CONV.format(f=12) + REGION.replace("1,1, 2,2", "1,1, 2"), "anchors has 3 numbers"),
    (NET + CONV.format(f=12) + REGION + "num=3\n", "num=3 but anchors has 2 pairs"),
    (NET + CONV.format(f=12) + REGION + "[route]\nlayers=-1\n", r"a \[region\] layer"),
    (NET + CONV.format(f=12) + "[reorg]\nstride=2\nreverse=1\n" + REGION,
     r"reverse=1 is not supported"),
    (NET + CONV.format(f=12) + "[reorg]\nstride=0\n" + REGION, "stride must be >= 1"),
])
def test_cfg_errors(text, match):
  with pytest.raises(dc.DarknetCfgError, match=match):
    dc.parse_cfg(text)


def test_cfg_region_parses():
  cfg = dc.parse_cfg(NET + CONV.format(f=3) + "[reorg]\nstride=2\n" + REGION.replace(
      "classes=1", "classes=1\nthresh=.7\nrescore=1"))
  assert cfg.layers[1]["out_channels"] == 12 and cfg.layers[2]["num"] == 2
  assert cfg.layers[2]["thresh"] == 0.7 and cfg.layers[2]["rescore"] is True
  assert cfg.layers[2]["bias_match"] is False and cfg.layers[2]["object_scale"] == 1.0
  assert not cfg.yolo_layers   # a [region] net is not a [yolo] one


# --- reorg ----------------------------------------------------------------------------------

def reorg_cpu(x, w, h, c, batch, stride, forward):
  """pjreddie/darknet src/blas.c `reorg_cpu` on flat float buffers, line for line."""
  out = np.zeros_like(x)
  out_c = c // (stride * stride)
  for b in range(batch):
    for k in range(c):
      for j in range(h):
        for i in range(w):
          in_index = i + w * (j + h * (k + c * b))
          c2 = k % out_c
          offset = k // out_c
          w2 = i * stride + offset % stride
          h2 = j * stride + offset // stride
          out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
          if forward:
            out[out_index] = x[in_index]
          else:
            out[in_index] = x[out_index]
  return out


def test_reorg_is_darknets():
  b, h, w, c, s = 2, 4, 6, 8, 2
  x = np.random.default_rng(0).normal(size=(b, h, w, c)).astype(np.float32)
  # forward_reorg_layer: reorg_cpu(input, l.w, l.h, l.c, batch, stride, 0, output), the
  # input's sizes, NCHW buffers; the output buffer is read as [4C, H/2, W/2]
  flat = reorg_cpu(x.transpose(0, 3, 1, 2).reshape(-1), w, h, c, b, s, 0)
  want = flat.reshape(b, c * s * s, h // s, w // s).transpose(0, 2, 3, 1)
  np.testing.assert_array_equal(np.asarray(jax.jit(reorg, static_argnums=1)(x, s)), want)
  # space_to_depth: reorg_cpu with the OUTPUT's sizes, a local rearrangement
  flat = reorg_cpu(x.transpose(0, 3, 1, 2).reshape(-1), w // s, h // s, c * s * s, b, s, 0)
  want = flat.reshape(b, c * s * s, h // s, w // s).transpose(0, 2, 3, 1)
  got = np.asarray(reorg(x, s, "space_to_depth"))
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(got[0, 1, 2], np.concatenate(
      [x[0, 2 + dy, 4 + dx] for dy in range(2) for dx in range(2)]))
  with pytest.raises(ValueError, match="C=6 must be divisible by stride"):
    reorg(x[..., :6], 2)
  with pytest.raises(ValueError, match="divisible by the stride 4"):
    reorg(x, 4, "space_to_depth")


# --- model ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
  model = models.create("yolov2_w8", num_classes=3, score_thresh=0.12, detections_per_img=20)
  # random variables in darknet's layout, through a .weights file (compiling `init` on a
  # CPU costs more than the whole test)
  cfg = model.darknet
  data = io.BytesIO()
  dw.write_weights(data, dw.random_variables(cfg, seed=2), cfg)
  variables = dw.read_weights(data.getvalue(), cfg)
  assert jax.tree.structure(variables) == jax.tree.structure(jax.eval_shape(
      model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
  return model, variables


def test_create_and_contract(tiny):
  model, variables = tiny
  assert {"yolov2", "yolov2_w8"} <= set(models.names())
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 96, 3))
  hw = jnp.array([[64, 96], [40, 50]], jnp.int32)
  dets, aux = jax.jit(model.apply)(variables, x, hw)
  assert dets["boxes"].shape == (2, 20, 4) and dets["boxes"].dtype == jnp.float32
  assert dets["scores"].dtype == jnp.float32 and dets["classes"].dtype == jnp.int32
  assert dets["valid"].dtype == jnp.bool_
  assert aux["raw"].shape == (2, 2, 3, 5, 8) and aux["boxes"].shape == (2, 2, 3, 5, 4)
  assert aux["stride"] == 32.0
  np.testing.assert_allclose(aux["anchors"], np.asarray(dc.parse_cfg(YOLOV2_VOC_CFG)
                                                        .layers[31]["anchors"]) * 32)
  convs = [0, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 16] + list(range(18, 25)) + [26, 29, 30]
  assert set(variables["params"]) == {f"layer{i}" for i in convs} == set(model.module_names)
  for i in range(2):
    valid = np.asarray(dets["valid"][i])
    n = valid.sum()
    assert n > 0 and valid[:n].all() and not valid[n:].any()
    s = np.asarray(dets["scores"][i, :n])
    assert np.all(np.diff(s) <= 0) and np.all(s > 0.12)
    assert set(np.asarray(dets["classes"][i, :n])) <= {1, 2, 3}
    b = np.asarray(dets["boxes"][i])
    h, w = np.asarray(hw[i])
    assert b[:n, [0, 2]].min() >= 0 and b[:n, [0, 2]].max() <= w
    assert b[:n, [1, 3]].min() >= 0 and b[:n, [1, 3]].max() <= h and not b[n:].any()
  # decode + selection against a NumPy loop on the same raw outputs
  raw = np.asarray(aux["raw"], np.float64)
  anchors = np.asarray(aux["anchors"], np.float64)
  for img in range(2):
    h, w = np.asarray(hw[img])
    cand = []
    for i in range(2):
      for j in range(3):
        for a in range(5):
          t = raw[img, i, j, a]
          cx, cy = (j + sig(t[0])) * 32, (i + sig(t[1])) * 32
          bw, bh = anchors[a] * np.exp(t[2:4])
          box = np.clip([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 0,
                        [w, h, w, h])
          p = np.exp(t[5:] - t[5:].max())
          for c, score in enumerate(sig(t[4]) * p / p.sum()):
            if score > 0.12 and box[2] > box[0] and box[3] > box[1]:
              cand.append((score, c + 1, box))
    kept = []
    for score, c, box in sorted(cand, key=lambda e: -e[0]):   # greedy NMS per class
      if all(k[1] != c or _iou(k[2], box) <= 0.45 for k in kept):
        kept.append((score, c, box))
    n = int(np.asarray(dets["valid"][img]).sum())
    assert n == min(len(kept), 20)
    kept = kept[:n]
    np.testing.assert_allclose(dets["scores"][img, :n], [k[0] for k in kept], rtol=1e-5)
    np.testing.assert_array_equal(dets["classes"][img, :n], [k[1] for k in kept])
    np.testing.assert_allclose(dets["boxes"][img, :n], [k[2] for k in kept], atol=1e-3)


def _iou(a, b):
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_bad_inputs(tiny):
  model, variables = tiny
  init = lambda m: jax.eval_shape(m.init, jax.random.PRNGKey(0),  # noqa: E731
                                  jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match=r"divisible by 32 .* got 64x80"):
    model.apply(variables, jnp.zeros((1, 64, 80, 3)))
  with pytest.raises(ValueError, match="anchors must be positive"):
    init(models.create("yolov2_w8", num_classes=3, anchors=[(1, 2, 3)]))
  # anchors that do not fit a cfg's head: 5 anchors in [region], filters for 3
  text = yolov2_voc_cfg(3, width_mult=0.125).replace("filters=40", "filters=24")
  with pytest.raises(dc.DarknetCfgError, match=r"outputs 24 channels; 5 anchors x \(5 \+ 3"):
    init(models.create("yolov2", num_classes=3, darknet_cfg=text))
  with pytest.raises(ValueError, match="anchors must be \\[A, 2\\] with A = 5"):
    region_losses(jnp.zeros((1, 2, 2, 5, 8)), 32, jnp.ones((3, 2)),
                  {"boxes": jnp.zeros((1, 1, 4)), "classes": jnp.ones((1, 1), jnp.int32),
                   "box_valid": jnp.ones((1, 1), bool)}, (64, 64))
  with pytest.raises(ValueError, match="width_mult and anchors apply to the built-in cfg"):
    init(models.create("yolov2", num_classes=3, darknet_cfg=YOLOV2_VOC_CFG, anchors=[(1, 1)]))
  with pytest.raises(ValueError, match=r"classes=20 but num_classes=3"):
    init(models.create("yolov2", num_classes=3, darknet_cfg=YOLOV2_VOC_CFG))
  with pytest.raises(ValueError, match="exactly one \\[region\\] layer"):
    init(models.create("yolov2", num_classes=3, darknet_cfg=dc.yolov3_tiny_cfg(3)))
  with pytest.raises(ValueError, match="reorg_order"):
    init(models.create("yolov2_w8", num_classes=3, reorg_order="pixel_shuffle"))
  with pytest.raises(ValueError, match="prior_images"):
    init(models.create("yolov2_w8", num_classes=3, prior_images=-1))
  x = jnp.zeros((1, 64, 64, 3))
  with pytest.raises(ValueError, match="needs targets with keys"):
    model.apply(variables, x, train=True, mutable=["batch_stats"])
  bad = {"boxes": jnp.zeros((1, 2, 4)), "classes": jnp.ones((1, 3), jnp.int32),
         "box_valid": jnp.ones((1, 2), bool)}
  with pytest.raises(ValueError, match=r"targets\['classes'\] must have shape \(1, 2\)"):
    model.apply(variables, x, None, bad, train=True, mutable=["batch_stats"])
  with pytest.raises(ValueError, match=r"targets\['classes'\] must have shape \(1, 2\)"):
    region_losses(jnp.zeros((1, 2, 2, 5, 8)), 32, jnp.ones((5, 2)), bad, (64, 64))
  with pytest.raises(ValueError, match=r"targets\['boxes'\] must have shape \(2, 2, 4\)"):
    region_losses(jnp.zeros((2, 2, 2, 5, 8)), 32, jnp.ones((5, 2)), bad, (64, 64))
  with pytest.raises(ValueError, match="unknown options"):
    region_losses(jnp.zeros((1, 2, 2, 5, 8)), 32, jnp.ones((5, 2)), bad, (64, 64), scale=2)


# --- loss -----------------------------------------------------------------------------------

def forward_region_layer(raw, biases, truths, seen, thresh=0.6, object_scale=5.0,
                         noobject_scale=1.0, class_scale=1.0, coord_scale=1.0, rescore=True,
                         bias_match=True):
  """NumPy transcription of pjreddie/darknet src/region_layer.c `forward_region_layer` for
  one image (softmax, no tree, no background, coords 4), indices as in the C loops: output
  `[h, w, n, entry]` for darknet's `entry_index(l, b, n*w*h + j*w + i, entry)`. `biases`
  (anchors) in cells, `truths` `(x, y, w, h, class)` relative to the input, class 0-based.
  Returns `(delta, term, scale)`: darknet's `l.delta`, which term wrote each entry last, and
  the scale it wrote it with."""
  h, w, num, size = raw.shape
  out = raw.astype(np.float64).copy()
  out[..., :2] = sig(out[..., :2])            # activate_array(..., 2*l.w*l.h, LOGISTIC)
  out[..., 4] = sig(out[..., 4])              # objectness, LOGISTIC
  e = np.exp(out[..., 5:] - out[..., 5:].max(-1, keepdims=True))
  out[..., 5:] = e / e.sum(-1, keepdims=True)  # softmax_cpu over the classes
  delta = np.zeros_like(out)
  term = np.full(out.shape, "", object)
  scale_of = np.zeros_like(out)

  def box_iou(a, b):
    def overlap(x1, w1, x2, w2):
      return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
    iw, ih = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if iw < 0 or ih < 0 else iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)

  def get_region_box(n, i, j):
    x = out[j, i, n]
    return ((i + x[0]) / w, (j + x[1]) / h, math.exp(x[2]) * biases[n][0] / w,
            math.exp(x[3]) * biases[n][1] / h)

  def delta_region_box(truth, n, i, j, scale, name):
    pred = get_region_box(n, i, j)
    iou = box_iou(pred, truth)
    t = (truth[0] * w - i, truth[1] * h - j, math.log(truth[2] * w / biases[n][0]),
         math.log(truth[3] * h / biases[n][1]))
    for k in range(4):
      delta[j, i, n, k] = scale * (t[k] - out[j, i, n, k])
      term[j, i, n, k] = name if name == "prior" else ("xy", "xy", "wh", "wh")[k]
      scale_of[j, i, n, k] = scale
    return iou

  for j in range(h):
    for i in range(w):
      for n in range(num):
        pred = get_region_box(n, i, j)
        best_iou = max([box_iou(pred, t[:4]) for t in truths] + [0.0])
        delta[j, i, n, 4] = noobject_scale * (0 - out[j, i, n, 4])
        term[j, i, n, 4], scale_of[j, i, n, 4] = "noobj", noobject_scale
        if best_iou > thresh:
          delta[j, i, n, 4] = 0
          term[j, i, n, 4] = ""
        if seen < 12800:
          truth = ((i + .5) / w, (j + .5) / h, biases[n][0] / w, biases[n][1] / h)
          delta_region_box(truth, n, i, j, .01, "prior")
  for t in truths:
    best_iou, best_n = 0.0, 0
    i, j = int(t[0] * w), int(t[1] * h)
    for n in range(num):
      pred = list(get_region_box(n, i, j))
      if bias_match:
        pred[2], pred[3] = biases[n][0] / w, biases[n][1] / h
      iou = box_iou((0, 0, pred[2], pred[3]), (0, 0, t[2], t[3]))
      if iou > best_iou:
        best_iou, best_n = iou, n
    iou = delta_region_box(t[:4], best_n, i, j, coord_scale * (2 - t[2] * t[3]), "")
    target = iou if rescore else 1.0
    delta[j, i, best_n, 4] = object_scale * (target - out[j, i, best_n, 4])
    term[j, i, best_n, 4], scale_of[j, i, best_n, 4] = "obj", object_scale
    for c in range(size - 5):
      delta[j, i, best_n, 5 + c] = class_scale * ((c == t[4]) - out[j, i, best_n, 5 + c])
      term[j, i, best_n, 5 + c], scale_of[j, i, best_n, 5 + c] = "cls", class_scale
  return delta, term, scale_of, out


def _case():
  """A 3x3 grid (96x96 canvas), 3 anchors, 3 classes. Boxes 0 and 1 share cell (0, 0) and
  anchor 0 (the later sets every target); box 2 is large (anchor 2, cell (1, 1)); one
  prediction is set to overlap box 2 by IoU > .6 (not background); a NaN padding row."""
  rng = np.random.default_rng(0)
  raw = rng.normal(0, 1, (3, 3, 3, 8)).astype(np.float32)
  anchors = np.array([[0.6, 0.8], [1.5, 1.5], [3.0, 2.5]], np.float32)   # cells
  boxes = np.array([[10, 12, 30, 40], [11, 13, 31, 38], [5, 5, 90, 80], [60, 50, 70, 70],
                    [np.nan] * 4], np.float32)
  classes = np.array([2, 3, 1, 1, 0])
  valid = np.array([True, True, True, True, False])
  # cell (row 1, col 1), anchor 1: decoded to about box 2 (centre 47.5, 42.5; 85 x 75)
  raw[1, 1, 1, :4] = [np.log(0.48 / 0.52), np.log(0.33 / 0.67), np.log(85 / 48 * 0.95),
                      np.log(75 / 48 * 0.95)]
  return raw, anchors, boxes, classes, valid


OPTION_CASES = [dict(), dict(rescore=False), dict(bias_match=False),
                dict(thresh=0.5, object_scale=2.0, noobject_scale=0.5, class_scale=3.0,
                     coord_scale=1.5)]


@pytest.mark.parametrize("opts", OPTION_CASES + ["prior"])
def test_loss_is_darknets_region_layer(opts):
  prior = opts == "prior"
  opts = {} if prior else opts
  raw, anchors, boxes, classes, valid = _case()
  truths = [((b[0] + b[2]) / 192, (b[1] + b[3]) / 192, (b[2] - b[0]) / 96, (b[3] - b[1]) / 96,
             c - 1) for b, c, v in zip(boxes, classes, valid) if v]
  full = {"thresh": 0.6, "object_scale": 5.0, "noobject_scale": 1.0, "class_scale": 1.0,
          "coord_scale": 1.0, "rescore": True, "bias_match": True, **opts}
  delta, term, scale, out = forward_region_layer(raw, anchors, truths, 0 if prior else 12800,
                                                 **full)
  if not opts and not prior:
    assert term[1, 1, 1, 4] == ""                     # ignored: IoU with box 2 > thresh
    assert (term[..., 4] == "obj").sum() == 3         # boxes 0 and 1 share one prediction
  targets = {"boxes": jnp.asarray(boxes)[None], "classes": jnp.asarray(classes)[None],
             "box_valid": jnp.asarray(valid)[None]}
  kw = dict(prior_scale=0.01 if prior else None, **opts)
  loss = jax.jit(lambda r: region_losses(r[None], 32.0, anchors * 32, targets, (96, 96), **kw))
  got = loss(jnp.asarray(raw))
  names = LOSS_NAMES + (("loss_prior",) if prior else ())
  assert set(got) == set(names)
  # backward_region_layer_gpu: the logistic derivative on x, y and objectness
  dgpu = delta.copy()
  dgpu[..., :2] *= out[..., :2] * (1 - out[..., :2])
  dgpu[..., 4] *= out[..., 4] * (1 - out[..., 4])
  grads = jax.jit(jax.jacrev(loss))(jnp.asarray(raw))
  for name in names:
    tag = name[len("loss_"):]
    mask = term == tag
    np.testing.assert_allclose(np.asarray(grads[name]), -np.where(mask, dgpu, 0.0), atol=2e-6,
                               rtol=1e-4, err_msg=name)
    if tag == "cls":   # softmax cross-entropy of the class each prediction last took
      want = 0.0
      for j, i, n in zip(*np.nonzero(mask[..., 5])):
        c = int(np.argmax(delta[j, i, n, 5:] / scale[j, i, n, 5:] + out[j, i, n, 5:]))
        want += full["class_scale"] * -math.log(out[j, i, n, 5 + c])
    else:              # the squared error whose gradient is the delta
      want = float(np.sum(np.where(mask, delta ** 2 / (2 * np.where(mask, scale, 1)), 0)))
    np.testing.assert_allclose(float(got[name]), want, rtol=1e-5, err_msg=name)
  total = sum(np.asarray(g) for g in grads.values())
  np.testing.assert_allclose(total, -dgpu, atol=2e-6, rtol=1e-4)


# a small net with the same parts (strided convolutions to stride 32, the passthrough:
# route back, 1x1, reorg, concatenation) so the training tests compile quickly
TINY_CFG = (NET + "".join(
    f"[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\nstride=2\npad=1\n"
    "activation=leaky\n" for f in (4, 8, 8, 16, 16))
    + "[route]\nlayers=-2\n"
    + "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=1\nstride=1\npad=1\n"
      "activation=leaky\n"
    + "[reorg]\nstride=2\n[route]\nlayers=-1,-4\n" + CONV.format(f=16)
    + "[region]\nanchors=1,1, 2,1.5\nclasses=3\nsoftmax=1\nrescore=1\nbias_match=1\n"
      "thresh=.6\nobject_scale=5\n")
TARGETS = {"boxes": jnp.array([[[4.0, 6.0, 30.0, 40.0], [40.0, 30.0, 60.0, 62.0], [0, 0, 0, 0]],
                               [[10.0, 10.0, 50.0, 20.0], [jnp.nan] * 4, [jnp.nan] * 4]]),
           "classes": jnp.array([[1, 3, 0], [2, 0, 0]]),
           "box_valid": jnp.array([[True, True, False], [True, False, False]])}


def test_prior_counter():
  model = models.create("yolov2", num_classes=3, darknet_cfg=TINY_CFG, prior_images=3)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 64, 3))
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  assert shapes["batch_stats"]["seen"].dtype == jnp.int32
  v = dw.random_variables(model.darknet, seed=1)
  v["batch_stats"]["seen"] = jnp.zeros((), jnp.int32)
  step = jax.jit(lambda v: model.apply(v, x, None, TARGETS, train=True,
                                       mutable=["batch_stats"]))
  (l1, _), upd = step(v)
  assert int(upd["batch_stats"]["seen"]) == 2 and float(l1["loss_prior"]) > 0  # 2 < 3
  (l2, _), upd = step({**v, **upd})
  assert int(upd["batch_stats"]["seen"]) == 4 and float(l2["loss_prior"]) == 0   # 4 >= 3
  off = models.create("yolov2", num_classes=3, darknet_cfg=TINY_CFG)
  assert "seen" not in jax.eval_shape(off.init, jax.random.PRNGKey(0), x)["batch_stats"]


def test_train_steps_reduce_the_loss():
  """Padded targets (NaN padding rows), jit(value_and_grad), the batch loss the mean of the
  per-image losses, and a few Adam steps on one batch lower it."""
  model = models.create("yolov2", num_classes=3, darknet_cfg=TINY_CFG)
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 64, 64, 3))
  variables = dw.random_variables(model.darknet, seed=0)
  opt = optax.adam(1e-2)

  @jax.jit
  def step(params, stats, state):
    def f(p):
      (losses, aux), upd = model.apply({"params": p, "batch_stats": stats}, x, None, TARGETS,
                                       train=True, mutable=["batch_stats"])
      return sum(losses.values()), (losses, aux["raw"], upd["batch_stats"])
    (value, (losses, raw, stats)), g = jax.value_and_grad(f, has_aux=True)(params)
    updates, state = opt.update(g, state, params)
    return optax.apply_updates(params, updates), stats, state, value, losses, raw, g

  params, stats = variables["params"], variables["batch_stats"]
  state = opt.init(params)
  values = []
  for k in range(10):
    params, stats, state, value, losses, raw, g = step(params, stats, state)
    values.append(float(value))
    if k == 0:
      assert set(losses) == set(LOSS_NAMES)
      assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(g))
      anchors = np.array([[1, 1], [2, 1.5]]) * 32
      of = jax.jit(lambda r, t: region_losses(r, 32.0, anchors, t, (64, 64)))
      one = [of(raw[i:i + 1], {n: a[i:i + 1, :2 - i] for n, a in TARGETS.items()})
             for i in range(2)]
      for n in LOSS_NAMES:
        np.testing.assert_allclose(float(losses[n]), (float(one[0][n]) + float(one[1][n])) / 2,
                                   rtol=1e-5)
  print("\nloss over 10 Adam steps:", np.round(values, 3))
  assert values[-1] < 0.5 * values[0]


# --- anchors --------------------------------------------------------------------------------

def test_kmeans_anchors_of_shapes():
  """k-means (1 - IoU) anchors of the shapes training boxes (the first 300 scenes here; the
  config's constants come from all 2,000, `python -m configs.yolov2_shapes`) and their mean
  IoU with the boxes, beside darknet's VOC priors' and the config's constants'."""
  from configs import yolov2_shapes as cfg
  from jaxcv.ops.box_coder import wh_iou
  wh = cfg.shapes_boxes_wh(300)
  r = cfg.kmeans_report(wh)
  const = float(np.asarray(wh_iou(wh[:, None], np.asarray(cfg.ANCHORS_CELLS, np.float32)[None]
                                  * 32)).max(1).mean())
  print(f"\nk-means anchors on 300 shapes scenes (cells of 32 px, {cfg.CANVAS} px canvas):",
        r["anchors_cells"].tolist())
  print(f"mean IoU: k-means {r['kmeans_iou']:.4f}, the config's anchors (all 2,000 scenes) "
        f"{const:.4f}; VOC priors as 32 px cells {r['voc_cells_iou']:.4f}, scaled to the same "
        f"grid {r['voc_same_grid_iou']:.4f}")
  assert r["kmeans_iou"] > r["voc_same_grid_iou"] + 0.1 and r["kmeans_iou"] > 0.8
  assert abs(const - r["kmeans_iou"]) < 0.02
  assert cfg.get_config().model.anchors == cfg.ANCHORS_CELLS
