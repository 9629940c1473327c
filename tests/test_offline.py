"""Offline E2-E4: prototypes on a hand-computed case, sharding, dense rows, metrics, errors."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from aplt_jax import offline


def _unit(deg):
  r = np.deg2rad(deg)
  return np.array([np.cos(r), np.sin(r)])


def _norm(v):
  return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def case():
  """Two classes in 2-D. Class 0: labeled along +x; unlabeled at 10 and -40 degrees.
  Class 1: labeled along +y; unlabeled at 80 and 110 degrees.
  Plus one padding row in each set, filled with garbage.
  """
  z_l = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [np.nan, 5.0]], np.float32)
  y_l = np.array([0, 0, 1, -1], np.int32)
  valid_l = np.array([1, 1, 1, 0], bool)
  z_u = np.stack([2 * _unit(10), _unit(-40), _unit(80), 3 * _unit(110),
                  [np.inf, 1.0]]).astype(np.float32)
  valid_u = np.array([1, 1, 1, 1, 0], bool)
  return z_l, y_l, valid_l, z_u, valid_u


def _expected_q0():
  """By hand, q = 0: each cluster keeps only its members nearest the k-means centre."""
  mu0 = _norm(2 * _unit(0) + _unit(10) + _unit(-40))  # at about -7.1 degrees
  mu1 = _norm(_unit(90) + _unit(80) + _unit(110))  # at about 93.3 degrees
  dist_u = np.array([1 - _unit(10) @ mu0, 1 - _unit(-40) @ mu0,
                     1 - _unit(80) @ mu1, 1 - _unit(110) @ mu1])
  # Cluster 0: the 10-degree point is nearer (about 17 vs 33 degrees from mu0); cluster 1:
  # the 80-degree one (about 13 vs 17 degrees). Each tau is its nearest member's distance.
  tau = np.array([dist_u[0], dist_u[2]])
  keep = np.array([True, False, True, False])
  protos = np.stack([_norm(2 * _unit(0) + _unit(10)), _norm(_unit(90) + _unit(80))])
  return np.stack([mu0, mu1]), dist_u, tau, keep, protos


def test_pseudo_label_hand_computed(case):
  res = offline.pseudo_label(*case, 2, threshold="quantile", q=0.0)
  kmc, dist_u, tau, keep, protos = _expected_q0()
  np.testing.assert_array_equal(np.asarray(res.assign_u)[:4], [0, 0, 1, 1])
  np.testing.assert_allclose(np.asarray(res.kmeans_centers), kmc, atol=1e-6)
  np.testing.assert_allclose(np.asarray(res.dist_u)[:4], dist_u, atol=1e-6)
  np.testing.assert_allclose(np.asarray(res.thresholds), tau, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(res.keep_u), np.append(keep, False))
  np.testing.assert_allclose(np.asarray(res.centers), protos, atol=1e-6)
  assert np.isfinite(np.asarray(res.centers)).all()
  assert 1 <= int(res.num_iters) < 100


def test_pseudo_label_sharded_equals_single(case):
  mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:2])
  one = offline.pseudo_label(*case, 2, q=0.0)
  two = offline.pseudo_label(*case, 2, q=0.0, mesh=mesh)
  for a, b in zip(one, two):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)


def test_pseudo_label_errors(case):
  z_l, y_l, valid_l, z_u, valid_u = case
  with pytest.raises(ValueError, match="unknown threshold"):
    offline.pseudo_label(*case, 2, threshold="bogus")
  with pytest.raises(ValueError, match=r"without a labeled point: \[2\]"):
    offline.pseudo_label(*case, 3)
  with pytest.raises(ValueError, match="one d"):
    offline.pseudo_label(z_l, y_l, valid_l, z_u[:, :1], valid_u, 2)


def _hand_result():
  return offline.OfflineResult(
      kmeans_centers=np.eye(3, 2, dtype=np.float32),
      centers=np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32),
      assign_u=np.array([2, 1, 0, 2, 1], np.int32),
      dist_u=np.array([0.1, 0.5, 0.2, 0.9, 0.0], np.float32),
      keep_u=np.array([True, False, True, False, False]),
      thresholds=np.array([0.3, 0.4, 0.5], np.float32),
      num_iters=np.int32(7),
      objective=np.float32(1.5),
      offset=np.zeros(2, np.float32))


def test_to_prototypes_row_layout():
  res = _hand_result()
  # 9 clips: labeled clips 1, 4, 6; unlabeled rows map to clips 8, 0, 2, 5 and a padding row.
  protos = offline.to_prototypes(res, labeled_index=[4, 1, 6], labeled_y=[2, 0, 1],
                                 unlabeled_index=[8, 0, 2, 5, 9], num_train=9, round=3)
  np.testing.assert_array_equal(np.asarray(protos.labels), [1, 0, 0, 0, 2, 2, 1, 0, 2])
  np.testing.assert_array_equal(np.asarray(protos.keep), [0, 0, 1, 0, 0, 0, 0, 0, 1])
  np.testing.assert_array_equal(np.asarray(protos.centers), res.centers)
  np.testing.assert_array_equal(np.asarray(protos.thresholds), res.thresholds)
  assert int(protos.round) == 3 and protos.round.dtype == np.int32
  assert protos.labels.dtype == np.int32 and protos.keep.dtype == bool
  with pytest.raises(ValueError, match="unlabeled_index"):
    offline.to_prototypes(res, [1], [0], [0, 2], 9, 1)
  with pytest.raises(ValueError, match="num_train"):
    offline.to_prototypes(res, [9], [0], [8, 0, 2, 5, 3], 9, 1)


def test_pseudo_label_metrics():
  res = _hand_result()
  valid_u = np.array([1, 1, 1, 1, 0], bool)
  m = offline.pseudo_label_metrics(res, None, valid_u)
  assert m == pytest.approx({"offline/kept_frac": 0.5, "offline/kmeans_iters": 7.0,
                             "offline/threshold_mean": 0.4})
  # Hidden labels: row 0 right (kept), row 1 wrong, row 2 wrong (kept), row 3 right,
  # row 4 padding (ignored even though it would be right).
  m = offline.pseudo_label_metrics(res, np.array([2, 0, 1, 2, 1]), valid_u)
  assert m["offline/pl_acc_all"] == pytest.approx(0.5)
  assert m["offline/pl_acc_kept"] == pytest.approx(0.5)
  none_kept = res._replace(keep_u=np.zeros(5, bool))
  m = offline.pseudo_label_metrics(none_kept, np.array([2, 1, 0, 2, 1]), valid_u)
  assert m["offline/kept_frac"] == 0.0 and m["offline/pl_acc_all"] == 1.0
  assert "offline/pl_acc_kept" not in m


# ---- The offline phase's options (aplt.select, aplt.center, the kept-fraction schedule) ------


def test_selection_scores_on_hand_computed_rows():
  """Three unit centres in 2-D (0, 90, 45 degrees); a row at 10 degrees assigned to class 0."""
  centers = np.stack([_unit(0), _unit(90), _unit(45)]).astype(np.float32)
  z = _unit(10)[None].astype(np.float32)
  cls = np.array([0], np.int32)
  cos = centers @ z[0]  # cos 10, cos 80, cos 35
  d = offline.selection_score(z, centers, cls, "distance")
  np.testing.assert_allclose(d, [1 - np.cos(np.deg2rad(10))], rtol=1e-5)
  # The runner-up is the 45-degree centre: margin cos10 - cos35.
  m = offline.selection_score(z, centers, cls, "margin")
  np.testing.assert_allclose(m, [0.5 * (1 - (cos[0] - cos[2]))], rtol=1e-5)
  p = offline.selection_score(z, centers, cls, "prob", scale=16.0)
  e = np.exp(16 * cos)
  np.testing.assert_allclose(p, [1 - e[0] / e.sum()], rtol=1e-5)
  # Assigned to the 45-degree centre instead, the margin counts against the 0-degree one.
  m2 = offline.selection_score(z, centers, np.array([2], np.int32), "margin")
  np.testing.assert_allclose(m2, [0.5 * (1 - (cos[2] - cos[0]))], rtol=1e-5)
  with pytest.raises(ValueError, match="aplt.select"):
    offline.selection_score(z, centers, cls, "entropy")


def test_margin_selection_keeps_the_unambiguous_row_that_distance_drops():
  """Rows equally far from their centre (distance ties) but one sits between two centres."""
  centers = np.stack([_unit(0), _unit(60)]).astype(np.float32)
  z = np.stack([_unit(-20), _unit(20)]).astype(np.float32)  # both 20 degrees from centre 0
  cls = np.zeros(2, np.int32)
  d = np.asarray(offline.selection_score(z, centers, cls, "distance"))
  assert d[0] == pytest.approx(d[1], abs=1e-6)
  m = np.asarray(offline.selection_score(z, centers, cls, "margin"))
  assert m[0] < m[1]  # -20 degrees is far from the 60-degree centre, +20 is not


def test_center_features_removes_the_common_direction():
  rng = np.random.default_rng(0)
  raw = np.abs(rng.normal(size=(40, 8))) + 3.0  # post-ReLU-like: a narrow cone
  z = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
  valid = np.ones(41, bool)
  valid[-1] = False
  zc, mean = offline.center_features(np.concatenate([z, 9 * np.ones((1, 8), np.float32)]), valid)
  zc, mean = np.asarray(zc), np.asarray(mean)
  np.testing.assert_allclose(mean, z.mean(0), rtol=1e-5)  # the padding row is left out
  np.testing.assert_allclose(zc[:-1], (z - mean) / np.linalg.norm(z - mean, axis=1,
                                                                  keepdims=True), rtol=1e-4)
  np.testing.assert_array_equal(zc[-1], 0.0)
  cone = (z @ z.T)[np.triu_indices(40, 1)].mean()
  spread = (zc[:-1] @ zc[:-1].T)[np.triu_indices(40, 1)].mean()
  assert cone > 0.8 and abs(spread) < 0.1


def test_centred_pseudo_labels_return_the_offset(case):
  res = offline.pseudo_label(*case, 2, threshold="none", center=True)
  _, _, valid_l, z_u, valid_u = case
  z_l = case[0]
  rows = np.concatenate([z_l[valid_l], z_u[valid_u]])
  rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
  np.testing.assert_allclose(np.asarray(res.offset), rows.mean(0), rtol=1e-5)
  plain = offline.pseudo_label(*case, 2, threshold="none")
  np.testing.assert_array_equal(np.asarray(plain.offset), 0.0)


@pytest.mark.parametrize("q, q_final, rounds, expected", [
    (0.3, None, 5, [0.3] * 5),
    (0.3, 1.0, 5, [0.3, 0.475, 0.65, 0.825, 1.0]),
    (0.5, 0.2, 3, [0.5, 0.35, 0.2]),
    (0.3, 1.0, 1, [0.3]),
])
def test_kept_fraction_schedule(q, q_final, rounds, expected):
  got = [offline.kept_fraction(q, q_final, r, rounds) for r in range(1, rounds + 1)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)
