"""Classification metrics against sklearn.metrics (top_k_accuracy_score,
precision_recall_fscore_support, confusion_matrix), the tie order against jax.lax.top_k and a
NumPy stable sort, accumulation under jit, and input errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support, top_k_accuracy_score

from jaxcv.metrics import classification as cls

N, C = 64, 7  # one fixed batch shape
_update = jax.jit(cls.update)
_prf = jax.jit(cls.precision_recall_f1)
_cm = jax.jit(cls.confusion_matrix, static_argnums=(2,))


def _case(rng, classes=C):
  labels = rng.integers(0, classes, N).astype(np.int32)
  logits = rng.normal(size=(N, C)).astype(np.float32)
  logits[np.arange(N), labels] += rng.random(N) < 0.5  # some signal
  return logits, labels


def test_top_k_matches_sklearn_without_ties():
  rng = np.random.default_rng(0)
  for _ in range(10):
    logits, labels = _case(rng)
    for k in (1, 2, 5):
      got = float(cls.top_k_accuracy(logits, labels, k))
      ref = top_k_accuracy_score(labels, logits, k=k, labels=np.arange(C))
      assert abs(got - ref) <= 1e-6, (k, got, ref)


def test_top_k_ties_follow_lax_top_k():
  rng = np.random.default_rng(1)
  logits = rng.integers(0, 3, (N, C)).astype(np.float32)  # many ties
  labels = rng.integers(0, C, N)
  for k in (1, 3):
    hits = np.asarray(cls.top_k_hits(logits, labels, k))
    # stable sort of -score: equal scores keep the lower class index first
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(hits, (order == labels[:, None]).any(1))
    lax_top = np.asarray(jax.lax.top_k(logits, k)[1])
    np.testing.assert_array_equal(hits, (lax_top == labels[:, None]).any(1))
  # a two-way tie for first place, k=1: the lower index wins
  hits = cls.top_k_hits(np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([0, 1]), 1)
  np.testing.assert_array_equal(np.asarray(hits), [True, False])


def test_confusion_and_prf_match_sklearn():
  rng = np.random.default_rng(2)
  for i in range(12):
    # some cases leave classes out of labels and predictions (macro over present ones)
    logits, labels = _case(rng, classes=C if i % 2 else C - 3)
    if i % 3 == 0:
      logits[:, 1] = -10.0  # class 1 never predicted
    if i % 2 == 0:
      logits[:, C - 1] = -10.0  # class C-1 in neither labels nor predictions
    preds = np.argmax(logits, 1)
    cm = np.asarray(_cm(preds, labels, C))
    np.testing.assert_array_equal(cm, sk_confusion_matrix(labels, preds, labels=np.arange(C)))
    for got in (_prf(jnp.asarray(cm)), cls.precision_recall_f1(cm)):
      p, r, f, s = precision_recall_fscore_support(labels, preds, labels=np.arange(C),
                                                   average=None, zero_division=0)
      np.testing.assert_allclose(np.asarray(got["precision"]), p, atol=1e-6)
      np.testing.assert_allclose(np.asarray(got["recall"]), r, atol=1e-6)
      np.testing.assert_allclose(np.asarray(got["f1"]), f, atol=1e-6)
      np.testing.assert_allclose(np.asarray(got["support"]), s)
      for avg in ("macro", "micro", "weighted"):
        # labels=None: sklearn averages over classes present in labels or predictions
        p, r, f, _ = precision_recall_fscore_support(labels, preds, average=avg,
                                                     zero_division=0)
        np.testing.assert_allclose(float(got[f"precision_{avg}"]), p, atol=1e-6, err_msg=avg)
        np.testing.assert_allclose(float(got[f"recall_{avg}"]), r, atol=1e-6, err_msg=avg)
        np.testing.assert_allclose(float(got[f"f1_{avg}"]), f, atol=1e-6, err_msg=avg)


def test_accumulated_state_matches_sklearn_on_all_batches():
  rng = np.random.default_rng(3)
  state = cls.init(C, ks=(1, 5))
  all_logits, all_labels = [], []
  for _ in range(4):
    logits, labels = _case(rng)
    valid = rng.random(N) < 0.8
    state = _update(state, logits, labels, valid)
    all_logits.append(logits[valid])
    all_labels.append(labels[valid])
  logits, labels = np.concatenate(all_logits), np.concatenate(all_labels)
  out = cls.compute(state)
  assert out["count"] == len(labels)
  preds = np.argmax(logits, 1)
  np.testing.assert_allclose(out["accuracy"], np.mean(preds == labels), atol=1e-12)
  np.testing.assert_allclose(out["top1"], out["accuracy"], atol=1e-12)
  np.testing.assert_allclose(
      out["top5"], top_k_accuracy_score(labels, logits, k=5, labels=np.arange(C)), atol=1e-12)
  np.testing.assert_array_equal(out["confusion"],
                                sk_confusion_matrix(labels, preds, labels=np.arange(C)))
  _, _, f, _ = precision_recall_fscore_support(labels, preds, average="macro", zero_division=0)
  np.testing.assert_allclose(out["f1_macro"], f, atol=1e-12)


def test_bad_input():
  logits, labels = _case(np.random.default_rng(4))
  with pytest.raises(ValueError, match="labels has values outside"):
    cls.top_k_accuracy(logits, np.full(N, C), 1)
  with pytest.raises(ValueError, match="class axis"):
    cls.top_k_accuracy(logits[:, 0], labels, 1)
  with pytest.raises(ValueError, match="k must be"):
    cls.top_k_accuracy(logits, labels, 0)
  with pytest.raises(ValueError, match="NaN"):
    cls.top_k_accuracy(np.full((N, C), np.nan), labels, 1)
  with pytest.raises(ValueError, match="predictions has values outside"):
    cls.confusion_matrix(np.full(N, -1), labels, C)
  with pytest.raises(ValueError, match="differ in shape"):
    cls.confusion_matrix(labels[:3], labels, C)
  with pytest.raises(ValueError, match="num_classes"):
    cls.init(0)
  with pytest.raises(ValueError, match="end in the state"):
    cls.update(cls.init(C + 1), logits, labels)
  with pytest.raises(ValueError, match="valid"):
    cls.update(cls.init(C), logits, labels, np.ones(N + 1, bool))
