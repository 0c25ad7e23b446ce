"""Faster R-CNN against torchvision (random init, random BatchNorm statistics, eval mode, the
same input at sides that are multiples of 32 with min_size/max_size set so that
torchvision's transform only normalises), through the converter a user takes with real
weights (`jaxcv.weights.torchvision.load`).

Compared: the FPN maps and RPN head outputs (relative error <= 1e-4), the proposals and the
final detections as sets (boxes to 1e-3 px, scores to 1e-4, same classes), the box head's
logits on matching proposals, and in train mode the four losses (1e-4 relative) with both
samplers taking every candidate (so neither side draws at random).

The random heads are scaled to a trained detector's range (RPN deltas ~0.05, box deltas
~0.1, objectness and class logits that rarely saturate sigmoid / softmax at 1.0): a random RPN regresses deltas of ~0.5 whose
float32 rounding, times anchors up to 512 px, moves boxes by more than 1e-3 px, and
saturated softmax scores tie at 1.0, where greedy NMS may keep either box; neither says
anything about the implementation. The reference's pure-Python `roi_align` (the CPU shim's)
is given the C++ kernel's border rule (`torch_reference.roi_align_as_cpp_kernel`): a thin
proposal on the bottom/right edge samples beyond the feature map, where the C++ kernel
(and jaxcv) give 0 and the Python code the border value.

The small model (`fasterrcnn_resnet18_fpn`, 128x160) runs in the fast suite; torchvision's
`fasterrcnn_resnet50_fpn` and `_v2` (10 seeded cases each, eval and train) are `slow` and
run by .ci/run.
"""
import numpy as np
import pytest
import jax
import jax.numpy as jnp
from scipy.optimize import linear_sum_assignment

from torch_reference import (import_torchvision, randomize_batchnorm, relative_error,
                             roi_align_as_cpp_kernel)

torch, torchvision = import_torchvision()
roi_align_as_cpp_kernel(torchvision)
from torchvision.models.detection import FasterRCNN  # noqa: E402
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone  # noqa: E402
from torchvision.models.detection.rpn import concat_box_prediction_layers  # noqa: E402

from jaxcv.weights.torchvision import load  # noqa: E402

H, W, C = 128, 160, 3
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def torch_model(name, seed, **kwargs):
  torch.manual_seed(seed)
  size = dict(min_size=H, max_size=W)
  if name == "fasterrcnn_resnet18_fpn":
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   norm_layer=torch.nn.BatchNorm2d)
    m = FasterRCNN(backbone, num_classes=C + 1, **size, **kwargs)
  else:
    m = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None,
                                                    num_classes=C + 1, **size, **kwargs)
  return trained_range(m)


def trained_range(m):
  """Random BatchNorm statistics, and the random heads scaled to a trained detector's range
  (the module docstring says why)."""
  randomize_batchnorm(m)
  with torch.no_grad():
    m.rpn.head.cls_logits.weight.normal_(0.0, 0.03)
    m.rpn.head.bbox_pred.weight.mul_(0.01)
    m.roi_heads.box_predictor.bbox_pred.weight.mul_(0.1)
    m.roi_heads.box_predictor.cls_score.weight.mul_(0.3)
  return m


def images(seed):
  return np.random.default_rng(seed).uniform(0, 1, (2, H, W, 3)).astype(np.float32)


def to_torch(img):
  return list(torch.from_numpy(img.transpose(0, 3, 1, 2).copy()))


_COMPILED = {}


def compiled(model, train, post=None):
  """The model's apply jitted once per (model, mode, post) and shared by the cases: train
  mode returns the losses (every sampler's draw from one key), eval mode `(dets, aux)`, with
  `post(dets, images) -> dets` applied inside the jit where given."""
  key = (model, train, post)
  if key not in _COMPILED:
    if train:
      _COMPILED[key] = jax.jit(lambda v, x, t: model.apply(
          v, x, None, t, train=True, rngs={"sample": jax.random.key(0)},
          mutable=["batch_stats"])[0][0])
    else:
      def run(v, x):
        dets, aux = model.apply(v, x)
        return (dets if post is None else post(dets, x)), aux
      _COMPILED[key] = jax.jit(run)
  return _COMPILED[key]


