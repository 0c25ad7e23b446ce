"""SSDlite against torchvision's `ssdlite320_mobilenet_v3_large` (built by its builder without
weights: the reduced tail and `_normal_init`, as its published COCO weights): random init,
random BatchNorm affine parameters and running statistics (`calibrate_batchnorm`: near the
activations', then randomised), random SE and head biases (zero at init), eval mode,
320x320 inputs so that torchvision's fixed-size transform only normalises, weights through
`jaxcv.weights.torchvision.load` as a user takes real ones. All in the fast suite.

Compared, per seeded case (`test_ssd_torch`'s checks):
- the six feature maps and the head's outputs (class logits, box codes) to 1e-4 relative,
  the default boxes exactly;
- the test-time selection: torchvision's `postprocess_detections` on jaxcv's own head
  outputs gives jaxcv's detections as sets (boxes to 1e-3 px, scores to 1e-4, classes);
- end to end (torchvision's eval forward, run in its pieces: transform, backbone, head,
  default boxes, `postprocess_detections`, resize back): the same sets, or a difference
  traced to float rounding at a threshold;
- train mode: `bbox_regression` and `classification` equal torchvision's `compute_loss` to
  1e-4 relative, with every BatchNorm in inference mode on both sides (jaxcv:
  `frozen_stages` naming every module), and with batch statistics on both sides (the
  extractor's and the heads' BatchNorm in training mode).
A narrower variant (`width_mult` 0.5, the unreduced tail of an ImageNet backbone; built as
the builder does) compares maps, heads and default boxes. The random heads are scaled so that
the scores spread over (0, 1) rather than all sitting near 1/K, and the box codes are ~0.1
(a trained detector's range; see `test_ssd_torch`). Also: the converter names an SSD300 or
an SSDlite on MobileNetV3-Small, the parameter count is torchvision's, and any image size
runs (there is none too small for the extra blocks, as in torchvision).
"""
import copy
import functools

import jax
import numpy as np
import pytest
import jax.numpy as jnp

from test_detection_torch import (TARGETS, compiled, relative_error, run_cases, same_or_tied,
                                  same_set, to_torch, torch, torchvision)
from torch_reference import randomize_batchnorm

from torchvision.models.detection.anchor_utils import DefaultBoxGenerator  # noqa: E402
from torchvision.models.detection.ssd import SSD  # noqa: E402
from torchvision.models.detection import ssdlite as tv_ssdlite  # noqa: E402
from torchvision.models.detection import _utils as det_utils  # noqa: E402

from jaxcv import models  # noqa: E402
from jaxcv.models.detection.meta_arch.ssdlite import SSDLITE_MEAN, SSDLITE_STD  # noqa: E402
from jaxcv.weights.torchvision import load  # noqa: E402

NAME = "ssdlite320_mobilenet_v3_large"
C, S = 3, 320


def narrow(width_mult=0.5, num_classes=C + 1, arch="large"):
  """The builder's steps with `reduced_tail=False` (its layout with an ImageNet backbone,
  which the builder would download) and a `width_mult` (or another MobileNetV3 `arch`)."""
  norm = functools.partial(torch.nn.BatchNorm2d, eps=0.001, momentum=0.03)
  backbone = getattr(torchvision.models, f"mobilenet_v3_{arch}")(
      weights=None, norm_layer=norm, reduced_tail=False, width_mult=width_mult)
  tv_ssdlite._normal_init(backbone)
  backbone = tv_ssdlite._mobilenet_extractor(backbone, 6, norm)
  boxes = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
  head = tv_ssdlite.SSDLiteHead(det_utils.retrieve_out_channels(backbone, (S, S)),
                                boxes.num_anchors_per_location(), num_classes, norm)
  return SSD(backbone, boxes, (S, S), num_classes, head=head, score_thresh=0.001,
             nms_thresh=0.55, detections_per_img=300, topk_candidates=300,
             image_mean=list(SSDLITE_MEAN), image_std=list(SSDLITE_STD))


@functools.cache
def torch_model(name, seed, variant=False):
  """The reference in eval mode (shared by the tests: a test that changes it takes a copy)."""
  torch.manual_seed(seed)
  if variant:
    m = narrow()
  else:
    m = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=C + 1)
  randomize_batchnorm(m)
  calibrate_batchnorm(m, seed)
  with torch.no_grad():
    for layer in m.modules():
      if isinstance(layer, torchvision.ops.SqueezeExcitation):
        layer.fc1.bias.normal_(0.0, 0.3)
        layer.fc2.bias.normal_(0.0, 1.0)
    for blocks, scale, bias in ((m.head.classification_head, 2.5, 0.3),
                                (m.head.regression_head, 0.25, 0.03)):
      for block in blocks.module_list:
        block[1].weight.mul_(scale)
        block[1].bias.normal_(0.0, bias)
  return m.eval()


