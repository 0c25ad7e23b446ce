"""Panoptic FPN's parts: the semantic head (detectron2's SemSegFPNHead), its loss and labels,
and the panoptic merge (detectron2's combine_semantic_and_instance_outputs) against a NumPy
copy of detectron2's loop."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcv.data
from jaxcv.data.shapes_scene import GROUND_CLASS, NUM_CLASSES, WALL_CLASS
from jaxcv.metrics import panoptic as pq_metric
from jaxcv.models.detection.semantic.panoptic_merge import (
    SEGMENT_KEYS, combine_batch, combine_semantic_and_instance_outputs, metric_segments)
from jaxcv.models.detection.semantic.sem_seg_fpn import (
    SHAPES_STUFF_CLASSES, SemSegFPNHead, head_length, sem_seg_loss, semantic_labels,
    semantic_targets)

STUFF = (11, 12, 13)  # category ids of stuff labels 1..3 in the merge tests
D, H, W = 6, 12, 12


# --- the merge -----------------------------------------------------------------------------

def reference_merge(masks, scores, classes, valid, semantic, stuff_classes, overlap, area_t,
                    score_t):
  """detectron2's loop on the valid rows, in NumPy; stuff labels restricted to 1..S."""
  rows = np.nonzero(valid)[0]
  order = rows[np.argsort(-scores[rows], kind="stable")]
  pan = np.zeros(semantic.shape, np.int32)
  cur, segs, hits = 0, [], set()
  for i in order:
    score = float(scores[i])
    if score < score_t:
      hits.add("score_break")
      break
    mask = masks[i].astype(bool)
    area = int(mask.sum())
    if area == 0:
      hits.add("empty")
      continue
    inter = int((mask & (pan > 0)).sum())
    if inter * 1.0 / area > overlap:
      hits.add("overlap_skip")
      continue
    if inter > 0:
      hits.add("partial")
      mask = mask & (pan == 0)
    cur += 1
    pan[mask] = cur
    segs.append((cur, int(classes[i]), True, score, int(mask.sum()), int(i)))
  for label in np.unique(semantic).tolist():
    if label == 0 or label > len(stuff_classes):
      continue
    mask = (semantic == label) & (pan == 0)
    area = int(mask.sum())
    if area < area_t:
      hits.add("small_stuff")
      continue
    cur += 1
    pan[mask] = cur
    segs.append((cur, stuff_classes[label - 1], False, 0.0, area, -1))
  return pan, segs, hits


def random_image(rng):
  masks = np.zeros((D, H, W), bool)
  for d in range(D):
    if rng.random() < 0.15:
      continue  # an empty mask
    r0, c0 = rng.integers(0, H - 2, 2)
    r1, c1 = r0 + rng.integers(1, 7), c0 + rng.integers(1, 7)
    masks[d, r0:r1, c0:c1] = True
  scores = rng.permutation(np.linspace(0.05, 0.95, D)).astype(np.float32)  # no ties
  scores += rng.uniform(-0.01, 0.01, D).astype(np.float32)
  classes = rng.integers(1, 5, D).astype(np.int32)
  valid = rng.random(D) < 0.85
  # Labels 0..S, and S + 1 (no stuff class: left void) on a few pixels.
  semantic = rng.choice(len(STUFF) + 2, (H, W), p=[0.3, 0.2, 0.2, 0.2, 0.1]).astype(np.int32)
  semantic[: rng.integers(0, H)] = rng.integers(0, len(STUFF) + 1)  # a large stuff region
  return masks, scores, classes, valid, semantic