def same_set(ours_boxes, ours_scores, ours_classes, ref_boxes, ref_scores, ref_classes,
             px=1e-3):
  """None if equal as sets (same count, a one-to-one pairing of the same class with boxes
  within `px` pixels and scores within 1e-4), else what differs."""
  if len(ours_boxes) != len(ref_boxes):
    return f"{len(ours_boxes)} vs {len(ref_boxes)} boxes"
  if not len(ref_boxes):
    return None
  cost = np.abs(ours_boxes[:, None] - ref_boxes[None]).max(-1)
  if ours_classes is not None:
    cost = np.where(ours_classes[:, None] == ref_classes[None], cost, 1e9)
  rows, cols = linear_sum_assignment(cost)
  worst = cost[rows, cols].max()
  if worst > px:
    return f"{int((cost[rows, cols] > px).sum())} boxes differ, by up to {worst:.3g} px"
  if ours_scores is not None:
    diff = np.abs(ours_scores[rows] - ref_scores[cols]).max()
    if diff > 1e-4:
      return f"scores differ by {diff:.3g}"
  return None


def tied(ours_boxes, ours_scores, ref_boxes, ref_scores) -> bool:
  """True when every box in one set without a partner (1e-3 px) in the other has a score
  exactly equal to another box's of its set: greedy NMS ranks tied scores in an order
  neither library specifies (torch.topk's order of ties is not the index order)."""
  if not (len(ours_boxes) and len(ref_boxes)):
    return False
  d = np.abs(ours_boxes[:, None] - ref_boxes[None]).max(-1)
  extra, missing = d.min(1) > 1e-3, d.min(0) > 1e-3
  return all((ours_scores == v).sum() > 1 for v in ours_scores[extra]) and \
      all((ref_scores == v).sum() > 1 for v in ref_scores[missing])


def same_or_tied(where, what, ours, ref, traced, scores=True) -> bool:
  """Whether jaxcv's selection `ours` (boxes, scores, classes or None) equals torchvision's
  `ref` on jaxcv's own head outputs as sets (`same_set`, scores compared where `scores`).
  Where not, every difference must be at tied scores (`tied`), else the test fails; such a
  case is recorded in `traced` and False returned (the later comparisons are then moot)."""
  diff = same_set(ours[0], ours[1] if scores else None, ours[2],
                  ref[0], ref[1] if scores else None, ref[2])
  if diff is None:
    return True
  assert tied(ours[0], ours[1], ref[0], ref[1]), \
      f"{where}: {what} differ from torchvision's on the same head outputs: {diff}"
  traced.append(f"{where}: {what}: {diff}, all at tied scores")
  return False


