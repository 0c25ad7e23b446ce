"""SSD against torchvision (`ssd300_vgg16`; SSD512 on torchvision's highres extractor with
the paper's SSD512 default boxes, which torchvision builds but ships no builder for): random
init, eval mode, 300x300 (512x512) inputs so that torchvision's fixed-size transform only
normalises, weights through `jaxcv.weights.torchvision.load` as a user takes real ones.

Compared, per seeded case:
- the six (seven) feature maps and the head's outputs (class logits, box codes) to 1e-4
  relative, the default boxes exactly;
- the test-time selection: torchvision's `postprocess_detections` on jaxcv's own head
  outputs gives jaxcv's detections as sets (boxes to 1e-3 px, scores to 1e-4, classes);
- end to end: the same sets, or a difference traced to float rounding at a threshold;
- train mode: `bbox_regression` and `classification` equal torchvision's `compute_loss` to
  1e-4 relative (the matcher and the hard-negative mining draw nothing at random).

The random heads are scaled so that the scores spread over (0, 1) rather than all sitting
near 1/K, and the box codes are ~0.1 (a trained detector's range: torchvision's xavier head
on random VGG features gives codes of several units, whose exp() turns float rounding into
more than 1e-3 px).

SSD300 runs in the fast suite (full width is the only width torchvision builds); SSD512 is
`slow`.
"""
import numpy as np
import pytest
import jax.numpy as jnp

from test_detection_torch import (TARGETS, compiled, relative_error, run_cases, same_or_tied,
                                  same_set, to_torch, torch, torchvision)

from torchvision.models.detection.anchor_utils import DefaultBoxGenerator  # noqa: E402
from torchvision.models.detection.ssd import SSD, SSDHead, _vgg_extractor  # noqa: E402

from jaxcv.models.detection.meta_arch.ssd import SSD512, SSD_MEAN  # noqa: E402
from jaxcv.weights.torchvision import load  # noqa: E402

C = 3
SIZE = {"ssd300_vgg16": 300, "ssd512_vgg16": 512}


def torch_model(name, seed):
  torch.manual_seed(seed)
  s = SIZE[name]
  if name == "ssd300_vgg16":
    m = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None,
                                                  num_classes=C + 1)
  else:
    backbone = _vgg_extractor(torchvision.models.vgg16(weights=None), True, 5)
    boxes = DefaultBoxGenerator([list(r) for r in SSD512["aspect_ratios"]],
                                scales=list(SSD512["scales"]), steps=list(SSD512["steps"]))
    channels = [512, 1024, 512, 256, 256, 256, 256]
    head = SSDHead(channels, boxes.num_anchors_per_location(), C + 1)
    m = SSD(backbone, boxes, (s, s), C + 1, head=head,
            image_mean=list(SSD_MEAN), image_std=[1 / 255] * 3)
  with torch.no_grad():
    for layer in m.head.classification_head.module_list:
      layer.weight.mul_(0.4)
    for layer in m.head.regression_head.module_list:
      layer.weight.mul_(0.03)
  return m


def images(name, seed):
  s = SIZE[name]
  return np.random.default_rng(seed).uniform(0, 1, (2, s, s, 3)).astype(np.float32)


def normalise(img):
  return jnp.asarray((img - np.asarray(SSD_MEAN, np.float32)) * 255.0)