def check_against_reference(pan, segs, ref_pan, ref_segs):
  np.testing.assert_array_equal(np.asarray(pan), ref_pan)
  n = len(ref_segs)
  got = {k: np.asarray(v) for k, v in segs.items()}
  assert set(got) == set(SEGMENT_KEYS)
  assert got["segment_valid"][:n].all() and not got["segment_valid"][n:].any()
  for j, (sid, cat, thing, score, area, inst) in enumerate(ref_segs):
    assert got["segment_ids"][j] == sid == j + 1
    assert got["segment_classes"][j] == cat
    assert got["segment_isthing"][j] == thing
    assert got["segment_scores"][j] == np.float32(score)
    assert got["segment_area"][j] == area
    assert got["segment_instance"][j] == inst
  for k in ("segment_ids", "segment_classes", "segment_scores", "segment_area"):
    assert not got[k][n:].any()
  assert (got["segment_instance"][n:] == -1).all() and not got["segment_isthing"][n:].any()


THRESHOLDS = [(0.5, 4096.0, 0.5), (0.5, 10.0, 0.5), (0.3, 1.0, 0.2), (1.0, 0.0, 0.0),
              (0.0, 30.0, 0.6)]


def test_merge_matches_detectron2_loop_vmapped_under_jit():
  rng = np.random.default_rng(0)
  b = 16
  images = [random_image(rng) for _ in range(b)]
  masks, scores, classes, valid, semantic = (np.stack(x) for x in zip(*images))

  @jax.jit
  def merge(masks, scores, classes, valid, semantic, overlap, area_t, score_t):
    return combine_batch(masks, scores, classes, valid, semantic, stuff_classes=STUFF,
                         overlap_threshold=overlap, stuff_area_thresh=area_t,
                         instances_score_thresh=score_t)

  all_hits = set()
  for overlap, area_t, score_t in THRESHOLDS:  # traced thresholds: one compile
    pan, segs = merge(masks, scores, classes, valid, semantic, overlap, area_t, score_t)
    assert pan.shape == (b, H, W) and pan.dtype == jnp.int32
    assert all(v.shape == (b, D + len(STUFF)) for v in segs.values())
    for i in range(b):
      ref_pan, ref_segs, hits = reference_merge(masks[i], scores[i], classes[i], valid[i],
                                                semantic[i], STUFF, overlap, area_t, score_t)
      all_hits |= hits
      check_against_reference(pan[i], {k: v[i] for k, v in segs.items()}, ref_pan, ref_segs)
  assert merge._cache_size() == 1
  assert all_hits >= {"score_break", "empty", "overlap_skip", "partial", "small_stuff"}
  assert (~valid).any()


