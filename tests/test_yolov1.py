"""YOLOv1 (`jaxcv.models.detection.meta_arch.yolov1`, its loss `dense_heads.yolov1_loss`):

- the paper's network: 24 convolutions, 1024 channels on a 7x7 map at 448 px, two fully
  connected layers (4096, 7*7*30), its parameter count; the output layout (darknet's order);
- the detection contract under jit (eval) and the loss dict under jit (train, dropout and
  BatchNorm), a grid that follows image_size / grid_size;
- the loss on hand-made and random cases against a NumPy transcription of the paper's
  equation 3, term by term, with the responsible-predictor choice (highest IoU; all IoU 0:
  darknet's smallest-distance fallback), the IoU confidence target and the shared-cell rule;
  a perfect prediction has no coord / obj / class loss; finite gradients at w' = 0 and on
  padding rows holding NaN (both w/h codings);
- the test-time decode against a NumPy loop (cell offsets -> boxes, p(c) * C, threshold,
  class-aware greedy NMS, top D);
- named errors: image size, grid / stride, targets, options;
- a few train steps of a tiny configs/yolov1_shapes.py through the trainer lower the loss.
"""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

import jaxcv.models as models
from jaxcv.models.detection.backbone.yolov1_net import NUM_CONVS
from jaxcv.models.detection.dense_heads.yolov1_loss import (LOSS_NAMES, responsible,
                                                            yolov1_boxes, yolov1_losses)
from jaxcv.models.detection.meta_arch.yolov1 import split_outputs, yolov1_detections
from test_dense_detection import reference_selection

TINY = {"width": 4, "hidden": 32, "image_size": 64, "grid_size": 4, "norm": "batch"}


