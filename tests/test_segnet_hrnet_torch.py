"""HRNet vs a PyTorch model built as the official HRNet-Semantic-Segmentation `seg_hrnet.py`
(module names and state-dict keys as there), with random weights and random BatchNorm
statistics, converted by key; and SegNet's pool/unpool pair vs torch's max_pool2d/max_unpool2d.

The torch model follows seg_hrnet.py's `_make_layer`, `_make_transition_layer`,
`HighResolutionModule` (branches, `_make_fuse_layers`, fusion with `F.interpolate` bilinear)
and `last_layer`, plus the bilinear resize to the input size that its test code applies.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from torch_reference import import_torchvision

from jaxcv.layers.pooling import max_pool_with_indices, max_unpool
from jaxcv.models import hrnet

torch, _ = import_torchvision()
nn, F = torch.nn, torch.nn.functional

W, STEM, MODULES, BLOCKS = 4, 8, (1, 1, 2, 1), (2, 2, 1, 2)


def conv3x3(cin, cout, stride=1):
  return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class Basic(nn.Module):
  def __init__(self, cin, c):
    super().__init__()
    self.conv1, self.bn1 = conv3x3(cin, c), nn.BatchNorm2d(c)
    self.conv2, self.bn2 = conv3x3(c, c), nn.BatchNorm2d(c)

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    return F.relu(self.bn2(self.conv2(y)) + x)


class Bottleneck(nn.Module):
  def __init__(self, cin, c):
    super().__init__()
    self.conv1, self.bn1 = nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c)
    self.conv2, self.bn2 = conv3x3(c, c), nn.BatchNorm2d(c)
    self.conv3, self.bn3 = nn.Conv2d(c, 4 * c, 1, bias=False), nn.BatchNorm2d(4 * c)
    self.downsample = (nn.Sequential(nn.Conv2d(cin, 4 * c, 1, bias=False),
                                     nn.BatchNorm2d(4 * c)) if cin != 4 * c else None)

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class HRModule(nn.Module):
  def __init__(self, ch, blocks, align):
    super().__init__()
    self.align = align
    self.branches = nn.ModuleList(
        nn.Sequential(*[Basic(c, c) for _ in range(blocks)]) for c in ch)
    self.fuse_layers = None
    if len(ch) > 1:
      fuse = []
      for i in range(len(ch)):
        row = []
        for j in range(len(ch)):
          if j > i:
            row.append(nn.Sequential(nn.Conv2d(ch[j], ch[i], 1, 1, 0, bias=False),
                                     nn.BatchNorm2d(ch[i])))
          elif j == i:
            row.append(None)
          else:
            convs = []
            for k in range(i - j):
              out = ch[i] if k == i - j - 1 else ch[j]
              layers = [conv3x3(ch[j], out, 2), nn.BatchNorm2d(out)]
              convs.append(nn.Sequential(*layers, *([nn.ReLU()] if k < i - j - 1 else [])))
            row.append(nn.Sequential(*convs))
        fuse.append(nn.ModuleList(row))
      self.fuse_layers = nn.ModuleList(fuse)

  def forward(self, x):
    x = [b(xi) for b, xi in zip(self.branches, x)]
    if self.fuse_layers is None:
      return x
    out = []
    for i in range(len(self.fuse_layers)):
      y = x[0] if i == 0 else self.fuse_layers[i][0](x[0])
      for j in range(1, len(x)):
        if i == j:
          y = y + x[j]
        elif j > i:
          y = y + F.interpolate(self.fuse_layers[i][j](x[j]), size=x[i].shape[-2:],
                                mode="bilinear", align_corners=self.align)
        else:
          y = y + self.fuse_layers[i][j](x[j])
      out.append(F.relu(y))
    return out


def transition(pre, cur):
  layers = []
  for i, c in enumerate(cur):
    if i < len(pre):
      layers.append(nn.Sequential(conv3x3(pre[i], c), nn.BatchNorm2d(c), nn.ReLU())
                    if pre[i] != c else None)
    else:
      convs = []
      for j in range(i + 1 - len(pre)):
        out = c if j == i - len(pre) else pre[-1]
        convs.append(nn.Sequential(conv3x3(pre[-1], out, 2), nn.BatchNorm2d(out), nn.ReLU()))
      layers.append(nn.Sequential(*convs))
  return nn.ModuleList(layers)


class SegHRNet(nn.Module):
  def __init__(self, num_classes, align):
    super().__init__()
    self.align = align
    self.conv1, self.bn1 = nn.Conv2d(3, STEM, 3, 2, 1, bias=False), nn.BatchNorm2d(STEM)
    self.conv2, self.bn2 = nn.Conv2d(STEM, STEM, 3, 2, 1, bias=False), nn.BatchNorm2d(STEM)
    self.layer1 = nn.Sequential(*[Bottleneck(STEM if k == 0 else 4 * STEM, STEM)
                                  for k in range(BLOCKS[0])])
    pre = [4 * STEM]
    for s in (2, 3, 4):
      ch = [W * 2**i for i in range(s)]
      setattr(self, f"transition{s - 1}", transition(pre, ch))
      setattr(self, f"stage{s}", nn.Sequential(*[HRModule(ch, BLOCKS[s - 1], align)
                                                 for _ in range(MODULES[s - 1])]))
      pre = ch
    c = sum(pre)
    self.last_layer = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(),
                                    nn.Conv2d(c, num_classes, 1))

  def forward(self, img):
    x = F.relu(self.bn1(self.conv1(img)))
    x = self.layer1(F.relu(self.bn2(self.conv2(x))))
    ys = [x]
    for s in (2, 3, 4):
      trans = getattr(self, f"transition{s - 1}")
      # Kept branch i: transition(y_i) or y_i itself; new branch: from the last one.
      xs = [ys[i] if t is None else t(ys[i] if i < len(ys) else ys[-1])
            for i, t in enumerate(trans)]
      ys = getattr(self, f"stage{s}")(xs)
    size = ys[0].shape[-2:]
    x = torch.cat([ys[0]] + [F.interpolate(y, size=size, mode="bilinear",
                                           align_corners=self.align) for y in ys[1:]], 1)
    x = self.last_layer(x)
    return F.interpolate(x, size=img.shape[-2:], mode="bilinear", align_corners=self.align)


def flax_path(key: str) -> tuple[list[str], str]:
  """An official seg_hrnet state-dict key -> (jaxcv module path, torch leaf name), e.g.
  `stage3.1.fuse_layers.2.0.1.0.weight` -> `stage3/module2/fuse3_1/conv2`, `weight`.
  torch's 0-based Sequential indices become jaxcv's 1-based names."""
  *t, leaf = key.split(".")
  n = [int(v) + 1 if v.isdigit() else v for v in t]  # 1-based
  kind = lambda i: "conv" if i == 1 else "bn"  # position in Sequential(conv, bn[, relu])
  if t[0] in ("conv1", "conv2", "bn1", "bn2"):
    return ["stem", t[0]], leaf
  if t[0] == "layer1":  # layer1.K.convI / layer1.K.downsample.{0,1}
    name = t[2] if t[2] != "downsample" else f"downsample_{kind(n[3])}"
    return ["stage1", f"block{n[1]}", name], leaf
  if t[0].startswith("transition"):
    stage = f"stage{int(t[0][-1]) + 1}"
    if len(t) == 3:  # a kept branch: transitionT.I.{0 conv, 1 bn}
      return [stage, f"transition{n[1]}", f"{kind(n[2])}1"], leaf
    return [stage, f"transition{n[1]}", f"{kind(n[3])}{n[2]}"], leaf  # new: .K.{0, 1}
  if t[0].startswith("stage"):
    base = [t[0], f"module{n[1]}"]
    if t[2] == "branches":  # stageS.M.branches.I.K.convJ
      return base + [f"branch{n[3]}", f"block{n[4]}", t[5]], leaf
    fuse = f"fuse{n[3]}_{n[4]}"  # stageS.M.fuse_layers.I.J...
    if len(t) == 6:  # j > i: .{0 conv, 1 bn}
      return base + [fuse, kind(n[5])], leaf
    return base + [fuse, f"{kind(n[6])}{n[5]}"], leaf  # j < i: chain K .{0, 1}
  if t[0] == "last_layer":
    return {1: ["neck", "conv"], 2: ["neck", "bn"], 4: ["head"]}[n[1]], leaf
  raise KeyError(key)


def convert(state):
  """Official seg_hrnet state dict -> jaxcv HRNet variables (OIHW kernels -> HWIO)."""
  params, stats = {}, {}
  for key, value in state.items():
    if key.endswith("num_batches_tracked"):
      continue
    parts, leaf = flax_path(key)
    v = value.detach().numpy()
    if leaf == "weight" and v.ndim == 4:
      tree, name, v = params, "kernel", v.transpose(2, 3, 1, 0)
    else:
      tree, name = {"weight": (params, "scale"), "bias": (params, "bias"),
                    "running_mean": (stats, "mean"), "running_var": (stats, "var")}[leaf]
    node = tree
    for p in parts:
      node = node.setdefault(p, {})
    node[name] = jnp.asarray(v)
  return {"params": params, "batch_stats": stats}


def randomise(model, seed):
  """Random weights and BatchNorm affine parameters and running statistics (a fresh BN is
  the identity and would hide a converter that drops it)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
        if m.bias is not None:
          m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
      elif isinstance(m, nn.BatchNorm2d):
        c = m.num_features
        m.weight.copy_(torch.rand(c, generator=g) + 0.5)
        m.bias.copy_(torch.randn(c, generator=g) * 0.1)
        m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
        m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
  return model.eval()


