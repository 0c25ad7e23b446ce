"""Step-indexed input pipeline: the batch of step s is a pure function of (seed, s).

Why: a resumed run must see exactly the batches an uninterrupted one sees. With the data
position derived from the step stored in the checkpoint, nothing else needs saving. Each
epoch is a fresh seeded permutation of the split; batches run across epoch boundaries so
every step has a full global batch (static shapes). Each process loads only its own rows,
and worker threads keep `prefetch` batches ready so the step does not wait on the host.
"""
from __future__ import annotations

import collections
from concurrent import futures
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


READERS = ("threads", "grain")


def places_from_workers(mesh) -> bool:
  """Whether worker threads may put batches on the devices themselves.

  Only for one process on one device: there the transfer has no collective to race with.
  Transfers issued from another thread while a step's collectives run have deadlocked XLA's
  CPU client (8 simulated devices), so sharded batches are placed by the stepping thread.
  """
  return jax.process_count() == 1 and mesh.devices.size == 1


class TrainBatches:
  """Iterator over global training batches from `start_step` on, built ahead by workers.

  Host batch `s` is a pure function of `(seed, s)`: its example indices come from
  `batch_indices` and its augmentation (for `ExampleDataset`s) from a generator seeded with
  `(seed, s, row)`. With `prefetch > 0`, `workers` threads build up to `prefetch` batches
  ahead, handed over in step order; with `prefetch=0` each batch is built in the caller's
  thread. Either way the sequence of batches is the same.

  `reader` picks the worker machinery: "threads" (default; a thread pool with one future per
  step, whose hand-over costs microseconds) or "grain" (a grain `MapDataset` over step
  numbers with `ReadOptions(num_threads=workers, prefetch_buffer_size=prefetch)`, which costs
  about half a millisecond per batch). On one device the workers also place the batch on it
  (`places_from_workers`), so `next` only hands over a ready array.

  `check` runs on each host batch (NumPy) before it goes to the devices: bad labels or
  shapes fail here, with a message, rather than inside the compiled step. An error while
  building a batch is raised by `next`.
  """

  def __init__(self, dataset, batch_size: int, seed: int, start_step: int, mesh,
               check: Callable[[Mapping[str, np.ndarray]], None] | None = None,
               prefetch: int = 2, workers: int = 1, reader: str = "threads"):
    if batch_size % jax.process_count():
      raise ValueError(f"batch_size {batch_size} is not divisible by the "
                       f"{jax.process_count()} processes")
    if reader not in READERS:
      raise ValueError(f"unknown input reader {reader!r}; known: {', '.join(READERS)}")
    self._dataset, self._batch_size, self._seed = dataset, batch_size, seed
    self._mesh, self._check = mesh, check
    self._step = start_step
    self._iterator = self._pool = None
    self._in_worker = prefetch > 0 and places_from_workers(mesh)
    workers = max(int(workers), 1)
    if prefetch > 0 and reader == "grain":
      import grain  # noqa: PLC0415 - only this reader needs it

      steps = grain.MapDataset.range(start_step, np.iinfo(np.int64).max).map(self._produce)
      options = grain.ReadOptions(num_threads=workers, prefetch_buffer_size=int(prefetch))
      self._iterator = iter(steps.to_iter_dataset(options))
    elif prefetch > 0:
      self._pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="jaxcv-batches")
      self._pending = collections.deque()
      self._submitted = start_step
      for _ in range(max(int(prefetch), workers)):
        self._submit()

  def host_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of the global batch of `step`, as NumPy arrays."""
    sl = local_slice(self._batch_size)
    idx = batch_indices(self._seed, step, self._batch_size, len(self._dataset))
    batch = self._dataset.get(idx[sl], seed=(self._seed, step, sl.start))
    if self._check is not None:
      self._check(batch)
    return batch

  def _produce(self, step: int):
    batch = self.host_batch(step)
    return mesh_lib.global_batch(batch, self._mesh) if self._in_worker else batch

  def _submit(self) -> None:
    self._pending.append(self._pool.submit(self._produce, self._submitted))
    self._submitted += 1

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    return self

  def __next__(self) -> dict[str, jax.Array]:
    if self._pool is not None:
      batch = self._pending.popleft().result()  # raises the worker's error, if any
      self._submit()
    elif self._iterator is not None:
      batch = next(self._iterator)
    else:  # prefetch=0: load in the caller's thread
      batch = self.host_batch(self._step)
    self._step += 1
    if self._in_worker:
      return batch
    # Placed on the devices here, in the thread that runs the steps (see
    # `places_from_workers`). device_put is asynchronous, so this does not wait either.
    return mesh_lib.global_batch(batch, self._mesh)

  def close(self) -> None:
    if self._pool is not None:
      for f in self._pending:
        f.cancel()
      self._pool.shutdown(wait=True, cancel_futures=True)
      self._pool = None
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