def check_eval(name, seed, traced):
  """One seeded case. Head outputs must agree to 1e-4 relative; the proposal selection and
  the postprocess must give torchvision's sets exactly when torchvision runs them on
  jaxcv's own head outputs; the end-to-end sets must agree too, or else the difference is
  one that float rounding of the (1e-6-close) head outputs at a threshold (NMS IoU, a
  top-n cut, tied scores) explains, which the previous check proves: such cases are
  appended to `traced` and reported."""
  tm = torch_model(name, seed).eval()
  model, variables = load(name, tm.state_dict(), norm_epsilon=1e-5)
  img = images(seed)
  with torch.no_grad():
    il, _ = tm.transform(to_torch(img))
    assert tuple(il.tensors.shape[-2:]) == (H, W)
    feats = tm.backbone(il.tensors)
    levels = list(feats.values())
    head = tm.rpn.head(levels)
    obj, deltas = concat_box_prediction_layers(*head)
    anchors = tm.rpn.anchor_generator(il, levels)
    per_level = [o[0].numel() for o in head[0]]
    props, _ = tm.rpn(il, feats)
    dets, _ = tm.roi_heads(feats, props, il.image_sizes)
    logits, _ = tm.roi_heads.box_predictor(tm.roi_heads.box_head(
        tm.roi_heads.box_roi_pool(feats, props, il.image_sizes)))
  out, aux = compiled(model, False)(variables, jnp.asarray((img - MEAN) / STD))
  out, aux = jax.device_get((out, aux))
  for ours, ref in zip(aux["fpn"], feats.values()):
    assert relative_error(ours.transpose(0, 3, 1, 2), ref.numpy()) <= 1e-4
  assert relative_error(aux["objectness"].reshape(-1), obj.numpy().reshape(-1)) <= 1e-4
  assert relative_error(aux["rpn_deltas"].reshape(-1, 4), deltas.numpy()) <= 1e-4
  np.testing.assert_array_equal(aux["anchors"], anchors[0].numpy())
  with torch.no_grad():  # torchvision's selection and postprocess on jaxcv's head outputs
    decoded = tm.rpn.box_coder.decode(torch.from_numpy(aux["rpn_deltas"].reshape(-1, 4)),
                                      anchors).view(2, -1, 4)
    props_on_ours, scores_on_ours = tm.rpn.filter_proposals(
        decoded, torch.from_numpy(aux["objectness"].reshape(-1, 1)), il.image_sizes,
        per_level)
    pv = aux["proposal_valid"]
    dets_on_ours = tm.roi_heads.postprocess_detections(
        torch.from_numpy(aux["class_logits"][pv]), torch.from_numpy(aux["box_regression"][pv]),
        [torch.from_numpy(aux["proposals"][b][pv[b]]) for b in range(2)], il.image_sizes)
  start = 0
  for b in range(2):
    ours_props = aux["proposals"][b][pv[b]]
    where = f"{name} seed {seed} image {b}"
    ref_props = props[b].numpy()
    ref_logits = logits[start:start + len(ref_props)].numpy()
    start += len(ref_props)
    ours_scores = aux["proposal_scores"][b][pv[b]]
    if not same_or_tied(where, "proposals", (ours_props, ours_scores, None),
                        (props_on_ours[b].numpy(), scores_on_ours[b].numpy(), None), traced,
                        scores=False):
      continue
    v = out["valid"][b]
    ours_dets = (out["boxes"][b][v], out["scores"][b][v], out["classes"][b][v])
    ref_on_ours = tuple(t[b].numpy() for t in dets_on_ours)
    if not same_or_tied(where, "detections", ours_dets, ref_on_ours, traced):
      continue
    assert v.sum() > 0
    diff = same_set(ours_props, None, None, ref_props, None, None)
    if diff is None:  # the box head on the same proposals
      cost = np.abs(ours_props[:, None] - ref_props[None]).max(-1)
      rows, cols = linear_sum_assignment(cost)
      assert relative_error(aux["class_logits"][b][pv[b]][rows], ref_logits[cols]) <= 1e-4
      diff = same_set(*ours_dets, dets[b]["boxes"].numpy(), dets[b]["scores"].numpy(),
                      dets[b]["labels"].numpy())
      if diff is not None:
        traced.append(f"{where}: detections: {diff}")
    else:
      traced.append(f"{where}: proposals: {diff}")


