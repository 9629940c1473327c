"""The offline phase the trainer runs (E1-E4): a hand-computed case, sharding, dense rows,
metrics, errors."""
from __future__ import annotations

import types

import jax
import ml_collections
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
  Class 1: labeled along +y; unlabeled at 80 and 110 degrees. Clips 0-2 labeled, 3-6 not.
  """
  z_l = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], np.float32)
  y_l = np.array([0, 0, 1], np.int32)
  z_u = np.stack([2 * _unit(10), _unit(-40), _unit(80), 3 * _unit(110)]).astype(np.float32)
  y_u = np.array([0, 0, 1, 1], np.int32)  # hidden labels, for the metrics only
  return z_l, y_l, z_u, y_u


def _mesh(n):
  return jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:n])


def _run_phase(case, num_classes=2, devices=1, threshold="quantile", q=0.0, **knobs):
  """`run_offline_phase`, the trainer's path, with a model whose features are its input: each
  training clip is the feature row itself. Batches of 2 leave a padding row in each pass."""
  z_l, y_l, z_u, y_u = case
  z = np.concatenate([z_l, z_u])
  dataset = types.SimpleNamespace(train=[{"x": row} for row in z], input_key="x",
                                  train_labels=np.concatenate([y_l, y_u]),
                                  num_classes=num_classes)
  aplt_cfg = ml_collections.ConfigDict(dict(
      labeled_views=0, threshold=threshold, threshold_q=q, threshold_kappa=0.0,
      labeled_spread_q=0.9, kmeans_max_iter=100, kmeans_tol=1e-5,
      **{"select": "distance", "center": False, "scale": 16.0, "prototypes": "refined",
         "vouch_modes": 0, "vouch_rule": "unanimous", "assign": "nearest",
         **knobs}))
  embed_step = jax.jit(lambda state, x, key, weak, use_ema: x, static_argnums=(3, 4))
  return offline.run_offline_phase(
      embed_step, None, dataset, np.arange(len(z_l)), np.arange(len(z_l), len(z)),
      _mesh(devices), key=jax.random.key(0), round_=2, aplt_cfg=aplt_cfg, batch_size=2,
      use_ema=True)


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


def test_offline_phase_hand_computed(case):
  protos, metrics = _run_phase(case)
  _, _, tau, keep, centers = _expected_q0()
  # Labeled clips keep their true label and are never "kept"; unlabeled ones get their cluster.
  np.testing.assert_array_equal(np.asarray(protos.labels), [0, 0, 1, 0, 0, 1, 1])
  np.testing.assert_array_equal(np.asarray(protos.keep), np.append([False] * 3, keep))
  np.testing.assert_allclose(np.asarray(protos.thresholds), tau, atol=1e-6)
  np.testing.assert_allclose(np.asarray(protos.centers), centers, atol=1e-6)
  assert int(protos.round) == 2
  assert metrics["offline/kept_frac"] == pytest.approx(0.5)
  assert metrics["offline/pl_acc_all"] == pytest.approx(1.0)
  assert 1 <= metrics["offline/kmeans_iters"] < 100


def test_offline_phase_sharded_equals_single(case):
  one, m_one = _run_phase(case, devices=1)
  two, m_two = _run_phase(case, devices=2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5),
               one, two)
  assert m_two == pytest.approx(m_one, abs=1e-5)


def test_offline_phase_errors(case):
  with pytest.raises(ValueError, match="unknown threshold"):
    _run_phase(case, threshold="bogus")
  with pytest.raises(ValueError, match=r"without a labeled point: \[2\]"):
    _run_phase(case, num_classes=3)


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


def test_centred_offline_phase_stores_the_offset(case):
  protos, _ = _run_phase(case, threshold="none", center=True)
  z_l, _, z_u, _ = case
  rows = np.concatenate([z_l, z_u])
  rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
  np.testing.assert_allclose(np.asarray(protos.offset), rows.mean(0), rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(protos.centers), axis=1), 1.0, rtol=1e-5)
  plain, _ = _run_phase(case, threshold="none")
  np.testing.assert_array_equal(np.asarray(plain.offset), 0.0)


def test_labeled_prototypes_leave_the_kept_rows_out_of_the_centres(case):
  """`prototypes='labeled'`: same clusters and kept rows, centres from labeled points alone."""
  refined, _ = _run_phase(case, q=0.0)
  labeled, _ = _run_phase(case, q=0.0, prototypes="labeled")
  for field in ("labels", "keep", "thresholds"):
    np.testing.assert_array_equal(np.asarray(getattr(labeled, field)),
                                  np.asarray(getattr(refined, field)))
  # By hand: class 0's labeled rows lie along +x, class 1's along +y (see `case`); the refined
  # centres are pulled toward the kept 10- and 80-degree rows.
  np.testing.assert_allclose(np.asarray(labeled.centers), [_unit(0), _unit(90)], atol=1e-6)
  assert not np.allclose(np.asarray(refined.centers), np.asarray(labeled.centers), atol=1e-2)


@pytest.mark.parametrize("q, q_final, rounds, expected", [
    (0.3, None, 5, [0.3] * 5),
    (0.3, 1.0, 5, [0.3, 0.475, 0.65, 0.825, 1.0]),
    (0.5, 0.2, 3, [0.5, 0.35, 0.2]),
    (0.3, 1.0, 1, [0.3]),
])
def test_kept_fraction_schedule(q, q_final, rounds, expected):
  got = [offline.kept_fraction(q, q_final, r, rounds) for r in range(1, rounds + 1)]
  np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("rule", offline.VOUCH_RULES)
def test_vouched_rows_by_the_labeled_rows_in_their_mode(rule):
  """Three tight modes at 0, 90 and -60 degrees and an invalid row: the 0-degree mode holds two
  class-0 labeled rows, the 90-degree mode two of class 1 and one of class 0, the -60 none."""
  z = np.stack([_unit(0), _unit(0), _unit(90), _unit(90), _unit(90), _unit(0), _unit(0),
                _unit(90), _unit(90), _unit(-60), _unit(-60), _unit(0)]).astype(np.float32)
  labels = np.array([0, 0, 1, 1, 0, -1, -1, -1, -1, -1, -1, -1])
  assign = np.array([0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0])
  valid = np.array([True] * 11 + [False])
  got = offline.vouched_rows(z, labels, valid, assign, num_modes=3, seed=0, rule=rule)
  # Unlabeled rows: 5 (0 degrees, label 0) passes every rule, 6 (label 1 in class 0's mode) none;
  # at 90 degrees labels 1 win 2 to 1, so row 7 (label 1) is not vouched unanimously and row 8
  # (label 0) only escapes the veto (one labeled row says 0); 9-10 sit in a mode without
  # labeled rows, which only the veto lets pass; 11 is padding.
  # The decisive rule lets every row of the mixed 90-degree mode pass; with a mixed mode the
  # gated rule lets every valid row pass.
  unanimous, majority, veto, decisive, gated = (rule == r for r in offline.VOUCH_RULES)
  mixed = veto or decisive or gated
  np.testing.assert_array_equal(got[5:], [True, gated, majority or mixed, mixed, veto or gated,
                                          veto or gated, False])
  np.testing.assert_array_equal(got[:5], [True, True, majority or mixed, majority or mixed, mixed])
  assert not unanimous or got.sum() == 3
  # Without row 4 (the class-0 labeled row at 90 degrees) no mode is mixed: gated is unanimous.
  labels[4] = -1
  pure = [offline.vouched_rows(z, labels, valid, assign, num_modes=3, seed=0, rule=r)
          for r in ("unanimous", "gated")]
  np.testing.assert_array_equal(pure[0], pure[1])
  np.testing.assert_array_equal(pure[1], [True, True, True, True, False, True, False, True,
                                          False, False, False, False])


@pytest.mark.parametrize("devices,rule", [(1, "unanimous"), (2, "unanimous"), (1, "gated")])
def test_vouching_drops_an_absorbed_mode_from_the_kept_rows(devices, rule):
  """Class 0's cluster absorbs an unlabeled mode at -60 degrees (nearer +x than +y); with q = 1
  every unlabeled row is kept, and vouching drops exactly that mode and its pull on the centre
  (on 2 devices the rows are padded and sharded)."""
  z_l = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], np.float32)
  z_u = np.stack([1.5 * _unit(0), _unit(-60), 2 * _unit(-60), 0.5 * _unit(90)])
  vouch_case = (z_l, np.array([0, 0, 1], np.int32), z_u.astype(np.float32),
                np.array([0, 1, 1, 1], np.int32))
  plain, _ = _run_phase(vouch_case, q=1.0)
  vouched, _ = _run_phase(vouch_case, devices=devices, q=1.0, vouch_modes=2, vouch_rule=rule)
  np.testing.assert_array_equal(np.asarray(plain.labels)[3:], [0, 0, 0, 1])
  np.testing.assert_array_equal(np.asarray(plain.keep)[3:], [True, True, True, True])
  np.testing.assert_array_equal(np.asarray(vouched.labels)[3:], [0, 0, 0, 1])
  np.testing.assert_array_equal(np.asarray(vouched.keep)[3:], [True, False, False, True])
  np.testing.assert_allclose(np.asarray(vouched.centers), [_unit(0), _unit(90)], atol=1e-6)
  assert not np.allclose(np.asarray(plain.centers)[0], _unit(0), atol=1e-2)


@pytest.mark.parametrize("devices", [1, 2])
def test_balanced_assignment_gives_an_absorbed_mode_back_to_its_class(devices):
  """One labeled clip per class; class 1's unlabeled mode at 40-44 degrees is nearer class 0's
  centre, so nearest-centre k-means gives cluster 0 five of the six. Balanced (equal labeled
  frequencies: three each) hands the mode back, and the refined centres follow."""
  z_l = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  z_u = np.stack([_unit(a) for a in (0, 5, -5, 40, 44, 90)]).astype(np.float32)
  case = (z_l, np.array([0, 1], np.int32), z_u, np.array([0, 0, 0, 1, 1, 1], np.int32))
  plain, _ = _run_phase(case, q=1.0)
  balanced, metrics = _run_phase(case, devices=devices, q=1.0, assign="balanced")
  np.testing.assert_array_equal(np.asarray(plain.labels)[2:], [0, 0, 0, 0, 0, 1])
  np.testing.assert_array_equal(np.asarray(balanced.labels)[:2], [0, 1])  # labeled: clamped
  np.testing.assert_array_equal(np.asarray(balanced.labels)[2:], [0, 0, 0, 1, 1, 1])
  assert metrics["offline/pl_acc_all"] == 1.0
  want = [_norm(_unit(0) + _unit(0) + _unit(5) + _unit(-5)),
          _norm(_unit(90) + _unit(40) + _unit(44) + _unit(90))]
  np.testing.assert_allclose(np.asarray(balanced.centers), want, atol=1e-5)


def test_vouching_without_unlabeled_rows_changes_nothing(monkeypatch):
  """supervised_proto's phase (labeled rows only): no mode k-means runs, the prototypes are the
  labeled means either way."""
  z_l = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], np.float32)
  case = (z_l, np.array([0, 0, 1], np.int32), np.zeros((0, 2), np.float32), np.zeros(0, np.int32))
  plain, _ = _run_phase(case)
  def no_modes(*args, **kwargs):
    raise AssertionError("vouched_rows ran without unlabeled rows")
  monkeypatch.setattr(offline, "vouched_rows", no_modes)
  vouched, _ = _run_phase(case, vouch_modes=3, vouch_rule="gated", assign="balanced")
  np.testing.assert_array_equal(np.asarray(vouched.centers), np.asarray(plain.centers))
  np.testing.assert_allclose(np.asarray(vouched.centers), [_unit(0), _unit(90)], atol=1e-6)
