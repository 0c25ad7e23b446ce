"""RetinaNet and FCOS against torchvision, the Faster R-CNN protocol (tests/test_detection_torch.py):
random init, random BatchNorm / GroupNorm parameters, eval mode, the transform reduced to
normalisation (128x160), weights through `jaxcv.weights.torchvision.load`.

Compared, per seeded case:
- the FPN maps (P3..P7) and the head's outputs (class logits, box codes, FCOS's centre-ness)
  to 1e-4 relative, the anchors exactly;
- the test-time selection: torchvision's `postprocess_detections` on jaxcv's own head
  outputs gives jaxcv's detections as sets (boxes to 1e-3 px, scores to 1e-4, classes);
- end to end: the same sets, or a difference traced to float rounding at a threshold;
- train mode: the loss dict (`classification`, `bbox_regression`, FCOS's `bbox_ctrness`)
  equals torchvision's to 1e-4 relative (these losses sample nothing).

The random heads are scaled to a trained detector's range: torchvision's init (tower convs
normal(0.01), the prior-probability bias) makes every logit about -4.6 and every score 0.01,
below the 0.05 threshold and all tied; here the towers get kaiming-scaled weights, the class
logits spread around the threshold, the background column 0 (never assigned an anchor) sits
far below it, and the deltas are ~0.1 (see tests/test_detection_torch.py on why).

Fast: narrow ResNet-18 models (64-channel FPN and heads): RetinaNet v1 (P6 from P5, L1 box
loss) and v2 (GroupNorm heads, P6 from C5, GIoU), FCOS; slow: torchvision's own
`retinanet_resnet50_fpn`, `_v2` and `fcos_resnet50_fpn` at full width. FCOS's box codes
get a positive bias (its ReLU'd codes at init are ~0: zero-size boxes).
"""
import functools

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from test_detection_torch import (MEAN, STD, H, W, TARGETS, compiled, images, relative_error,
                                  run_cases, same_or_tied, same_set, to_torch, torch,
                                  torchvision)
from torch_reference import randomize_batchnorm

from torchvision.models.detection import FCOS, RetinaNet  # noqa: E402
from torchvision.models.detection.backbone_utils import BackboneWithFPN  # noqa: E402
from torchvision.models.detection.fcos import FCOSHead  # noqa: E402
from torchvision.models.detection.retinanet import RetinaNetHead  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelP6P7  # noqa: E402

from jaxcv.weights.torchvision import load  # noqa: E402

C, NARROW = 3, 64
SMALL = {"retinanet_resnet18_fpn", "retinanet_resnet18_fpn_v2", "fcos_resnet18_fpn"}
LARGE = ["retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn"]


def torch_model(name, seed):
  torch.manual_seed(seed)
  size = dict(min_size=H, max_size=W)
  v2, fcos = name.endswith("_v2"), name.startswith("fcos")
  a = 1 if fcos else 9
  if name in SMALL:
    body = torchvision.models.resnet18(weights=None)
    fpn = BackboneWithFPN(body, {f"layer{i}": str(i - 2) for i in range(2, 5)},
                          [128, 256, 512], NARROW,
                          extra_blocks=LastLevelP6P7(512 if v2 else NARROW, NARROW))
    if fcos:
      m = FCOS(fpn, num_classes=C + 1, head=FCOSHead(NARROW, 1, C + 1), **size)
    else:
      norm = functools.partial(torch.nn.GroupNorm, 32) if v2 else None
      head = RetinaNetHead(NARROW, 9, C + 1, norm_layer=norm)
      if v2:
        head.regression_head._loss_type = "giou"
      m = RetinaNet(fpn, num_classes=C + 1, head=head, **size)
  else:
    m = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None,
                                                    num_classes=C + 1, **size)
  randomize_batchnorm(m)
  with torch.no_grad():
    for sub in (m.head.classification_head, m.head.regression_head):
      for layer in sub.conv.modules():
        if isinstance(layer, torch.nn.Conv2d):
          torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        if isinstance(layer, torch.nn.GroupNorm):
          layer.weight.normal_(1.0, 0.3)
          layer.bias.normal_(0.0, 0.3)
    cls = m.head.classification_head.cls_logits
    cls.weight.mul_(30.0 if fcos else 1.0)         # logits spread ~1-2 around the bias
    bias = cls.bias.view(a, C + 1)
    bias.fill_(-2.0 if fcos else -3.0)
    bias[:, 0] = -12.0                             # background column: never a candidate
    cls.weight.view(a, C + 1, *cls.weight.shape[1:])[:, 0] = 0.0  # (jaxcv leaves it out)
    reg = m.head.regression_head.bbox_reg
    reg.weight.mul_(3.0)
    if fcos:  # distances ~1 anchor size (ReLU'd codes at init are ~0: zero-size boxes)
      reg.bias.fill_(1.0)
      m.head.regression_head.bbox_ctrness.weight.mul_(30.0)
  return m


def torch_anchors(tm, il, feats):
  return tm.anchor_generator(il, list(feats.values()))