def check_eval(name, seed, traced):
  tm = torch_model(name, seed).eval()
  model, variables = load(name, tm.state_dict())
  img = images(name, seed)
  with torch.no_grad():
    il, _ = tm.transform(to_torch(img))
    assert tuple(il.tensors.shape[-2:]) == (SIZE[name],) * 2
    feats = list(tm.backbone(il.tensors).values())
    head = tm.head(feats)
    anchors = tm.anchor_generator(il, feats)
    dets = tm(to_torch(img))
  out, aux = compiled(model, False)(variables, normalise(img))
  for ours, ref in zip(aux["features"], feats, strict=True):
    assert relative_error(np.asarray(ours).transpose(0, 3, 1, 2), ref.numpy()) <= 1e-4
  assert relative_error(aux["cls_logits"], head["cls_logits"].numpy()) <= 1e-4
  assert relative_error(aux["bbox_regression"], head["bbox_regression"].numpy()) <= 1e-4
  np.testing.assert_array_equal(aux["anchors"], anchors[0].numpy())
  with torch.no_grad():  # torchvision's selection on jaxcv's head outputs
    on_ours = tm.postprocess_detections(
        {k: torch.from_numpy(np.asarray(aux[k])) for k in ("cls_logits", "bbox_regression")},
        anchors, il.image_sizes)
  for b in range(2):
    where = f"{name} seed {seed} image {b}"
    v = np.asarray(out["valid"][b])
    ours = tuple(np.asarray(out[k][b])[v] for k in ("boxes", "scores", "classes"))
    assert v.sum() > 0, f"{where}: no detections (the test's scaling is off)"
    ref = tuple(on_ours[b][k].numpy() for k in ("boxes", "scores", "labels"))
    if not same_or_tied(where, "detections", ours, ref, traced):
      continue
    diff = same_set(*ours, *(dets[b][k].numpy() for k in ("boxes", "scores", "labels")),
                    px=1e-2)
    if diff is not None:
      traced.append(f"{where}: {diff}")


def check_train(name, seed):
  tm = torch_model(name, seed).eval()
  model, variables = load(name, tm.state_dict())
  img = images(name, seed)
  scale = SIZE[name] / 160.0  # the shared targets are drawn for 128x160 images
  boxes = (TARGETS["boxes"] * scale).astype(np.float32)
  targets = [{"boxes": torch.from_numpy(boxes[b][TARGETS["box_valid"][b]]),
              "labels": torch.from_numpy(TARGETS["classes"][b][TARGETS["box_valid"][b]]).long()}
             for b in range(2)]
  with torch.no_grad():
    il, t = tm.transform(to_torch(img), targets)
    feats = list(tm.backbone(il.tensors).values())
    head = tm.head(feats)
    anchors = tm.anchor_generator(il, feats)
    matched = []
    for a, tt in zip(anchors, t):
      iou = torchvision.ops.box_iou(tt["boxes"], a)
      matched.append(tm.proposal_matcher(iou))
    ref = {k: float(v) for k, v in tm.compute_loss(t, head, anchors, matched).items()}
  losses = compiled(model, True)(variables, normalise(img),
                                 {"boxes": jnp.asarray(boxes),
                                  **{k: jnp.asarray(TARGETS[k]) for k in ("classes",
                                                                          "box_valid")}})
  assert set(ref) == set(losses), (sorted(ref), sorted(losses))
  for k, v in ref.items():
    assert abs(float(losses[k]) - v) <= 1e-4 * abs(v), (k, float(losses[k]), v)


def test_ssd300_matches_torchvision():
  run_cases("ssd300_vgg16", range(2), check_eval)


def test_ssd300_losses_match_torchvision():
  for seed in range(2):
    check_train("ssd300_vgg16", seed)


@pytest.mark.slow
def test_ssd512_matches_torchvision():
  run_cases("ssd512_vgg16", range(2), check_eval)
  check_train("ssd512_vgg16", 0)


def test_converter_names_the_wrong_ssd():
  state = torch_model("ssd300_vgg16", 0).state_dict()
  with pytest.raises(ValueError, match="is ssd300_vgg16 .*not ssd512_vgg16"):
    load("ssd512_vgg16", state)
  with pytest.raises(ValueError, match="has no 'head.classification_head.module_list.0.weight'"):
    load("ssd300_vgg16", {k: v for k, v in state.items() if not k.startswith("head.")})
  with pytest.raises(ValueError, match="unexpected keys"):
    load("ssd300_vgg16", {**state, "backbone.extra.0.9.weight": state["backbone.scale_weight"]})
