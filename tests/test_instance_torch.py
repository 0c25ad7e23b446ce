"""Mask R-CNN and Keypoint R-CNN against torchvision, the Faster R-CNN protocol
(tests/test_detection_torch.py): random init, random BatchNorm statistics, eval mode, the
transform reduced to normalisation, weights through `jaxcv.weights.torchvision.load`.

Compared, per seeded case:
- the branch on the same boxes: torchvision's mask (keypoint) head run on jaxcv's own
  detections gives jaxcv's mask logits (heatmaps) to 1e-4 relative;
- the postprocess: torchvision's `paste_masks_in_image` / `heatmaps_to_keypoints` on jaxcv's
  outputs gives jaxcv's pasted masks (at most 0.1% of pixels differ at 0.5) / keypoints
  (1e-2 px);
- end to end, where the detections are the same sets (ties at an NMS / top-n threshold
  aside, as the Faster R-CNN test traces them): the final masks and keypoints of paired
  detections agree as above;
- train mode with every candidate sampled: `loss_mask` / `loss_keypoint` (and the box
  losses) equal torchvision's to 1e-4 relative.

Fast: the narrow ResNet-18 Mask R-CNN (64-channel FPN and heads); slow, in .ci/run: the
narrow Keypoint R-CNN; slow, by hand (BENCHMARKS.md): torchvision's own
`maskrcnn_resnet50_fpn`, `_v2` and `keypointrcnn_resnet50_fpn` at full width.
"""
import numpy as np
import pytest
import jax
import jax.numpy as jnp
from scipy.optimize import linear_sum_assignment

from test_detection_torch import (MEAN, STD, H, W, TARGETS, compiled, images, relative_error,
                                  same_set, to_torch, torch, torchvision, trained_range)
from test_detection_torch import check_train as detection_check_train
from test_detection_torch import run_cases

from torchvision.models.detection import KeypointRCNN, MaskRCNN  # noqa: E402
from torchvision.models.detection.backbone_utils import BackboneWithFPN  # noqa: E402
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead  # noqa: E402
from torchvision.models.detection.keypoint_rcnn import (KeypointRCNNHeads,  # noqa: E402
                                                        KeypointRCNNPredictor)
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor  # noqa: E402
from torchvision.models.detection.roi_heads import (heatmaps_to_keypoints,  # noqa: E402
                                                    paste_masks_in_image)

from jaxcv.models.detection.meta_arch.mask_rcnn import paste_masks  # noqa: E402
from jaxcv.weights.torchvision import load  # noqa: E402

C, K, NARROW = 3, 5, 64
SMALL = {"maskrcnn_resnet18_fpn", "keypointrcnn_resnet18_fpn"}


def torch_model(name, seed, **kwargs):
  torch.manual_seed(seed)
  size = dict(min_size=H, max_size=W)
  if name in SMALL:
    body = torchvision.models.resnet18(weights=None)
    fpn = BackboneWithFPN(body, {f"layer{i}": str(i - 1) for i in range(1, 5)},
                          [64, 128, 256, 512], NARROW)
    box = dict(box_head=TwoMLPHead(NARROW * 49, 256), box_predictor=FastRCNNPredictor(256, C + 1))
    if name.startswith("mask"):
      m = MaskRCNN(fpn, num_classes=None, mask_head=MaskRCNNHeads(NARROW, [NARROW] * 4, 1),
                   mask_predictor=MaskRCNNPredictor(NARROW, NARROW, C + 1), **box, **size,
                   **kwargs)
    else:
      m = KeypointRCNN(fpn, num_classes=None, keypoint_head=KeypointRCNNHeads(NARROW, [NARROW] * 8),
                       keypoint_predictor=KeypointRCNNPredictor(NARROW, K), **box, **size,
                       **kwargs)
  else:
    extra = {"num_keypoints": K} if name.startswith("keypoint") else {}
    m = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None,
                                                    num_classes=C + 1, **extra, **size,
                                                    **kwargs)
  return trained_range(m)


def with_pasted_masks(dets, x):
  """Mask R-CNN's detections with their masks pasted into the image (probabilities)."""
  if "mask_probs" not in dets:
    return dets
  return dict(dets, masks=paste_masks(dets, x.shape[1:3], threshold=None))


def pair(ours_boxes, ref_boxes):
  cost = np.abs(ours_boxes[:, None] - ref_boxes[None]).max(-1)
  rows, cols = linear_sum_assignment(cost)
  ok = cost[rows, cols] <= 1e-3
  return rows[ok], cols[ok]


def mask_pixels_differ(a, b) -> float:
  return float(np.mean((np.asarray(a) >= 0.5) != (np.asarray(b) >= 0.5)))


