"""The step-indexed pipeline: every epoch a permutation, resumable by step, padded eval."""
import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from jaxcv.train import input_pipeline


class Rows:
  """A minimal data set: row i has image_id i."""
  num_classes = 3

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def get(self, idx, seed=None):
    idx = np.asarray(idx)
    return {"image_id": idx.astype(np.int32), "label": (idx % 3).astype(np.int32)}


def test_each_epoch_is_a_permutation_and_batches_cross_epochs():
  n, b = 10, 4
  stream = np.concatenate([input_pipeline.batch_indices(0, s, b, n) for s in range(5)])
  assert sorted(stream[:10]) == list(range(10))
  assert sorted(stream[10:20]) == list(range(10))
  assert not np.array_equal(stream[:10], stream[10:20])  # a fresh order per epoch
  np.testing.assert_array_equal(input_pipeline.batch_indices(0, 3, b, n), stream[12:16])
  assert not np.array_equal(input_pipeline.batch_indices(1, 0, b, n), stream[:4])


def test_train_batches_resume_at_a_step():
  mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))
  full = input_pipeline.TrainBatches(Rows(10), 4, 7, 0, mesh)
  seen = [np.asarray(next(full)["image_id"]) for _ in range(6)]
  full.close()
  resumed = input_pipeline.TrainBatches(Rows(10), 4, 7, 3, mesh)
  for s in range(3, 6):
    np.testing.assert_array_equal(np.asarray(next(resumed)["image_id"]), seen[s])
  resumed.close()


def test_check_errors_reach_the_consumer():
  mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))

  def check(batch):
    raise ValueError("label 7 is outside [0, 3)")

  it = input_pipeline.TrainBatches(Rows(10), 4, 0, 0, mesh, check=check)
  with pytest.raises(ValueError, match="outside"):
    next(it)
  it.close()


def test_eval_batches_cover_the_split_once_and_mark_padding():
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  ids, valid = [], []
  for batch in input_pipeline.eval_batches(Rows(21), 8, mesh):
    assert batch["image_id"].shape == (8,)
    ids.append(np.asarray(batch["image_id"]))
    valid.append(np.asarray(batch["example_valid"]))
  ids, valid = np.concatenate(ids), np.concatenate(valid)
  assert len(ids) == 24 and valid.sum() == 21
  np.testing.assert_array_equal(ids[valid], np.arange(21))
