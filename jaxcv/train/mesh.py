"""Device mesh and shardings: batch over `data`, parameters replicated or sharded over `model`.

The same code runs on one CPU, on one host with several accelerators and on many hosts:
`jax.devices()` spans every process, and global batches are assembled from each process's
local rows with `jax.make_array_from_process_local_data`.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcv.train import defaults

DATA_AXIS = "data"
MODEL_AXIS = "model"


def make_mesh(mesh_config: Mapping[str, Any] | None = None) -> Mesh:
  """Builds a mesh from `config.mesh`: `shape` maps axis names to sizes, -1 takes the rest.

  The default (`jaxcv.train.defaults`) puts every device on `data`. A second axis (`model`)
  is where large parameters go when `mesh.shard_params` is on.
  """
  shape = dict(defaults.section("mesh", mesh_config)["shape"])
  if DATA_AXIS not in shape:
    raise ValueError(f"mesh.shape must have a '{DATA_AXIS}' axis, got {shape}")
  devices = jax.devices()
  fixed = math.prod(v for v in shape.values() if v != -1)
  free = [k for k, v in shape.items() if v == -1]
  if len(free) > 1:
    raise ValueError(f"mesh.shape may have at most one -1 axis, got {shape}")
  if free:
    if len(devices) % fixed:
      raise ValueError(f"{len(devices)} devices do not divide into mesh axes {shape}")
    shape[free[0]] = len(devices) // fixed
  need = math.prod(shape.values())
  if need > len(devices) or (free and need != len(devices)):
    raise ValueError(f"mesh.shape {shape} needs {need} devices; there are {len(devices)}")
  # A fixed shape smaller than the machine uses the first devices (debugging, tests).
  grid = np.asarray(devices[:need]).reshape(tuple(shape.values()))
  return Mesh(grid, tuple(shape.keys()))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (example) axis over `data`, everything else replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def param_spec(shape: tuple[int, ...], mesh: Mesh, shard_params: bool,
               min_size: int) -> P:
  """PartitionSpec for one parameter (or optimizer-state) array.

  With `shard_params`, an array of at least `min_size` elements is split over `model` along
  its largest dimension that the axis size divides; smaller ones stay replicated. The rule
  looks only at the shape, so a momentum buffer is sharded exactly like its parameter.
  """
  n = mesh.shape.get(MODEL_AXIS, 1)
  if not shard_params or n == 1 or math.prod(shape) < min_size:
    return P()
  dims = sorted(range(len(shape)), key=lambda d: -shape[d])
  for d in dims:
    if shape[d] % n == 0:
      spec = [None] * len(shape)
      spec[d] = MODEL_AXIS
      return P(*spec)
  return P()


def state_shardings(abstract_state: Any, mesh: Mesh, mesh_config: Mapping[str, Any]) -> Any:
  """A NamedSharding for every leaf of a (abstract) train state."""
  mesh_config = defaults.section("mesh", mesh_config)
  shard = bool(mesh_config["shard_params"])
  min_size = int(mesh_config["shard_params_min_size"])
  return jax.tree.map(
      lambda x: NamedSharding(mesh, param_spec(tuple(x.shape), mesh, shard, min_size)),
      abstract_state)


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles this process's rows into global arrays sharded over `data`."""
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:  # the local rows are the global array: one transfer call
    return jax.device_put(dict(local), sharding)
  out = {}
  for k, v in local.items():
    global_shape = (v.shape[0] * jax.process_count(),) + v.shape[1:]
    out[k] = jax.make_array_from_process_local_data(sharding, v, global_shape)
  return out