def test_merge_one_image_defaults_and_zero_pixel_segments():
  merge = jax.jit(lambda m, s, c, v, sem, area_t: combine_semantic_and_instance_outputs(
      m, s, c, v, sem, stuff_classes=(7, 8), stuff_area_thresh=area_t))
  # A hand-made image: instance 0 (score .9) a 4x4 square, instance 1 (.8) overlapping it by
  # 2 of its 8 pixels (kept, painted on the rest), instance 2 (.7) inside instance 0 (skipped),
  # instance 3 (.4, below 0.5), padding row 4 with a high score.
  masks = np.zeros((5, 8, 8), bool)
  masks[0, 0:4, 0:4] = True
  masks[1, 3:5, 2:6] = True
  masks[2, 1:3, 1:3] = True
  masks[3, 6:8, 6:8] = True
  masks[4] = True
  scores = np.array([0.9, 0.8, 0.7, 0.4, 0.99], np.float32)
  classes = np.array([1, 2, 3, 4, 5], np.int32)
  valid = np.array([True, True, True, True, False])
  semantic = np.zeros((8, 8), np.int32)
  semantic[5:] = 2
  pan, segs = merge(masks, scores, classes, valid, semantic, 4.0)
  expect = np.zeros((8, 8), np.int32)
  expect[0:4, 0:4] = 1
  expect[4, 2:6] = 2
  expect[3, 4:6] = 2
  expect[5:] = 3
  np.testing.assert_array_equal(np.asarray(pan), expect)
  np.testing.assert_array_equal(segs["segment_ids"], [1, 2, 3, 0, 0, 0, 0])
  np.testing.assert_array_equal(segs["segment_classes"][:3], [1, 2, 8])
  np.testing.assert_array_equal(segs["segment_area"][:3], [16, 6, 24])
  np.testing.assert_array_equal(segs["segment_instance"][:3], [0, 1, -1])
  # All rows valid: row 4 (score .99, the whole image) comes first and covers every other
  # mask; detectron2's default stuff area (4096 > 64 pixels) leaves no stuff segment.
  pan, segs = merge(masks, scores, classes, np.ones(5, bool), semantic, 4096.0)
  assert (np.asarray(pan) == 1).all() and int(segs["segment_valid"].sum()) == 1
  assert int(segs["segment_instance"][0]) == 4 and int(segs["segment_classes"][0]) == 5
  # stuff_area_thresh 0: label 2 (present, every pixel taken) still gets a segment, as in
  # detectron2; label 1 is absent from the map and gets none. metric_segments drops it.
  pan, segs = merge(masks, scores, classes, np.arange(5) == 4, np.full((8, 8), 2, np.int32),
                    0.0)
  np.testing.assert_array_equal(segs["segment_ids"], [1, 2, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(segs["segment_area"], [64, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(metric_segments(segs)["segment_valid"],
                                [True] + [False] * 6)
  assert merge._cache_size() == 1


def test_merge_output_feeds_the_panoptic_metric():
  rng = np.random.default_rng(1)
  images = [random_image(rng) for _ in range(3)]
  masks, scores, classes, valid, semantic = (np.stack(x) for x in zip(*images))
  categories = {**{c: True for c in range(1, 5)}, **{c: False for c in STUFF}}
  cat_ids = list(categories)

  @jax.jit
  def merge_and_count(masks, scores, classes, valid, semantic):
    pan, segs = combine_batch(masks, scores, classes, valid, semantic, stuff_classes=STUFF,
                              overlap_threshold=0.5, stuff_area_thresh=4.0,
                              instances_score_thresh=0.3)
    # The prediction against itself as ground truth: every segment a TP with IoU 1.
    return pan, segs, pq_metric.batch_counts(pan, segs, pan, segs, cat_ids)

  pan, segs, counts = merge_and_count(masks, scores, classes, valid, semantic)
  n = int(np.asarray(segs["segment_valid"]).sum())
  assert int(counts["tp"].sum()) == n > 0
  assert int(counts["fp"].sum()) == int(counts["fn"].sum()) == 0
  host = pq_metric.update(pq_metric.init(categories), np.asarray(pan),
                          metric_segments(jax.device_get(segs)), np.asarray(pan),
                          metric_segments(jax.device_get(segs)), categories)
  np.testing.assert_array_equal(host["tp"], np.asarray(counts["tp"]))


def test_merge_bad_inputs():
  masks = np.zeros((3, 4, 4), bool)
  s, c, v, sem = np.zeros(3, np.float32), np.ones(3, np.int32), np.ones(3, bool), np.zeros(
      (4, 4), np.int32)
  kw = {"stuff_classes": (5,)}
  ok = combine_semantic_and_instance_outputs
  out = jax.eval_shape(lambda *a: ok(*a, **kw), masks, s, c, None, sem)  # valid None: all
  assert out[0].shape == (4, 4) and out[1]["segment_ids"].shape == (4,)
  with pytest.raises(ValueError, match=r"masks must be \[D, H, W\]"):
    ok(masks[0], s, c, v, sem, **kw)
  with pytest.raises(ValueError, match=r"scores has shape \(2,\)"):
    ok(masks, s[:2], c, v, sem, **kw)
  with pytest.raises(ValueError, match="classes has shape"):
    ok(masks, s, c[:2], v, sem, **kw)
  with pytest.raises(ValueError, match="valid has shape"):
    ok(masks, s, c, v[:1], sem, **kw)
  with pytest.raises(ValueError, match="semantic must be an integer"):
    ok(masks, s, c, v, sem[:3], **kw)
  with pytest.raises(ValueError, match="semantic must be an integer"):
    ok(masks, s, c, v, sem.astype(np.float32), **kw)
  with pytest.raises(ValueError, match="threshold mask probabilities"):
    ok(masks.astype(np.float32), s, c, v, sem, **kw)
  with pytest.raises(ValueError, match="classes must be integers"):
    ok(masks, s, c.astype(np.float32), v, sem, **kw)
  with pytest.raises(ValueError, match="stuff_classes must be a sequence"):
    ok(masks, s, c, v, sem, stuff_classes=2)
  with pytest.raises(ValueError, match="leading batch axis"):
    combine_batch(masks[None], s[None], c[None], v[None], np.stack([sem, sem]), **kw)


# --- the head ------------------------------------------------------------------------------

def fpn_maps(seed=0, b=2, size=64, channels=32, strides=(4, 8, 16, 32)):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(b, size // s, size // s, channels)).astype(np.float32)
          for s in strides]


@pytest.fixture(scope="module")
def head_setup():
  """One head, its maps of a 64x64 input, its init, and one compiled apply for the tests."""
  feats = fpn_maps()
  head = SemSegFPNHead(num_classes=3, conv_dims=32)
  variables = jax.jit(head.init)(jax.random.PRNGKey(1), feats)
  return head, feats, variables, jax.jit(head.apply)


def test_head_shapes_blocks_and_init(head_setup):
  assert [head_length(s) for s in (4, 8, 16, 32)] == [1, 1, 2, 3]
  _, feats, variables, apply = head_setup
  out = apply(variables, feats)
  assert out.shape == (2, 64, 64, 3) and out.dtype == jnp.float32
  params = variables["params"]
  assert sorted(params) == ["p2_0", "p3_0", "p4_0", "p4_1", "p5_0", "p5_1", "p5_2",
                            "predictor"]
  for name in params:
    if name != "predictor":
      assert sorted(params[name]) == ["conv", "norm"]
      assert sorted(params[name]["conv"]) == ["kernel"]  # no bias before GroupNorm
      assert params[name]["conv"]["kernel"].shape == (3, 3, 32, 32)
  assert params["predictor"]["kernel"].shape == (1, 1, 32, 3)
  assert not params["predictor"]["bias"].any()
  # c2_msra_fill: normal with std sqrt(2 / fan_out), fan_out = 3 * 3 * 32.
  k = np.concatenate([np.asarray(params[n]["conv"]["kernel"]).ravel() for n in params
                      if n != "predictor"])
  assert abs(k.std() / np.sqrt(2 / 288) - 1) < 0.05 and abs(k.mean()) < 0.01
  # Without a norm the convs have a bias and no norm; conv_dims need not divide by 32.
  plain = SemSegFPNHead(num_classes=2, conv_dims=8, norm=None)
  pv = jax.eval_shape(plain.init, jax.random.PRNGKey(2), feats)["params"]
  assert sorted(pv["p4_1"]) == ["conv"] and sorted(pv["p4_1"]["conv"]) == ["bias", "kernel"]


def test_head_matches_torch_copy_of_detectron2(head_setup):
  torch = pytest.importorskip("torch")
  from torch import nn
  from torch.nn import functional as F

  strides, dims, classes = (4, 8, 16, 32), 32, 3
  _, feats, variables, apply = head_setup
  # GroupNorm affine params non-trivial, so that the map of `norm` is exercised.
  rng = np.random.default_rng(5)
  params = jax.tree_util.tree_map(lambda x: np.asarray(x) + rng.normal(0, 0.1, x.shape),
                                  jax.device_get(variables["params"]))
  out = np.asarray(apply({"params": params}, feats))

  # detectron2's SemSegFPNHead structure (Conv2d + GroupNorm + ReLU, nn.Upsample in between).
  scale_heads = []
  for s in strides:
    level = int(np.log2(s))
    ops = []
    for k in range(head_length(s)):
      conv = nn.Conv2d(feats[0].shape[-1] if k == 0 else dims, dims, 3, padding=1,
                       bias=False)
      norm = nn.GroupNorm(32, dims)
      p = params[f"p{level}_{k}"]
      conv.weight.data = torch.tensor(np.transpose(p["conv"]["kernel"], (3, 2, 0, 1)),
                                      dtype=torch.float32)
      norm.weight.data = torch.tensor(p["norm"]["scale"], dtype=torch.float32)
      norm.bias.data = torch.tensor(p["norm"]["bias"], dtype=torch.float32)
      ops += [conv, norm, nn.ReLU()]
      if s != 4:
        ops.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    scale_heads.append(nn.Sequential(*ops))
  predictor = nn.Conv2d(dims, classes, 1)
  predictor.weight.data = torch.tensor(np.transpose(params["predictor"]["kernel"],
                                                    (3, 2, 0, 1)), dtype=torch.float32)
  predictor.bias.data = torch.tensor(params["predictor"]["bias"], dtype=torch.float32)
  with torch.no_grad():
    x = sum(h(torch.tensor(np.asarray(f).transpose(0, 3, 1, 2))) for h, f in
            zip(scale_heads, feats))
    ref = F.interpolate(predictor(x), scale_factor=4, mode="bilinear", align_corners=False)
  np.testing.assert_allclose(out, ref.numpy().transpose(0, 2, 3, 1), atol=2e-4, rtol=1e-4)


def test_head_bad_inputs():
  feats = fpn_maps(b=1)
  head = SemSegFPNHead(num_classes=3, conv_dims=32)
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="list of 4 maps"):
    jax.eval_shape(head.init, key, feats[:3])
  with pytest.raises(ValueError, match="NHWC"):
    jax.eval_shape(head.init, key, [f[0] for f in feats])
  with pytest.raises(ValueError, match="H_l \\* stride_l must agree"):
    jax.eval_shape(head.init, key, [feats[0], feats[1], feats[1], feats[3]])
  with pytest.raises(ValueError, match="common_stride \\* 2\\^k"):
    jax.eval_shape(SemSegFPNHead(num_classes=3, conv_dims=32, feature_strides=(4, 12)).init,
                   key, feats[:2])
  with pytest.raises(ValueError, match="divisible by 32"):
    jax.eval_shape(SemSegFPNHead(num_classes=3, conv_dims=48).init, key, feats)
  with pytest.raises(ValueError, match="norm must be"):
    jax.eval_shape(SemSegFPNHead(num_classes=3, norm="BN").init, key, feats)


# --- the loss and the labels ---------------------------------------------------------------

def test_sem_seg_loss_analytic():
  logits = jnp.array([[[[2.0, 0.0], [0.0, 1.0], [5.0, -5.0], [1.0, 1.0]]]])  # [1, 1, 4, 2]
  labels = jnp.array([[[0, 0, 255, 1]]])
  lse = lambda a, b: np.log(np.exp(a) + np.exp(b))
  expect = np.mean([lse(2, 0) - 2, lse(0, 1) - 0, lse(1, 1) - 1])
  np.testing.assert_allclose(sem_seg_loss(logits, labels), expect, rtol=1e-6)
  np.testing.assert_allclose(sem_seg_loss(logits, labels, loss_weight=0.5), expect / 2,
                             rtol=1e-6)
  # ignore_value other than 255: label 0 ignored, 255 is then out of range.
  np.testing.assert_allclose(sem_seg_loss(logits, jnp.array([[[0, 0, 0, 1]]]),
                                          ignore_value=0), lse(1, 1) - 1, rtol=1e-6)
  # All ignored: 0 and zero gradients, no NaN.
  ignored = jnp.full((1, 1, 4), 255)
  value, grad = jax.value_and_grad(sem_seg_loss)(logits, ignored)
  assert float(value) == 0.0 and not np.asarray(grad).any()
  with pytest.raises(ValueError, match=r"labels \[2\] are outside 0..1"):
    sem_seg_loss(logits, jnp.array([[[0, 2, 255, 1]]]))
  # Under jit out-of-range labels are ignored.
  np.testing.assert_allclose(jax.jit(sem_seg_loss)(logits, jnp.array([[[0, 0, 7, 1]]])),
                             np.mean([lse(2, 0) - 2, lse(0, 1), lse(1, 1) - 1]), rtol=1e-6)
  with pytest.raises(ValueError, match="logits \\[B, H, W, K\\]"):
    sem_seg_loss(logits, labels[0])
  with pytest.raises(ValueError, match="integers"):
    sem_seg_loss(logits, labels.astype(jnp.float32))


def test_semantic_labels_from_shapes():
  assert SHAPES_STUFF_CLASSES == (WALL_CLASS, GROUND_CLASS) == (NUM_CLASSES + 1,
                                                                NUM_CLASSES + 2)
  keys = ("panoptic", "segment_ids", "segment_classes", "segment_isthing", "semantic")
  ds = jaxcv.data.load("shapes", "train", image_size=64, keys=keys, split_sizes={"train": 4})
  examples = [ds.example(i) for i in range(4)]
  targets = jax.jit(semantic_targets)  # one compile per layout (example, batch)
  assert (np.asarray(semantic_targets(examples[0])) == targets(examples[0])).all()  # eager
  for ex in examples:
    labels = np.asarray(targets(ex))
    assert labels.shape == (64, 64) and labels.dtype == np.int32
    expect = np.full((64, 64), 255, np.int32)
    for sid, cls, thing, ok in zip(ex["segment_ids"], ex["segment_classes"],
                                   ex["segment_isthing"], ex["segment_valid"]):
      if ok:
        expect[ex["panoptic"] == sid] = 0 if thing else SHAPES_STUFF_CLASSES.index(cls) + 1
    np.testing.assert_array_equal(labels, expect)
    assert set(np.unique(labels)) <= {0, 1, 2} and (labels == 2).any()  # no void in shapes
    np.testing.assert_array_equal(labels == 0, ex["semantic"] > 0)  # things = instances
  batch = {k: np.stack([ex[k] for ex in examples]) for k in examples[0]}
  np.testing.assert_array_equal(targets(batch), [targets(ex) for ex in examples])


def test_semantic_labels_void_and_bad_inputs():
  pan = np.array([[0, 1, 2], [3, 4, 9]], np.int32)
  ids = np.array([1, 2, 3, 4, 0], np.int32)
  cls = np.array([1, 7, 6, 7, 0], np.int32)
  thing = np.array([True, False, False, False, False])
  valid = np.array([True, True, True, False, False])
  out = semantic_labels(pan, ids, cls, thing, valid, stuff_classes=(6, 7))
  # void -> 255, thing -> 0, class 7 -> 2, class 6 -> 1, invalid segment 4 and id 9 -> 255
  np.testing.assert_array_equal(out, [[255, 0, 2], [1, 255, 255]])
  with pytest.raises(ValueError, match=r"classes \[7\] not in stuff_classes"):
    semantic_labels(pan, ids, cls, thing, valid, stuff_classes=(6,))
  with pytest.raises(ValueError, match="segment_classes has shape"):
    semantic_labels(pan, ids, cls[:3], thing, valid, stuff_classes=(6, 7))
  with pytest.raises(ValueError, match="panoptic \\[H, W\\]"):
    semantic_labels(pan[None], ids, cls, thing, valid, stuff_classes=(6, 7))
  with pytest.raises(ValueError, match="missing"):
    semantic_targets({"panoptic": pan})