def relative_error(ours, ref):
  return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


@pytest.mark.parametrize("align, size", [(True, (36, 44)), (False, (64, 32))])
def test_hrnet_matches_the_official_layout_in_torch(align, size):
  ref = randomise(SegHRNet(num_classes=5, align=align), seed=0)
  ours = hrnet.HRNet(width=W, stem_width=STEM, num_modules=MODULES, num_blocks=BLOCKS,
                     num_classes=5, align_corners=align)
  x = torch.rand((2, 3, *size), generator=torch.Generator().manual_seed(1))
  variables = convert(ref.state_dict())
  want = jax.eval_shape(ours.init, jax.random.key(0), jnp.zeros((1, *size, 3)))
  assert jax.tree.structure(variables) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(want)):
    assert a.shape == b.shape
  with torch.no_grad():
    expect = ref(x).numpy()
  apply = jax.jit(ours.apply, compiler_options={"xla_backend_optimization_level": 0})
  got, _ = apply(variables, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
  got = np.asarray(got).transpose(0, 3, 1, 2)
  err = relative_error(got, expect)
  print(f"HRNet vs official layout in torch, align_corners={align}, {size}: rel err {err:.1e}")
  assert err <= 1e-4


@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (1, 3, 32, 16)])
def test_segnet_pool_unpool_pair_matches_torch(shape):
  # What SegNet does at each stage: 2x2/2 max pool with indices, then unpool to the size.
  x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
  pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
  want = F.max_unpool2d(pooled * 2, idx, 2, 2, output_size=shape[-2:])
  ours_p, ours_i = max_pool_with_indices(jnp.asarray(x.numpy().transpose(0, 2, 3, 1)), 2, 2)
  np.testing.assert_array_equal(np.asarray(ours_i).transpose(0, 3, 1, 2), idx.numpy())
  got = max_unpool(ours_p * 2, ours_i, shape[-2:])
  np.testing.assert_array_equal(np.asarray(got).transpose(0, 3, 1, 2), want.numpy())