def calibrate_batchnorm(m, seed):
  """Running statistics near those of real activations, then randomised (mean moved by
  0.2 std, variance scaled by 0.5..2). `randomize_batchnorm`'s statistics (mean ~0.5, var ~1)
  swamp the activations of SSDlite's normal(0, 0.03) weights, whose maps then do not depend
  on the input (the two images' outputs are equal to 1e-8) and would hide a wrong layer."""
  norms = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
  calibration = np.random.default_rng(1000 + seed).uniform(0, 1, (2, S, S, 3)).astype(np.float32)
  with torch.no_grad():
    for b in norms:
      b.reset_running_stats()
      b.momentum = None  # the running statistics are the batch's
    m.train()
    il, _ = m.transform(to_torch(calibration))
    m.head(list(m.backbone(il.tensors).values()))
    for b in norms:
      b.running_mean.add_(torch.randn_like(b.running_mean) * 0.2 * b.running_var.sqrt())
      b.running_var.mul_(torch.empty_like(b.running_var).uniform_(0.5, 2.0))
      b.momentum = 0.03


def images(name, seed):
  return np.random.default_rng(seed).uniform(0, 1, (2, S, S, 3)).astype(np.float32)


def normalise(img):
  return jnp.asarray((img - np.asarray(SSDLITE_MEAN, np.float32))
                     / np.asarray(SSDLITE_STD, np.float32))


def reference(tm, img, targets=None):
  """torchvision's pieces on `img`: (image list, targets, maps, head outputs, anchors)."""
  with torch.no_grad():
    il, t = tm.transform(to_torch(img), targets)
    assert tuple(il.tensors.shape[-2:]) == (S, S)
    feats = list(tm.backbone(il.tensors).values())
    return il, t, feats, tm.head(feats), tm.anchor_generator(il, feats)


def check_outputs(aux, feats, head, anchors):
  for ours, ref in zip(aux["features"], feats, strict=True):
    assert relative_error(np.asarray(ours).transpose(0, 3, 1, 2), ref.numpy()) <= 1e-4
  assert relative_error(aux["cls_logits"], head["cls_logits"].numpy()) <= 1e-4
  assert relative_error(aux["bbox_regression"], head["bbox_regression"].numpy()) <= 1e-4
  np.testing.assert_array_equal(aux["anchors"], anchors[0].numpy())


def check_eval(name, seed, traced):
  tm = torch_model(name, seed)
  model, variables = load(name, tm.state_dict())
  assert model.reduced_tail and model.num_classes == C
  img = images(name, seed)
  il, _, feats, head, anchors = reference(tm, img)
  with torch.no_grad():  # the rest of torchvision's eval forward (its resize back is 1.0)
    dets = tm.transform.postprocess(tm.postprocess_detections(head, anchors, il.image_sizes),
                                    il.image_sizes, [(S, S)] * 2)
  out, aux = jax.device_get(compiled(model, False)(variables, normalise(img)))
  check_outputs(aux, feats, head, anchors)
  scores = torch.softmax(head["cls_logits"], -1)[..., 1:].max(-1).values.numpy()
  assert 0.5 < scores.max() < 0.9999 and np.median(scores) < 0.6, "the scaling is off"
  with torch.no_grad():  # torchvision's selection on jaxcv's head outputs
    on_ours = tm.postprocess_detections(
        {k: torch.from_numpy(aux[k].copy()) for k in ("cls_logits", "bbox_regression")},
        anchors, il.image_sizes)
  for b in range(2):
    where = f"{name} seed {seed} image {b}"
    v = out["valid"][b]
    ours = tuple(out[k][b][v] for k in ("boxes", "scores", "classes"))
    assert v.sum() > 0, f"{where}: no detections"
    ref = tuple(on_ours[b][k].numpy() for k in ("boxes", "scores", "labels"))
    if not same_or_tied(where, "detections", ours, ref, traced):
      continue
    diff = same_set(*ours, *(dets[b][k].numpy() for k in ("boxes", "scores", "labels")))
    if diff is not None:
      traced.append(f"{where}: {diff}")