def random_variables(model, x, seed=0):
  """Variables of `model`'s shapes filled on the host (He-normal kernels, zero biases, unit
  BatchNorm): compiling `init`'s 26 random initialisers costs more than the tests here."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  rng = np.random.default_rng(seed)

  def fill(path, s):
    leaf = jax.tree_util.keystr(path[-1:])
    if "kernel" in leaf:
      return rng.normal(0, np.sqrt(2 / np.prod(s.shape[:-1])), s.shape).astype(np.float32)
    return (np.ones if ("scale" in leaf or "var" in leaf) else np.zeros)(s.shape, np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def tiny():
  model = models.create("yolov1", num_classes=3, **TINY, detections_per_img=20,
                        score_thresh=0.0)
  x = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
  return model, random_variables(model, x), x


# --- network ---------------------------------------------------------------------------------

def test_the_papers_network():
  model = models.create("yolov1", num_classes=20)
  x = jax.ShapeDtypeStruct((1, 448, 448, 3), jnp.float32)
  v = jax.eval_shape(model.init, jax.random.key(0), x)
  params = v["params"]
  assert set(params) == {f"stage{i}" for i in range(1, 7)} | {"head"}
  convs = {k: p["conv"]["kernel"].shape for s in range(1, 7)
           for k, p in params[f"stage{s}"].items()}
  assert len(convs) == NUM_CONVS == 24 and set(convs) == {f"conv{i}" for i in range(1, 25)}
  assert convs["conv1"] == (7, 7, 3, 64) and convs["conv2"] == (3, 3, 64, 192)
  assert convs["conv3"] == (1, 1, 192, 128) and convs["conv16"] == (3, 3, 512, 1024)
  assert convs["conv24"] == (3, 3, 1024, 1024) and "batch_stats" not in v
  assert params["head"]["fc1"]["kernel"].shape == (7 * 7 * 1024, 4096)
  assert params["head"]["fc2"]["kernel"].shape == (4096, 7 * 7 * 30)
  n_conv = sum(k[0] * k[1] * k[2] * k[3] + k[3] for k in convs.values())   # + biases
  n_fc = (7 * 7 * 1024 + 1) * 4096 + (4096 + 1) * 1470
  assert sum(p.size for p in jax.tree.leaves(params)) == n_conv + n_fc == 271_703_550
  (_, aux) = jax.eval_shape(lambda v, x: model.apply(v, x), v, x)
  assert aux["features"].shape == (1, 7, 7, 1024)
  assert aux["coords"].shape == (1, 7, 7, 2, 4) and aux["class_probs"].shape == (1, 7, 7, 20)


def test_output_layout_is_darknets():
  s, nb, c = 3, 2, 4
  out = jnp.arange(s * s * (5 * nb + c), dtype=jnp.float32)[None]
  probs, conf, coords = split_outputs(out, s, nb, c)
  n = s * s
  assert probs[0, 1, 2, 3] == (1 * s + 2) * c + 3
  assert conf[0, 2, 0, 1] == n * c + (2 * s + 0) * nb + 1
  assert coords[0, 1, 1, 1, 2] == n * (c + nb) + ((1 * s + 1) * nb + 1) * 4 + 2


@pytest.mark.parametrize("size, grid, map_hw", [(128, 8, 8), (128, 2, 2), (96, 3, 3)])
def test_grid_follows_image_size_over_grid_size(size, grid, map_hw):
  model = models.create("yolov1_w8", num_classes=2, image_size=size, grid_size=grid, width=2)
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  v = jax.eval_shape(model.init, jax.random.key(0), x)
  _, aux = jax.eval_shape(lambda v, x: model.apply(v, x), v, x)
  assert aux["features"].shape[1:3] == (map_hw, map_hw)
  assert aux["confidence"].shape == (1, grid, grid, 2)


def test_contract_under_jit(tiny):
  model, variables, x = tiny
  hw = jnp.array([[64, 64], [40, 50]], jnp.int32)
  dets, aux = jax.jit(model.apply)(variables, x, hw)
  assert dets["boxes"].shape == (2, 20, 4) and dets["boxes"].dtype == jnp.float32
  assert dets["scores"].dtype == jnp.float32
  assert dets["classes"].dtype == jnp.int32 and dets["valid"].dtype == jnp.bool_
  assert aux["boxes"].shape == (2, 4, 4, 2, 4)
  for i in range(2):
    valid = np.asarray(dets["valid"][i])
    n = valid.sum()
    assert n > 0 and valid[:n].all() and not valid[n:].any()
    s = np.asarray(dets["scores"][i])
    assert np.all(np.diff(s[:n]) <= 0) and np.all(s[:n] > 0) and not s[n:].any()
    c = np.asarray(dets["classes"][i])
    assert set(c[:n]) <= {1, 2, 3} and not c[n:].any()
    b = np.asarray(dets["boxes"][i])
    h, w = np.asarray(hw[i])
    assert b[:n, [0, 2]].min() >= 0 and b[:n, [0, 2]].max() <= w
    assert b[:n, [1, 3]].min() >= 0 and b[:n, [1, 3]].max() <= h
    assert not b[n:].any()
  targets = {"boxes": jnp.array([[[4.0, 4.0, 30.0, 20.0]] * 3] * 2),
             "classes": jnp.array([[1, 2, 3]] * 2, jnp.int32),
             "box_valid": jnp.array([[True, False, False], [False] * 3])}

  @jax.jit
  def step(v, x):
    (losses, _), upd = model.apply(v, x, None, targets, train=True,
                                   rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"])
    return losses, upd

  losses, upd = step(variables, x)
  assert set(losses) == set(LOSS_NAMES) and set(upd) == {"batch_stats"}
  assert all(np.isfinite(float(v)) and float(v) >= 0 for v in losses.values())


# --- loss ------------------------------------------------------------------------------------

def np_iou(a, b):
  """IoU of two (cx, cy, w, h) boxes."""
  ix = max(0.0, min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2))
  iy = max(0.0, min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2))
  inter = ix * iy
  union = a[2] * a[3] + b[2] * b[3] - inter
  return inter / union if union > 0 else 0.0


def np_loss(probs, conf, coords, boxes, classes, valid, hw, wh_output="sqrt", lc=5.0, ln=0.5):
  """Equation 3 of the paper, one loop per image / cell / predictor (relative units)."""
  h, w = hw
  nimg, s, _, nb = conf.shape
  terms = dict.fromkeys(LOSS_NAMES, 0.0)
  root = (lambda v: v) if wh_output == "sqrt" else (
      lambda v: v / np.sqrt(abs(v) + 1e-6))
  width = (lambda v: v * v) if wh_output == "sqrt" else (lambda v: max(v, 0.0))
  for i in range(nimg):
    owner = {}
    for j in range(len(boxes[i])):
      x1, y1, x2, y2 = boxes[i][j]
      if not valid[i][j] or not (x2 > x1 and y2 > y1):
        continue
      cx, cy = (x1 + x2) / 2 / w * s, (y1 + y2) / 2 / h * s
      cell = (min(int(cy), s - 1), min(int(cx), s - 1))
      owner.setdefault(cell, j)        # the first object in a cell is its object
    for r in range(s):
      for c in range(s):
        if (r, c) not in owner:
          terms["loss_noobj"] += ln * sum(conf[i, r, c, k] ** 2 for k in range(nb))
          continue
        x1, y1, x2, y2 = boxes[i][owner[(r, c)]]
        truth = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
        tx, ty = truth[0] * s - c, truth[1] * s - r
        preds = [((c + coords[i, r, c, k, 0]) / s, (r + coords[i, r, c, k, 1]) / s,
                  width(coords[i, r, c, k, 2]), width(coords[i, r, c, k, 3]))
                 for k in range(nb)]
        ious = [np_iou(p, truth) for p in preds]
        if max(ious) > 0:
          best = int(np.argmax(ious))
        else:
          best = int(np.argmin([sum((p[d] - truth[d]) ** 2 for d in range(4)) for p in preds]))
        for k in range(nb):
          if k != best:
            terms["loss_noobj"] += ln * conf[i, r, c, k] ** 2
        px, py, pw, ph = coords[i, r, c, best]
        terms["loss_xy"] += lc * ((px - tx) ** 2 + (py - ty) ** 2)
        terms["loss_wh"] += lc * ((root(pw) - np.sqrt(truth[2])) ** 2
                                  + (root(ph) - np.sqrt(truth[3])) ** 2)
        terms["loss_obj"] += (conf[i, r, c, best] - ious[best]) ** 2
        onehot = np.eye(probs.shape[-1])[classes[i][owner[(r, c)]] - 1]
        terms["loss_cls"] += np.sum((probs[i, r, c] - onehot) ** 2)
  return {k: v / nimg for k, v in terms.items()}


def hand_case():
  """A 3x3 grid on a 96x96 canvas (32 px cells), B=2, C=3; image 0: an object in cell (0, 0)
  that predictor 1 overlaps best; one in cell (1, 2) that no predictor overlaps (predictor 1
  is nearer); a third whose centre is also in cell (0, 0) (it trains nothing); a NaN padding
  row. Image 1: no objects."""
  rng = np.random.default_rng(0)
  probs = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)
  conf = rng.normal(size=(2, 3, 3, 2)).astype(np.float32)
  coords = rng.uniform(0.2, 0.8, size=(2, 3, 3, 2, 4)).astype(np.float32)
  # object 0: centre (16, 16) in cell (0, 0), 20x12 px
  coords[0, 0, 0, 0] = [0.9, 0.9, 0.1, 0.1]          # far: IoU 0
  coords[0, 0, 0, 1] = [0.45, 0.55, 0.4, 0.35]       # overlaps: responsible
  # object 1: centre (80, 48) in cell (1, 2), 16x16 px; both predictors off the box
  coords[0, 1, 2, 0] = [0.0, 0.0, 0.05, 0.05]        # centre (64, 32): IoU 0, far
  coords[0, 1, 2, 1] = [0.95, 0.95, 0.05, 0.05]      # centre (94.4, 62.4): IoU 0, nearer
  boxes = np.array([[[6, 10, 26, 22], [72, 40, 88, 56], [2, 2, 30, 28], [np.nan] * 4],
                    [[0, 0, 0, 0]] * 4], np.float32)
  classes = np.array([[2, 3, 1, 0], [0, 0, 0, 0]], np.int32)
  valid = np.array([[True, True, True, False], [False] * 4])
  return probs, conf, coords, boxes, classes, valid


def test_loss_on_a_hand_made_case():
  probs, conf, coords, boxes, classes, valid = hand_case()
  targets = {"boxes": boxes, "classes": classes, "box_valid": valid}
  got = jax.jit(lambda p, c, x: yolov1_losses(p, c, x, targets, (96, 96)))(probs, conf, coords)
  want = np_loss(probs, conf, coords, boxes, classes, valid, (96, 96))
  for k in LOSS_NAMES:
    np.testing.assert_allclose(float(got[k]), want[k], rtol=1e-5, err_msg=k)
  # the responsible predictors and the IoU target, by hand
  gt = jnp.array([[6.0, 10, 26, 22], [72, 40, 88, 56]])
  pred = jnp.stack([coords[0, 0, 0], coords[0, 1, 2]])
  cell_xy = jnp.array([[0.0, 0.0], [2.0, 1.0]])[:, None, :]
  centre = (cell_xy + pred[..., :2]) * 32
  size = pred[..., 2:] ** 2 * 96
  pred_boxes = jnp.concatenate([centre - size / 2, centre + size / 2], -1)
  coded = jnp.concatenate([pred[..., :2], pred[..., 2:] ** 2], -1)
  true_coded = jnp.array([[0.5, 0.5, 20 / 96, 12 / 96], [0.5, 0.5, 16 / 96, 16 / 96]])
  index, iou = responsible(pred_boxes, coded, gt, true_coded, (3, 3))
  assert index.tolist() == [1, 1]
  assert iou[0, 0] == 0 and iou[0, 1] > 0.1 and not np.any(iou[1])
  # loss_obj: (C - IoU)^2 at the responsible predictors, image 1 adds nothing, / 2 images
  want_obj = ((conf[0, 0, 0, 1] - iou[0, 1]) ** 2 + conf[0, 1, 2, 1] ** 2) / 2
  np.testing.assert_allclose(float(got["loss_obj"]), want_obj, rtol=1e-5)
  # class loss: cells (0, 0) (class 2, not the later class-1 box) and (1, 2) (class 3)
  want_cls = (np.sum((probs[0, 0, 0] - [0, 1, 0]) ** 2)
              + np.sum((probs[0, 1, 2] - [0, 0, 1]) ** 2)) / 2
  np.testing.assert_allclose(float(got["loss_cls"]), want_cls, rtol=1e-5)
  want_noobj = 0.5 * (np.sum(conf ** 2) - conf[0, 0, 0, 1] ** 2 - conf[0, 1, 2, 1] ** 2) / 2
  np.testing.assert_allclose(float(got["loss_noobj"]), want_noobj, rtol=1e-5)


@pytest.mark.parametrize("wh_output", ["sqrt", "linear"])
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_on_random_cases(seed, wh_output):
  rng = np.random.default_rng(seed)
  s, nb, c, m = 4, 3, 5, 6
  probs = rng.normal(size=(3, s, s, c)).astype(np.float32)
  conf = rng.normal(size=(3, s, s, nb)).astype(np.float32)
  coords = rng.uniform(-0.2, 1.0, size=(3, s, s, nb, 4)).astype(np.float32)
  xy = rng.uniform(0, 100, size=(3, m, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(0, 40, size=(3, m, 2))], -1).astype(np.float32)
  boxes = np.minimum(boxes, 128)
  boxes[0, 1, 2] = boxes[0, 1, 0]                    # zero width: trains nothing
  classes = rng.integers(1, c + 1, size=(3, m)).astype(np.int32)
  valid = rng.uniform(size=(3, m)) < 0.8
  targets = {"boxes": boxes, "classes": classes, "box_valid": valid}
  got = jax.jit(lambda *a: yolov1_losses(*a, targets, (128, 128), wh_output=wh_output))(
      probs, conf, coords)
  want = np_loss(probs, conf, coords, boxes, classes, valid, (128, 128), wh_output)
  for k in LOSS_NAMES:
    np.testing.assert_allclose(float(got[k]), want[k], rtol=2e-5, err_msg=k)


def perfect(boxes, classes, s, nb, c, hw):
  """Outputs that predict the first object of each cell exactly with predictor 0."""
  probs = np.zeros((1, s, s, c), np.float32)
  conf = np.zeros((1, s, s, nb), np.float32)
  coords = np.zeros((1, s, s, nb, 4), np.float32)
  h, w = hw
  for (x1, y1, x2, y2), k in zip(boxes, classes):
    cx, cy = (x1 + x2) / 2 / w * s, (y1 + y2) / 2 / h * s
    r, col = int(cy), int(cx)
    if conf[0, r, col, 0]:
      continue
    probs[0, r, col, k - 1] = 1
    conf[0, r, col, 0] = 1
    coords[0, r, col, 0] = [cx - col, cy - r, np.sqrt((x2 - x1) / w), np.sqrt((y2 - y1) / h)]
  return probs, conf, coords


def test_a_perfect_prediction_has_no_loss():
  boxes = np.array([[[10, 20, 40, 60], [70, 70, 120, 100], [12, 22, 30, 50]]], np.float32)
  classes = np.array([[1, 3, 2]], np.int32)
  targets = {"boxes": boxes, "classes": classes, "box_valid": np.ones((1, 3), bool)}
  probs, conf, coords = perfect(boxes[0], classes[0], 4, 2, 3, (128, 128))
  loss_fn = jax.jit(lambda *a: yolov1_losses(*a, targets, (128, 128)))
  losses = loss_fn(probs, conf, coords)
  for k in LOSS_NAMES:
    np.testing.assert_allclose(float(losses[k]), 0.0, atol=1e-10, err_msg=k)
  # a confidence on a non-responsible predictor costs exactly lambda_noobj * C^2
  conf[0, 3, 3, 1] = 0.4
  losses = loss_fn(probs, conf, coords)
  np.testing.assert_allclose(float(losses["loss_noobj"]), 0.5 * 0.16, rtol=1e-6)


@pytest.mark.parametrize("wh_output", ["sqrt", "linear"])
def test_gradient_is_finite_at_zero_width(wh_output):
  s, nb, c = 3, 2, 2
  boxes = np.array([[[10, 10, 50, 40], [0, 0, 0, 0], [np.nan, np.inf, 1, 2]]], np.float32)
  targets = {"boxes": boxes, "classes": np.array([[1, 0, 7]], np.int32),
             "box_valid": np.array([[True, True, False]])}

  def total(outputs):
    probs, conf, coords = outputs
    return sum(yolov1_losses(probs, conf, coords, targets, (96, 96),
                             wh_output=wh_output).values())

  zeros = (jnp.zeros((1, s, s, c)), jnp.zeros((1, s, s, nb)), jnp.zeros((1, s, s, nb, 4)))
  for outputs in (zeros, jax.tree.map(lambda z: z - 0.1, zeros)):
    value, grads = jax.jit(jax.value_and_grad(total))(outputs)
    assert np.isfinite(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)
    # the responsible predictor's w' gets pulled towards sqrt(40 / 96) from 0 or below
    assert float(grads[2][0, 0, 0, 0, 2]) < 0


# --- decode ----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(2))
def test_decode_equals_a_numpy_loop(seed):
  rng = np.random.default_rng(seed)
  s, nb, c, hw = 4, 2, 3, (128, 128)
  probs = rng.uniform(0, 1, size=(2, s, s, c)).astype(np.float32)
  conf = rng.uniform(-0.2, 1, size=(2, s, s, nb)).astype(np.float32)
  coords = rng.uniform(0, 1, size=(2, s, s, nb, 4)).astype(np.float32)
  image_hw = np.array([[128, 128], [100, 90]], np.int32)
  boxes = yolov1_boxes(jnp.asarray(coords), hw, "sqrt")
  dets = jax.jit(lambda *a: yolov1_detections(*a, score_thresh=0.2, nms_thresh=0.5,
                                              topk_candidates=1000, detections_per_img=15))(
      probs, conf, boxes, image_hw)
  for i in range(2):
    flat_boxes, flat_scores = [], []
    for r in range(s):
      for col in range(s):
        for k in range(nb):
          x, y, wr, hr = coords[i, r, col, k]
          cx, cy = (col + x) / s * hw[1], (r + y) / s * hw[0]
          bw, bh = wr ** 2 * hw[1], hr ** 2 * hw[0]
          flat_boxes.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
          flat_scores.append(conf[i, r, col, k] * probs[i, r, col])
    b, sc, cl = reference_selection(np.array(flat_scores), np.array(flat_boxes),
                                    [len(flat_boxes)], image_hw[i], 0.2, 1000, 0.5, 15)
    n = int(dets["valid"][i].sum())
    assert n == len(sc) > 0
    np.testing.assert_allclose(dets["scores"][i, :n], sc, rtol=1e-6)
    np.testing.assert_array_equal(dets["classes"][i, :n], cl)
    np.testing.assert_allclose(dets["boxes"][i, :n], b, rtol=1e-5, atol=1e-4)


# --- errors ----------------------------------------------------------------------------------

def test_bad_image_sizes_and_targets_are_named(tiny):
  model, variables, x = tiny
  with pytest.raises(ValueError, match=r"YOLOv1 needs 64x64 input \(its 4x4 grid at stride "
                                       r"16.*got 96x96"):
    model.apply(variables, jnp.zeros((1, 96, 96, 3)))
  with pytest.raises(ValueError, match=r"needs 64x64 input .*got 64x128"):
    model.apply(variables, jnp.zeros((1, 64, 128, 3)))
  with pytest.raises(ValueError, match=r"images of shape \[B, H, W, 3\]"):
    model.apply(variables, jnp.zeros((1, 64, 64, 1)))
  with pytest.raises(ValueError, match="in training needs targets with keys"):
    model.apply(variables, x, None, {"boxes": jnp.zeros((2, 3, 4))}, train=True)
  bad = {"boxes": jnp.zeros((2, 3, 4)), "classes": jnp.zeros((2, 4), jnp.int32),
         "box_valid": jnp.zeros((2, 3), bool)}
  with pytest.raises(ValueError, match=r"targets\['classes'\] must have shape \(2, 3\)"):
    model.apply(variables, x, None, bad, train=True)
  with pytest.raises(ValueError, match="448x448 input"):
    jax.eval_shape(models.create("yolov1", num_classes=2).init, jax.random.key(0),
                   jax.ShapeDtypeStruct((1, 416, 416, 3), jnp.float32))


@pytest.mark.parametrize("kwargs, match", [
    ({"image_size": 100, "grid_size": 7}, r"power of two from 2 to 64 .*got 100 / 7"),
    ({"image_size": 448, "grid_size": 4}, r"power of two from 2 to 64 .*got 448 / 4"),
    ({"image_size": 96, "grid_size": 4}, r"power of two .*got 96 / 4"),
    ({"norm": "group"}, r"norm must be one of \[None, 'batch'\]"),
    ({"wh_output": "log"}, r"wh_output must be one of \['sqrt', 'linear'\]"),
    ({"boxes_per_cell": 0}, "boxes_per_cell must be a positive int"),
    ({"lambda_noobj": -1.0}, "lambda_noobj must be >= 0"),
    ({"nms_thresh": 1.5}, r"nms_thresh must be in \[0, 1\]"),
])
def test_bad_options_are_named(kwargs, match):
  kw = {"image_size": 64, "grid_size": 4, "width": 2, "hidden": 8, **kwargs}
  model = models.create("yolov1", num_classes=2, **kw)
  size = kw["image_size"]
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(model.init, jax.random.key(0),
                   jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))


def test_registry_checks_shared_arguments():
  with pytest.raises(ValueError, match="width must be a positive int"):
    models.create("yolov1", num_classes=2, width=0)
  with pytest.raises(ValueError, match="dropout must be a dropout rate"):
    models.create("yolov1_w8", num_classes=2, dropout=1.0)


# --- training --------------------------------------------------------------------------------

def test_a_few_train_steps_lower_the_loss():
  from jax.sharding import Mesh  # noqa: PLC0415

  from conftest import load_config  # noqa: PLC0415
  from jaxcv.train.loop import Trainer  # noqa: PLC0415
  c = load_config("yolov1_shapes")
  c.model.update({"width": 4, "hidden": 64, "image_size": 64, "grid_size": 4})
  c.data.image_size = 64
  c.data.preprocess = [("resize_to_canvas", {"min_size": 64, "max_size": 64, "canvas": 64})]
  c.data.split_sizes = {"train": 32, "validation": 8, "test": 8}
  c.batch_size, c.num_steps, c.schedule.warmup_steps = 8, 40, 5
  c.progress_bar = False
  trainer = Trainer(c, mesh=Mesh(np.asarray(jax.devices()[:1]), ("data",)))
  state = trainer.new_state()
  batches = trainer.batches(0)
  losses = []
  for _ in range(40):
    state, metrics = trainer.train_step(state, next(batches))
    losses.append(float(metrics["loss"]))
  batches.close()
  assert set(LOSS_NAMES) <= set(metrics)
  assert np.isfinite(losses).all()
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
