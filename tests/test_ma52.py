"""The MA-52 protocol: body-part groups, metrics on known scores, the submission CSV."""
import csv

import numpy as np
import pytest

from aplt_jax import ma52 as ma52_app
from aplt_jax.data.video import ma52


def test_body_parts_cover_the_52_actions_in_order():
  assert len(ma52.ACTION_TO_BODY) == 52
  assert np.all(np.diff(ma52.ACTION_TO_BODY) >= 0)
  assert [int(ma52.ACTION_TO_BODY[i]) for i in (0, 4, 5, 10, 11, 23, 24, 31, 32, 37, 38, 47, 48,
                                                  51)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5,
                                                           6, 6]


def test_body_scores_sum_the_actions_probabilities():
  scores = np.full((1, 52), -50.0)
  scores[0, [5, 7]] = 0.0  # two head actions share the mass
  body = ma52.body_scores(scores)
  assert body.shape == (1, 7)
  np.testing.assert_allclose(body[0, 1], 1.0, atol=1e-6)
  np.testing.assert_allclose(body.sum(), 1.0, atol=1e-9)


def _one_hot_scores(preds):
  scores = np.zeros((len(preds), 52))
  scores[np.arange(len(preds)), preds] = 10.0
  return scores


def test_protocol_metrics_on_known_predictions():
  labels = np.array([0, 5, 11, 24])
  # right; wrong action, right body (head); wrong action and body; right.
  preds = np.array([0, 6, 30, 24])
  m = ma52.protocol_metrics(_one_hot_scores(preds), labels)
  assert m["action_top1"] == pytest.approx(0.5)
  assert m["body_top1"] == pytest.approx(0.75)
  assert m["action_micro_f1"] == pytest.approx(0.5)
  assert m["body_micro_f1"] == pytest.approx(0.75)
  # body: classes body, head right (F1 1, 1); upper limb missed (0); lower limb TP 1, FP 1 (2/3).
  assert m["body_macro_f1"] == pytest.approx((1 + 1 + 0 + 2 / 3) / 7)
  assert m["f1_mean"] == pytest.approx(np.mean([m["action_macro_f1"], m["action_micro_f1"],
                                                m["body_macro_f1"], m["body_micro_f1"]]))
  body = np.zeros((7, 7), int)
  body[0, 0] = body[1, 1] = body[2, 3] = body[3, 3] = 1  # true part (row) -> predicted part
  np.testing.assert_array_equal(m["body_confusion"], body)


def test_submission_csv(tmp_path):
  scores = np.random.default_rng(0).normal(size=(3, 52))
  scores[1] = -10
  scores[1, [40, 41, 2]] = [9, 8, 7]
  path = tmp_path / "sub.csv"
  ma52_app.write_submission(str(path), ["test0000.mp4", "test0001.mp4", "test0002.mp4"], scores)
  rows = list(csv.reader(open(path)))
  assert rows[0] == (["vid"] + [f"action_pred_{i}" for i in range(1, 6)]
                     + [f"body_pred_{i}" for i in range(1, 6)])
  assert len(rows) == 4 and rows[2][0] == "test0001.mp4"
  assert rows[2][1:4] == ["40", "41", "2"]
  assert rows[2][6:8] == ["5", "0"]  # head-hand holds 40 and 41, then body (2)
  assert all(len(set(r[6:11])) == 5 for r in rows[1:])  # five distinct body parts