TARGETS = {
    "boxes": np.array([[[10, 12, 60, 70], [80, 20, 150, 110], [0, 0, 0, 0]],
                       [[30, 40, 90, 100], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32),
    "classes": np.array([[1, 3, 0], [2, 0, 0]], np.int32),
    "box_valid": np.array([[True, True, False], [True, False, False]]),
}


def check_train(name, seed, extra=None, proposals=None, make=None):
  """Train mode with both samplers taking every candidate: the losses equal torchvision's to
  1e-4 relative (and the same set of them). `extra`: per-object targets beyond boxes and
  classes (`masks` [B, M, H, W], `keypoints` [B, M, K, 3]); `proposals`: the RPN's
  post-NMS top-n in training on both sides (default torchvision's 2000; a smaller one keeps
  the mask and keypoint branches cheap); `make(name, seed, **kwargs)`: the torchvision model
  (default this module's `torch_model`)."""
  top = {} if proposals is None else {"rpn_post_nms_top_n_train": proposals}
  every = dict(rpn_batch_size_per_image=100_000, rpn_positive_fraction=1.0,
               box_batch_size_per_image=100_000, box_positive_fraction=1.0, **top)
  tm = (make or torch_model)(name, seed, **every)
  tm.eval()  # BatchNorm as in evaluation on both sides; the heads' training paths
  tm.rpn.training = tm.roi_heads.training = True
  # exactly-sized static samplers: every anchor / candidate (proposals + ground truth) fits
  num_anchors = 3 * sum((H // s) * (W // s) for s in (4, 8, 16, 32)) + 3 * 2 * 3
  model, variables = load(name, tm.state_dict(), norm_epsilon=1e-5, **top,
                          rpn_batch_size_per_image=num_anchors, rpn_positive_fraction=1.0,
                          box_batch_size_per_image=(proposals or 2000) + 3,
                          box_positive_fraction=1.0)
  img = images(seed)
  extra = extra or {}
  targets = []
  for b in range(2):
    keep = TARGETS["box_valid"][b]
    t = {"boxes": torch.from_numpy(TARGETS["boxes"][b][keep]),
         "labels": torch.from_numpy(TARGETS["classes"][b][keep]).long()}
    for k, v in extra.items():
      t[k] = torch.from_numpy(v[b][keep].astype(np.uint8) if k == "masks" else v[b][keep])
    targets.append(t)
  with torch.no_grad():
    il, t = tm.transform(to_torch(img), targets)
    feats = tm.backbone(il.tensors)
    props, rpn_losses = tm.rpn(il, feats, t)
    _, roi_losses = tm.roi_heads(feats, props, il.image_sizes, t)
  ref = {k: float(v) for k, v in {**rpn_losses, **roi_losses}.items()}
  # jaxcv's BatchNorm in inference mode too: frozen_stages names every module with one
  frozen = ("stem", "stage1", "stage2", "stage3", "stage4", "fpn", "box_head", "mask_head")
  if model.backbone_norm == "batch":
    model = model.clone(frozen_stages=tuple(f for f in frozen if f in model.module_names))
  losses = compiled(model, True)(variables, jnp.asarray((img - MEAN) / STD),
                                 {k: jnp.asarray(v) for k, v in {**TARGETS, **extra}.items()})
  assert set(ref) == set(losses), (sorted(ref), sorted(losses))
  for k, v in ref.items():
    assert abs(float(losses[k]) - v) <= 1e-4 * abs(v), (k, float(losses[k]), v)


def run_cases(name, seeds, check=None):
  """`check(name, seed, traced)` (default `check_eval`) per seed, two images each: at most a
  fifth of the images may differ, each traced to float rounding at a threshold (an NMS /
  top-n tie) in `traced`."""
  traced = []
  for seed in seeds:
    (check or check_eval)(name, seed, traced)
  cases = 2 * len(seeds)
  print(f"\n{name}: {cases - len(traced)} of {cases} images equal end to end; traced to "
        f"float rounding at a threshold: {traced or 'none'}")
  assert len(traced) <= cases // 5, traced


def test_fasterrcnn_resnet18_fpn_matches_torchvision():
  run_cases("fasterrcnn_resnet18_fpn", range(2))


def test_fasterrcnn_resnet18_fpn_losses_match_torchvision():
  check_train("fasterrcnn_resnet18_fpn", 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"])
def test_fasterrcnn_resnet50_matches_torchvision(name):
  run_cases(name, range(10))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"])
def test_fasterrcnn_resnet50_losses_match_torchvision(name):
  for seed in range(2):
    check_train(name, seed)