def check_eval(name, seed, report):
  tm = torch_model(name, seed).eval()
  model, variables = load(name, tm.state_dict(), norm_epsilon=1e-5)
  img = images(seed)
  out, aux = jax.device_get(compiled(model, False, with_pasted_masks)(
      variables, jnp.asarray((img - MEAN) / STD)))
  with torch.no_grad():
    il, _ = tm.transform(to_torch(img))
    feats = tm.backbone(il.tensors)
    props, _ = tm.rpn(il, feats)
    dets, _ = tm.roi_heads(feats, props, il.image_sizes)
  mask = name.startswith("mask")
  for b in range(2):
    v = out["valid"][b]
    assert v.sum() > 0
    where = f"{name} seed {seed} image {b}"
    boxes = torch.from_numpy(out["boxes"][b][v])
    per_image = [boxes if i == b else torch.zeros((0, 4)) for i in range(2)]  # feats: 2 images
    with torch.no_grad():  # torchvision's branch on jaxcv's own detections
      rh = tm.roi_heads
      if mask:
        x = rh.mask_predictor(rh.mask_head(rh.mask_roi_pool(feats, per_image, il.image_sizes)))
        ours = aux["mask_logits"][b][v].transpose(0, 3, 1, 2)
      else:
        x = rh.keypoint_predictor(rh.keypoint_head(
            rh.keypoint_roi_pool(feats, per_image, il.image_sizes)))
        ours = aux["keypoint_logits"][b][v].transpose(0, 3, 1, 2)
    assert relative_error(ours, x.numpy()) <= 1e-4, where
    if mask:  # torchvision's paste of jaxcv's probabilities
      probs = torch.from_numpy(out["mask_probs"][b][v][:, None])
      ref_masks = paste_masks_in_image(probs, boxes, (H, W))[:, 0].numpy()
      frac = mask_pixels_differ(out["masks"][b][v], ref_masks)
      assert frac <= 1e-3, f"{where}: {frac:.2%} of pasted pixels differ"
    else:
      ref_kps, ref_scores = heatmaps_to_keypoints(
          torch.from_numpy(aux["keypoint_logits"][b][v].transpose(0, 3, 1, 2).copy()), boxes)
      np.testing.assert_allclose(out["keypoints"][b][v], ref_kps.numpy(), atol=1e-2,
                                 err_msg=where)
      np.testing.assert_allclose(out["keypoint_scores"][b][v], ref_scores.numpy(),
                                 rtol=1e-4, atol=1e-4, err_msg=where)
    ref = dets[b]
    diff = same_set(out["boxes"][b][v], out["scores"][b][v], out["classes"][b][v],
                    ref["boxes"].numpy(), ref["scores"].numpy(), ref["labels"].numpy())
    if diff is not None:
      report.append(f"{where}: detections: {diff}")
      continue
    rows, cols = pair(out["boxes"][b][v], ref["boxes"].numpy())
    if mask:  # torchvision's transform pastes (its postprocess); here: the same function
      ref_masks = paste_masks_in_image(ref["masks"], ref["boxes"], (H, W))[:, 0].numpy()
      frac = mask_pixels_differ(out["masks"][b][v][rows], ref_masks[cols])
      assert frac <= 1e-3, f"{where}: end to end, {frac:.2%} of mask pixels differ"
    else:
      np.testing.assert_allclose(out["keypoints"][b][v][rows],
                                 ref["keypoints"].numpy()[cols], atol=1e-2, err_msg=where)


def run_eval(name, seeds):
  run_cases(name, seeds, check_eval)


def gt_masks():
  m = np.zeros((2, 3, H, W), bool)
  for b in range(2):
    for j in range(3):
      if TARGETS["box_valid"][b, j]:
        x1, y1, x2, y2 = TARGETS["boxes"][b, j].astype(int)
        yy, xx = np.mgrid[:H, :W]
        cy, cx, ry, rx = (y1 + y2) / 2, (x1 + x2) / 2, (y2 - y1) / 2, (x2 - x1) / 2
        m[b, j] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1  # an ellipse in its box
  return m


def gt_keypoints():
  rng = np.random.default_rng(0)
  bx = TARGETS["boxes"]
  t = rng.uniform(0, 1, (2, 3, K, 2))
  xy = bx[..., None, :2] + t * (bx[..., None, 2:] - bx[..., None, :2])
  v = rng.integers(0, 3, (2, 3, K, 1)).astype(np.float32)  # some unlabelled (v = 0)
  return np.concatenate([xy, v], -1).astype(np.float32)


def calm_rpn(name, seed, **kwargs):
  """torchvision's full-width model with its RPN's objectness weights scaled by 0.02: at
  init the R50 RPN's logits are so large that most objectness scores round to exactly 1.0,
  and the top-100 proposal cut is then a tie broken differently by torch.topk and
  lax.top_k (a different proposal set, a different box loss); scaled, the cut is not tied."""
  tm = torch_model(name, seed, **kwargs)
  with torch.no_grad():
    tm.rpn.head.cls_logits.weight.mul_(0.02)
  return tm


def check_train(name, seed):
  extra = {"masks": gt_masks()} if name.startswith("mask") else {"keypoints": gt_keypoints()}
  detection_check_train(name, seed, extra, proposals=100,
                        make=torch_model if name in SMALL else calm_rpn)


# the fast suite's budget: Mask R-CNN's small model there, Keypoint R-CNN's slow (.ci/run)
SMALL_CASES = ["maskrcnn_resnet18_fpn",
               pytest.param("keypointrcnn_resnet18_fpn", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", SMALL_CASES)
def test_small_branch_matches_torchvision(name):
  run_eval(name, range(1))


@pytest.mark.parametrize("name", SMALL_CASES)
def test_small_branch_losses_match_torchvision(name):
  check_train(name, 0)


LARGE = ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn"]


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_resnet50_branch_matches_torchvision(name):
  run_eval(name, range(5))


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_resnet50_branch_losses_match_torchvision(name):
  check_train(name, 0)


def test_converter_names_the_wrong_branch():
  state = torch_model("maskrcnn_resnet18_fpn", 0).state_dict()
  with pytest.raises(ValueError, match="keypointrcnn_resnet18_fpn has a keypoint branch.*"
                                       "this state_dict has a mask branch.*a torchvision "
                                       "MaskRCNN"):
    load("keypointrcnn_resnet18_fpn", state)
  with pytest.raises(ValueError, match="fasterrcnn_resnet18_fpn has no mask or keypoint branch; this state_dict has a mask"):
    load("fasterrcnn_resnet18_fpn", state)
