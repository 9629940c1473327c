"""Classification metrics against scikit-learn and a hand-computed case."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from aplt_jax import evaluate

# Several cases leave a class out on purpose; the warning itself is tested below.
pytestmark = pytest.mark.filterwarnings("ignore:Classes .* have no sample:UserWarning")


def test_hand_computed_small_case():
  # labels 0,0,1,2 predicted 0,1,1,1 (one-hot scores); class 3 never occurs.
  scores = np.eye(4)[[0, 1, 1, 1]]
  out = evaluate.classification_metrics(scores, np.array([0, 0, 1, 2]), 4)
  assert out["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
  assert out["top1"] == pytest.approx(0.5)
  assert out["per_class_acc"] == [0.5, 1.0, 0.0, None]
  assert out["mean_class_acc"] == pytest.approx(0.5)  # (1/2 + 1 + 0) / 3 present classes
  # F1: class 0: 2/(2+0+1); class 1: 2/(2+2+0); classes 2, 3: 0.
  assert out["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 4)
  assert out["micro_f1"] == pytest.approx(0.5)
  assert out["top5"] == pytest.approx(1.0)  # k = min(5, 4) = 4: every class is in the top 4


@pytest.mark.parametrize("seed,num_classes", [(0, 7), (1, 12), (2, 3)])
def test_matches_sklearn_with_a_missing_class(seed, num_classes):
  rng = np.random.default_rng(seed)
  n = 300
  missing = num_classes // 2
  present = np.setdiff1d(np.arange(num_classes), [missing])
  labels = rng.choice(present, size=n)
  # Informative but noisy scores, so every metric is strictly between 0 and 1.
  scores = rng.normal(size=(n, num_classes))
  scores[np.arange(n), labels] += 1.0
  pred = scores.argmax(axis=1)
  assert (pred == missing).any()  # the absent class still gets (false) predictions
  all_labels = np.arange(num_classes)

  out = evaluate.classification_metrics(scores, labels, num_classes)
  json.dumps(out)  # plain Python values only

  k = min(5, num_classes)
  assert out["top1"] == pytest.approx(skm.accuracy_score(labels, pred))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # k >= C (C=3); "y_pred contains classes not in y_true"
    top_k = skm.top_k_accuracy_score(labels, scores, k=k, labels=all_labels)
    balanced = skm.balanced_accuracy_score(labels, pred)
  assert out["top5"] == pytest.approx(top_k)
  if num_classes > 5:
    assert out["top5"] > out["top1"]
  assert out["mean_class_acc"] == pytest.approx(balanced)
  for avg in ("macro", "micro"):
    assert out[f"{avg}_f1"] == pytest.approx(skm.f1_score(
        labels, pred, labels=all_labels, average=avg, zero_division=0))
  np.testing.assert_array_equal(
      out["confusion"], skm.confusion_matrix(labels, pred, labels=all_labels))
  recall = skm.recall_score(labels, pred, labels=all_labels, average=None, zero_division=0)
  assert out["per_class_acc"][missing] is None
  np.testing.assert_allclose(
      [out["per_class_acc"][c] for c in present], recall[present], rtol=1e-12)


def test_confusion_matrix_matches_sklearn_and_validates():
  rng = np.random.default_rng(3)
  pred, labels = rng.integers(0, 6, size=50), rng.integers(0, 5, size=50)
  cm = evaluate.confusion_matrix(pred, labels, 6)
  assert cm.shape == (6, 6) and cm.sum() == 50 and not cm[5].any()
  np.testing.assert_array_equal(cm, skm.confusion_matrix(labels, pred, labels=range(6)))
  with pytest.raises(ValueError, match=r"\[0, 6\)"):
    evaluate.confusion_matrix(pred, labels + 2, 6)
  with pytest.raises(ValueError, match="shape"):
    evaluate.confusion_matrix(pred[:-1], labels, 6)


def test_ties_go_to_the_lower_index_and_bad_inputs_raise():
  # All-equal scores: the prediction is class 0, the top-2 set is {0, 1}.
  out = evaluate.classification_metrics(np.zeros((4, 2)), np.array([0, 1, 1, 1]), 2)
  assert out["top1"] == pytest.approx(0.25) and out["top5"] == pytest.approx(1.0)
  scores = np.zeros((3, 8))
  scores[:, :6] = 1.0  # six tied leaders: top-5 holds classes 0..4, not 5
  out = evaluate.classification_metrics(scores, np.array([4, 5, 0]), 8)
  assert out["top5"] == pytest.approx(2 / 3)
  with pytest.raises(ValueError, match="scores"):
    evaluate.classification_metrics(np.zeros((3, 4)), np.zeros(3, int), 5)
  with pytest.raises(ValueError, match="labels"):
    evaluate.classification_metrics(np.zeros((3, 4)), np.zeros(2, int), 4)
  with pytest.raises(ValueError, match="zero samples"):
    evaluate.classification_metrics(np.zeros((0, 4)), np.zeros(0, int), 4)


def test_a_class_missing_from_the_labels_is_warned_about_for_macro_f1():
  scores = np.eye(3)[[0, 1, 0, 1]]  # perfect on classes 0 and 1; class 2 has no sample
  with pytest.warns(UserWarning, match=r"Classes \[2\] have no sample in the evaluated labels "
                                       r"\(4 samples\): macro_f1 counts their F1 as 0"):
    m = evaluate.classification_metrics(scores, np.array([0, 1, 0, 1]), 3)
  assert m["macro_f1"] == pytest.approx(2 / 3) and m["mean_class_acc"] == 1.0
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # every class present: no warning
    evaluate.classification_metrics(np.eye(3), np.arange(3), 3)