def check_eval(name, seed, traced):
  tm = torch_model(name, seed).eval()
  model, variables = load(name, tm.state_dict(), norm_epsilon=1e-5)
  img = images(seed)
  with torch.no_grad():
    il, _ = tm.transform(to_torch(img))
    assert tuple(il.tensors.shape[-2:]) == (H, W)
    feats = tm.backbone(il.tensors)
    head = tm.head(list(feats.values()))
    anchors = torch_anchors(tm, il, feats)
    dets = tm(to_torch(img))
  out, aux = jax.device_get(compiled(model, False)(variables, jnp.asarray((img - MEAN) / STD)))
  for ours, ref in zip(aux["fpn"], feats.values(), strict=True):
    assert relative_error(ours.transpose(0, 3, 1, 2), ref.numpy()) <= 1e-4
  for k, ref in head.items():
    ours = aux[k][..., None] if k == "bbox_ctrness" else aux[k]
    assert relative_error(ours, ref.numpy()) <= 1e-4, k
  np.testing.assert_array_equal(aux["anchors"], anchors[0].numpy())
  per_location = 1 if name.startswith("fcos") else 9
  sizes = [f.shape[2] * f.shape[3] * per_location for f in feats.values()]
  with torch.no_grad():  # torchvision's selection on jaxcv's head outputs
    split = {k: list(torch.from_numpy(aux[k][..., None] if k == "bbox_ctrness" else aux[k])
                     .split(sizes, dim=1)) for k in head}
    on_ours = tm.postprocess_detections(split, [list(a.split(sizes)) for a in anchors],
                                        il.image_sizes)
  for b in range(2):
    where = f"{name} seed {seed} image {b}"
    v = out["valid"][b]
    ours = (out["boxes"][b][v], out["scores"][b][v], out["classes"][b][v])
    assert v.sum() > 0, f"{where}: no detections (the test's scaling is off)"
    ref = tuple(on_ours[b][k].numpy() for k in ("boxes", "scores", "labels"))
    if not same_or_tied(where, "detections", ours, ref, traced):
      continue
    # end to end the box codes carry the backbone's float error (1e-5 relative), which the
    # large anchors (up to 512 px at P7) turn into a few thousandths of a pixel
    diff = same_set(*ours, *(dets[b][k].numpy() for k in ("boxes", "scores", "labels")),
                    px=1e-2)
    if diff is not None:
      traced.append(f"{where}: {diff}")


def check_train(name, seed):
  tm = torch_model(name, seed)
  tm.eval()  # BatchNorm as in evaluation on both sides; the loss path in training
  model, variables = load(name, tm.state_dict(), norm_epsilon=1e-5)
  img = images(seed)
  targets = [{"boxes": torch.from_numpy(TARGETS["boxes"][b][TARGETS["box_valid"][b]]),
              "labels": torch.from_numpy(TARGETS["classes"][b][TARGETS["box_valid"][b]]).long()}
             for b in range(2)]
  with torch.no_grad():
    il, t = tm.transform(to_torch(img), targets)
    feats = list(tm.backbone(il.tensors).values())
    args = (t, tm.head(feats), tm.anchor_generator(il, feats))
    if name.startswith("fcos"):
      args += ([f.shape[2] * f.shape[3] for f in feats],)
    ref = tm.compute_loss(*args)
  ref = {k: float(v) for k, v in ref.items()}
  if model.backbone_norm == "batch":
    model = model.clone(frozen_stages=("stem", "stage1", "stage2", "stage3", "stage4"))
  losses = compiled(model, True)(variables, jnp.asarray((img - MEAN) / STD),
                                 {k: jnp.asarray(v) for k, v in TARGETS.items()})
  assert set(ref) == set(losses), (sorted(ref), sorted(losses))
  for k, v in ref.items():
    assert abs(float(losses[k]) - v) <= 1e-4 * abs(v), (k, float(losses[k]), v)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_model_matches_torchvision(name):
  run_cases(name, range(2), check_eval)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_model_losses_match_torchvision(name):
  for seed in range(2):
    check_train(name, seed)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_resnet50_model_matches_torchvision(name):
  run_cases(name, range(5), check_eval)
  check_train(name, 0)


def test_converter_tells_v1_from_v2():
  state = torch_model("retinanet_resnet18_fpn", 0).state_dict()
  with pytest.raises(ValueError, match="torchvision's retinanet_resnet18_fpn .*without "
                                       "GroupNorm.*not retinanet_resnet18_fpn_v2"):
    load("retinanet_resnet18_fpn_v2", state)
  with pytest.raises(ValueError, match="has no 'head.classification_head.cls_logits.weight'"):
    load("retinanet_resnet18_fpn", {k: v for k, v in state.items() if "cls_logits" not in k})
  with pytest.raises(ValueError, match="fcos_resnet18_fpn: this state_dict is a torchvision "
                                       "RetinaNet"):
    load("fcos_resnet18_fpn", state)
