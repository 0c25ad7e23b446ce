"""Step-indexed input pipeline: the batch of step s is a pure function of (seed, s).

Why: a resumed run must see exactly the batches an uninterrupted one sees. With the data
position derived from the step stored in the checkpoint, nothing else needs saving. Each
epoch is a fresh seeded permutation of the split; batches run across epoch boundaries so
every step has a full global batch (static shapes). Each process loads only its own rows,
and worker threads keep `prefetch` host batches ready so the step does not wait on the host.
"""
from __future__ import annotations

from typing import Callable, Iterator, Mapping

import jax
import numpy as np

from jaxcv.train import mesh as mesh_lib


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> np.ndarray:
  """Example indices of the global batch at `step` (length `batch_size`)."""
  start = step * batch_size
  out = []
  while len(out) < batch_size:
    epoch, offset = divmod(start + len(out), n)
    perm = epoch_permutation(seed, epoch, n)
    out.extend(perm[offset:offset + batch_size - len(out)].tolist())
  return np.asarray(out, dtype=np.int64)


def local_slice(batch_size: int) -> slice:
  """This process's rows of a global batch."""
  per_process = batch_size // jax.process_count()
  i = jax.process_index()
  return slice(i * per_process, (i + 1) * per_process)


class TrainBatches:
  """Iterator over global training batches from `start_step` on, built ahead by workers.

  Host batch `s` is a pure function of `(seed, s)`: its example indices come from
  `batch_indices` and its augmentation (for `ExampleDataset`s) from a generator seeded with
  `(seed, s, row)`. With `prefetch > 0`, a grain `MapDataset` over step numbers builds up to
  `prefetch` batches ahead on `workers` threads, in order; with `prefetch=0` each batch is
  built in the caller's thread. Either way the sequence of batches is the same.

  `check` runs on each host batch (NumPy) before it goes to the devices: bad labels or
  shapes fail here, with a message, rather than inside the compiled step. An error while
  building a batch is raised by `next`.
  """

  def __init__(self, dataset, batch_size: int, seed: int, start_step: int, mesh,
               check: Callable[[Mapping[str, np.ndarray]], None] | None = None,
               prefetch: int = 2, workers: int = 1):
    if batch_size % jax.process_count():
      raise ValueError(f"batch_size {batch_size} is not divisible by the "
                       f"{jax.process_count()} processes")
    self._dataset, self._batch_size, self._seed = dataset, batch_size, seed
    self._mesh, self._check = mesh, check
    self._step = start_step
    self._iterator = None
    if prefetch > 0:
      import grain  # noqa: PLC0415 - only the prefetching path needs it

      steps = grain.MapDataset.range(start_step, np.iinfo(np.int64).max).map(self.host_batch)
      options = grain.ReadOptions(num_threads=max(int(workers), 1),
                                  prefetch_buffer_size=int(prefetch))
      self._iterator = iter(steps.to_iter_dataset(options))

  def host_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of the global batch of `step`, as NumPy arrays."""
    sl = local_slice(self._batch_size)
    idx = batch_indices(self._seed, step, self._batch_size, len(self._dataset))
    batch = self._dataset.get(idx[sl], seed=(self._seed, step, sl.start))
    if self._check is not None:
      self._check(batch)
    return batch

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    return self

  def __next__(self) -> dict[str, jax.Array]:
    if self._iterator is None:  # prefetch=0: load in the caller's thread
      batch = self.host_batch(self._step)
    else:
      batch = next(self._iterator)
    self._step += 1
    # Placed on the devices here, in the thread that runs the steps: transfers issued from
    # another thread while a step's collectives run deadlocked XLA's CPU client (8
    # simulated devices). device_put is asynchronous, so this does not wait either.
    return mesh_lib.global_batch(batch, self._mesh)

  def close(self) -> None:
    if self._iterator is not None and hasattr(self._iterator, "close"):
      self._iterator.close()
    self._iterator = None


def eval_batches(dataset, batch_size: int, mesh,
                 check: Callable[[Mapping[str, np.ndarray]], None] | None = None
                 ) -> Iterator[dict[str, jax.Array]]:
  """The whole split in order, the last batch padded; `example_valid` marks real rows."""
  n = len(dataset)
  sl = local_slice(batch_size)
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    valid = idx < n
    idx = np.where(valid, idx, 0)[sl]
    batch = dataset.get(idx)
    if check is not None:
      check(batch)
    batch["example_valid"] = valid[sl]
    yield mesh_lib.global_batch(batch, mesh)
