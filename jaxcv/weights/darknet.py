"""Darknet `.weights` files <-> jaxcv variables of a darknet cfg (`Darknet`, `yolov3`,
`yolov3_tiny`: parameters `layer{i}/conv`, `layer{i}/bn`).

    cfg = parse_cfg(YOLOV3_CFG)
    variables = read_weights("yolov3.weights", cfg)   # {"params": ..., "batch_stats": ...}
    write_weights("copy.weights", variables, cfg, header=read_header("yolov3.weights"))

The format (darknet's `load_weights_upto` / `save_weights_upto`, and pytorchyolo's
`load_darknet_weights`): a header of int32 `major`, `minor`, `revision`, then `seen` (images
trained on) as int64 when `major * 10 + minor >= 2` (and both < 1000), else as int32; then
little-endian float32 values, per [convolutional] layer in cfg order: with BatchNorm its
bias (beta), scale (gamma), running mean, running variance, without it the conv bias; then
the kernel in `(out, in, kh, kw)` order (jaxcv's kernel is `(kh, kw, in, out)`). Nothing
else: a file holds exactly `num_weights(cfg)` floats (`upto` reads the first layers only,
as darknet's `darknet53.conv.74`). pytorchyolo reads the header as five int32 (major 0,
minor 2 files, the published ones) and writes whatever header it read.

Errors (`DarknetWeightsError`, a ValueError): a file too short or too long (how many float32
values the cfg needs and how many there are), a header that is cut short or names a version
this does not read (major or minor >= 1000: darknet's transposed-matrix files, negative
values); in `write_weights`, a variable missing or of the wrong shape, naming it.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxcv.models.detection.backbone.darknet_cfg import DarknetCfg, num_weights, parse_cfg


class DarknetWeightsError(ValueError):
  """A `.weights` file (or variables) that does not fit the cfg."""


class Header(NamedTuple):
  major: int = 0
  minor: int = 2
  revision: int = 0
  seen: int = 0

  @property
  def seen_is_int64(self) -> bool:
    return self.major * 10 + self.minor >= 2 and self.major < 1000 and self.minor < 1000

  @property
  def nbytes(self) -> int:
    return 12 + (8 if self.seen_is_int64 else 4)


def _bytes(src) -> bytes:
  if isinstance(src, (bytes, bytearray, memoryview)):
    return bytes(src)
  if isinstance(src, io.IOBase) or hasattr(src, "read"):
    return src.read()
  return Path(src).read_bytes()


def _name(src) -> str:
  return "<bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else str(src)


def _cfg(layers) -> DarknetCfg:
  return parse_cfg(layers) if isinstance(layers, str) else layers


def _header(data: bytes, name: str) -> Header:
  if len(data) < 12:
    raise DarknetWeightsError(f"{name}: {len(data)} bytes, shorter than a darknet header "
                              "(int32 major, minor, revision, then seen)")
  major, minor, revision = struct.unpack("<3i", data[:12])
  if major < 0 or minor < 0 or revision < 0:
    raise DarknetWeightsError(f"{name}: header version {major}.{minor}.{revision} has a "
                              "negative number: not a darknet .weights file")
  if major >= 1000 or minor >= 1000:
    raise DarknetWeightsError(f"{name}: header version {major}.{minor} (>= 1000) marks "
                              "darknet's transposed weights, which are not read here")
  h = Header(major, minor, revision, 0)
  if len(data) < h.nbytes:
    raise DarknetWeightsError(f"{name}: header cut short ({len(data)} bytes; version "
                              f"{major}.{minor} needs {h.nbytes})")
  seen = struct.unpack("<q" if h.seen_is_int64 else "<i", data[12:h.nbytes])[0]
  return h._replace(seen=int(seen))


def read_header(src) -> Header:
  """The header of a `.weights` file (path, bytes or binary file object)."""
  return _header(_bytes(src), _name(src))


def _conv_layers(cfg: DarknetCfg, upto: int | None):
  return [l for l in cfg.conv_layers if upto is None or l["index"] < upto]


def _count(layers) -> int:
  return num_weights(DarknetCfg({}, tuple(layers)))


def read_weights(src, layers, upto: int | None = None) -> dict[str, Any]:
  """`{"params": {layer{i}: {"conv": {"kernel"[, "bias"]}[, "bn": {"scale", "bias"}]}},
  "batch_stats": {layer{i}: {"bn": {"mean", "var"}}}}` (NumPy float32) from a darknet
  `.weights` file (path, bytes or binary file object) for `layers` (a `DarknetCfg` or cfg
  text). `upto`: only the [convolutional] layers with index < upto (a backbone file such as
  `darknet53.conv.74`); the file must then hold exactly those."""
  cfg = _cfg(layers)
  data, name = _bytes(src), _name(src)
  header = _header(data, name)
  body = data[header.nbytes:]
  convs = _conv_layers(cfg, upto)
  need = _count(convs)
  found = len(body) // 4
  extra = len(body) % 4
  if found != need or extra:
    what = "too short" if found < need else "too long"
    tail = f" and {extra} stray bytes" if extra else ""
    scope = f"its {len(convs)} convolutional layers" + (f" before layer {upto}" if upto
                                                        is not None else "")
    raise DarknetWeightsError(
        f"{name}: the file is {what} for the cfg: {scope} need {need} float32 values after "
        f"the {header.nbytes}-byte header; found {found}{tail}")
  values = np.frombuffer(body, dtype="<f4").astype(np.float32)
  params: dict[str, Any] = {}
  stats: dict[str, Any] = {}
  ptr = 0

  def take(n: int) -> np.ndarray:
    nonlocal ptr
    out = values[ptr:ptr + n]
    ptr += n
    return out

  for l in convs:
    f, c, k = l["filters"], l["in_channels"], l["size"]
    key = f"layer{l['index']}"
    p: dict[str, Any] = {}
    if l["batch_normalize"]:
      bias, scale, mean, var = take(f), take(f), take(f), take(f)
      p["bn"] = {"scale": scale.copy(), "bias": bias.copy()}
      stats[key] = {"bn": {"mean": mean.copy(), "var": var.copy()}}
      conv = {}
    else:
      conv = {"bias": take(f).copy()}
    conv["kernel"] = np.ascontiguousarray(take(f * c * k * k).reshape(f, c, k, k)
                                          .transpose(2, 3, 1, 0))
    p["conv"] = conv
    params[key] = p
  return {"params": params, "batch_stats": stats}


def _leaf(tree, path: tuple[str, ...], shape: tuple[int, ...]) -> np.ndarray:
  node = tree
  for part in path:
    if not hasattr(node, "__getitem__") or part not in node:
      raise DarknetWeightsError(f"variables have no {'/'.join(path)} (shape {shape}) that the "
                                "cfg needs")
    node = node[part]
  v = np.asarray(node, np.float32)
  if v.shape != shape:
    raise DarknetWeightsError(f"variables {'/'.join(path)} has shape {v.shape}; the cfg needs "
                              f"{shape}")
  return v


def write_weights(path, variables: dict[str, Any], layers, header: Header | tuple = Header(),
                  upto: int | None = None) -> int:
  """Writes `variables` (`params`, `batch_stats` as `read_weights` gives them) for `layers`
  to a darknet `.weights` file at `path` (or a binary file object); `header` a `Header` or
  `(major, minor, revision, seen)` (default 0.2.0, seen 0: int64 `seen`, the layout of the
  published files and of pytorchyolo). Returns the bytes written."""
  cfg = _cfg(layers)
  h = Header(*header)
  if h.major < 0 or h.minor < 0 or h.revision < 0 or h.major >= 1000 or h.minor >= 1000:
    raise DarknetWeightsError(f"header version {h.major}.{h.minor}.{h.revision} cannot be "
                              "written (each must be in 0..999)")
  params = variables.get("params", {})
  stats = variables.get("batch_stats", {})
  chunks = [struct.pack("<3i", h.major, h.minor, h.revision),
            struct.pack("<q" if h.seen_is_int64 else "<i", h.seen)]
  for l in _conv_layers(cfg, upto):
    f, c, k = l["filters"], l["in_channels"], l["size"]
    key = f"layer{l['index']}"
    if l["batch_normalize"]:
      parts = [_leaf(params, (key, "bn", "bias"), (f,)),
               _leaf(params, (key, "bn", "scale"), (f,)),
               _leaf(stats, (key, "bn", "mean"), (f,)),
               _leaf(stats, (key, "bn", "var"), (f,))]
    else:
      parts = [_leaf(params, (key, "conv", "bias"), (f,))]
    kernel = _leaf(params, (key, "conv", "kernel"), (k, k, c, f))
    parts.append(kernel.transpose(3, 2, 0, 1))
    chunks += [np.ascontiguousarray(p, "<f4").tobytes() for p in parts]
  data = b"".join(chunks)
  if hasattr(path, "write"):
    path.write(data)
  else:
    Path(path).write_bytes(data)
  return len(data)


def random_variables(layers, seed: int = 0, upto: int | None = None) -> dict[str, Any]:
  """Random variables for `layers` in `read_weights`' layout (kernels ~ N(0, 1 / fan_in),
  biases and BN parameters random, running variances positive): what the parity tests
  write to a `.weights` file (a fresh BatchNorm is the identity and would hide a reader that
  drops it)."""
  cfg = _cfg(layers)
  rng = np.random.default_rng(seed)
  params: dict[str, Any] = {}
  stats: dict[str, Any] = {}
  for l in _conv_layers(cfg, upto):
    f, c, k = l["filters"], l["in_channels"], l["size"]
    key = f"layer{l['index']}"
    kernel = (rng.standard_normal((k, k, c, f)) / np.sqrt(c * k * k)).astype(np.float32)
    if l["batch_normalize"]:
      params[key] = {"conv": {"kernel": kernel},
                     "bn": {"scale": rng.normal(1.0, 0.2, f).astype(np.float32),
                            "bias": rng.normal(0.0, 0.2, f).astype(np.float32)}}
      stats[key] = {"bn": {"mean": rng.normal(0.0, 0.3, f).astype(np.float32),
                           "var": rng.uniform(0.5, 2.0, f).astype(np.float32)}}
    else:
      params[key] = {"conv": {"kernel": kernel,
                              "bias": rng.normal(0.0, 0.2, f).astype(np.float32)}}
  return {"params": params, "batch_stats": stats}