def check_train(seed, batch_norm_train):
  """The losses on the same batch; BatchNorm in inference mode on both sides, or in
  training mode (batch statistics) on both."""
  tm = torch_model(NAME, seed)
  model, variables = load(NAME, tm.state_dict())
  if not batch_norm_train:
    model = model.clone(frozen_stages=model.module_names)
  else:  # a copy: the forward in training mode moves the running statistics
    tm = copy.deepcopy(tm).train()
  img = images(NAME, seed)
  boxes = (TARGETS["boxes"] * (S / 160.0)).astype(np.float32)  # drawn for 128x160 images
  valid = TARGETS["box_valid"]
  targets = [{"boxes": torch.from_numpy(boxes[b][valid[b]]),
              "labels": torch.from_numpy(TARGETS["classes"][b][valid[b]]).long()}
             for b in range(2)]
  _, t, _, head, anchors = reference(tm, img, targets)
  with torch.no_grad():
    matched = [tm.proposal_matcher(torchvision.ops.box_iou(tt["boxes"], a))
               for a, tt in zip(anchors, t)]
    ref = {k: float(v) for k, v in tm.compute_loss(t, head, anchors, matched).items()}
  losses = compiled(model, True)(variables, normalise(img),
                                 {"boxes": jnp.asarray(boxes),
                                  **{k: jnp.asarray(TARGETS[k]) for k in ("classes",
                                                                          "box_valid")}})
  assert set(ref) == set(losses), (sorted(ref), sorted(losses))
  for k, v in ref.items():
    assert abs(float(losses[k]) - v) <= 1e-4 * abs(v), (k, float(losses[k]), v)


def test_ssdlite_matches_torchvision():
  run_cases(NAME, range(2), check_eval)


def test_ssdlite_losses_match_torchvision():
  check_train(0, batch_norm_train=False)
  check_train(1, batch_norm_train=True)


def test_narrow_unreduced_ssdlite_matches_torchvision():
  tm = torch_model(NAME, 2, variant=True)
  model, variables = load(NAME, tm.state_dict(), width_mult=0.5)
  assert not model.reduced_tail
  img = images(NAME, 2)
  _, _, feats, head, anchors = reference(tm, img)
  _, aux = jax.device_get(jax.jit(model.apply)(variables, normalise(img)))
  check_outputs(aux, feats, head, anchors)


def test_converter_names_the_wrong_model():
  torch.manual_seed(0)
  ssd300 = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None,
                                                     num_classes=C + 1).state_dict()
  with pytest.raises(ValueError, match="has no 'head.classification_head.module_list.0.1"):
    load(NAME, ssd300)
  state = torch_model(NAME, 0).state_dict()
  with pytest.raises(ValueError, match="has no 'head.classification_head.module_list.0.weight"):
    load("ssd300_vgg16", state)
  with pytest.raises(ValueError, match="not a torchvision SSDlite on MobileNetV3-Large"):
    load(NAME, narrow(1.0, arch="small").state_dict())


def test_any_image_size_and_named_errors():
  """The parameter count of torchvision's COCO model (91 classes). The 3x3/2 convs with
  padding 1 take any map down to 1x1, so no image is too small for the extra blocks
  (torchvision's maps at 32x32 are 2, 1, 1, 1, 1, 1 too); a wrong channel count and bad
  settings are named errors."""
  model = models.create(NAME, num_classes=90)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  sizes = [int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(variables["params"])]
  assert sum(sizes) == 3_440_060  # torchvision's COCO weights' num_params
  _, aux = jax.eval_shape(model.apply, variables, x)
  with torch.no_grad():
    ref = torch_model(NAME, 0).backbone(torch.zeros(1, 3, 32, 32))
  assert [a.shape[1:3] for a in aux["features"]] == [tuple(r.shape[-2:]) for r in ref.values()]
  with pytest.raises(ValueError, match=r"SSDLite expects images of shape \[B, H, W, 3\]"):
    jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((1, 32, 32, 4), jnp.float32))
  for kwargs, match in (({"trainable_backbone_layers": 7}, r"layers must be .*\[0, 6\]"),
                        ({"aspect_ratios": ((2, 3),) * 5}, "gives 6 maps"),
                        ({"highres": True}, "highres is the VGG"),
                        ({"extra_layers": ((128, 256, 3, 2, 1),)}, "extra_layers is the VGG")):
    with pytest.raises(ValueError, match=match):
      jax.eval_shape(model.clone(**kwargs).init, jax.random.key(0), x)
