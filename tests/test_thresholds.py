"""Threshold rules (DESIGN E3): hand-computed values, numpy oracles, empty classes, keep mask."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from aplt_jax import thresholds

C = 4
# Unlabeled rows: class 0 has four distances, class 1 one valid (+ one padding row), class 2
# none, class 3 three. Labeled rows: class 0 three, class 1 two, class 2 one, class 3 none.
DIST_U = np.array([0.4, 0.1, 0.8, 0.2, 0.5, 0.0, 0.3, 0.6, 0.9], np.float32)
ASSIGN_U = np.array([0, 0, 0, 0, 1, 1, 3, 3, 3], np.int32)
VALID_U = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1], bool)
DIST_L = np.array([0.05, 0.25, 0.15, 0.3, 0.1, 0.7, 9.0], np.float32)
LABEL_L = np.array([0, 0, 0, 1, 1, 2, 3], np.int32)
VALID_L = np.array([1, 1, 1, 1, 1, 1, 0], bool)


@pytest.fixture(scope="module")
def compute():
  """One jitted `thresholds.compute`; rule and C static, parameters traced."""
  return jax.jit(thresholds.compute, static_argnums=(0, 7))


def _run(compute, name, args, **params):
  tau, keep = compute(name, *args, **params)
  return np.asarray(tau), np.asarray(keep)


HAND = (DIST_U, ASSIGN_U, VALID_U, DIST_L, LABEL_L, VALID_L, C)


def test_registry():
  assert set(thresholds.names()) == {"quantile", "class_stats", "labeled_spread", "none"}
  assert thresholds.get("quantile") is thresholds.quantile
  with pytest.raises(ValueError, match="known: class_stats"):
    thresholds.get("qantile")
  with pytest.raises(ValueError, match="already registered"):
    thresholds.register("none")(lambda *a, **k: None)


def test_quantile_hand_computed(compute):
  tau, keep = _run(compute, "quantile", HAND, q=0.3)
  # Class 0 sorted [.1 .2 .4 .8]: position 3*.3 = .9 -> .1 + .9*.1 = .19.
  # Class 1 [.5] (the padding .0 is ignored); class 2 empty -> 0.
  # Class 3 [.3 .6 .9]: position 2*.3 = .6 -> .3 + .6*.3 = .48.
  np.testing.assert_allclose(tau, [0.19, 0.5, 0.0, 0.48], atol=1e-6)
  np.testing.assert_array_equal(keep, [0, 1, 0, 0, 1, 0, 1, 0, 0])


def test_class_stats_hand_computed(compute):
  tau, _ = _run(compute, "class_stats", HAND, kappa=0.0)
  np.testing.assert_allclose(tau, [0.375, 0.5, 0.0, 0.6], atol=1e-6)
  tau, keep = _run(compute, "class_stats", HAND, kappa=1.0)
  # Class 0: squared deviations .075625 .030625 .000625 .180625 -> var .071875.
  # Class 3: var (.09 + 0 + .09) / 3 = .06.
  np.testing.assert_allclose(
      tau, [0.375 + np.sqrt(0.071875), 0.5, 0.0, 0.6 + np.sqrt(0.06)], atol=1e-6)
  np.testing.assert_array_equal(keep, [1, 1, 0, 1, 1, 0, 1, 1, 0])


def test_labeled_spread_hand_computed(compute):
  tau, keep = _run(compute, "labeled_spread", HAND, labeled_spread_q=0.5)
  # Class 0 labeled [.05 .15 .25] -> median .15; class 1 [.1 .3] -> .2; class 2 [.7];
  # class 3 has only a padding row -> 0.
  np.testing.assert_allclose(tau, [0.15, 0.2, 0.7, 0.0], atol=1e-6)
  np.testing.assert_array_equal(keep, [0, 1, 0, 0, 0, 0, 0, 0, 0])


def test_none_keeps_every_valid_row(compute):
  tau, keep = _run(compute, "none", HAND)
  np.testing.assert_array_equal(tau, [2.0, 2.0, 0.0, 2.0])
  np.testing.assert_array_equal(keep, VALID_U)


def _random_case(seed):
  rng = np.random.RandomState(seed)
  nu, nl, c = 40, 16, 5
  dist_u = rng.uniform(0, 2, nu).astype(np.float32)
  assign_u = rng.choice([0, 1, 3, 4], nu).astype(np.int32)  # class 2 empty
  valid_u = rng.rand(nu) > 0.2
  dist_l = rng.uniform(0, 1, nl).astype(np.float32)
  label_l = rng.choice([0, 1, 2, 4], nl).astype(np.int32)  # class 3 has no labeled row
  valid_l = rng.rand(nl) > 0.2
  return dist_u, assign_u, valid_u, dist_l, label_l, valid_l, c


@pytest.mark.parametrize("seed", [0, 1])
def test_rules_match_numpy_per_class(compute, seed):
  args = _random_case(seed)
  dist_u, assign_u, valid_u, dist_l, label_l, valid_l, c = args
  per_u = [dist_u[valid_u & (assign_u == k)] for k in range(c)]
  per_l = [dist_l[valid_l & (label_l == k)] for k in range(c)]
  oracle = lambda groups, f: np.array([f(g) if g.size else 0.0 for g in groups])

  for q in (0.0, 0.3, 0.5, 1.0):
    tau, keep = _run(compute, "quantile", args, q=q)
    np.testing.assert_allclose(tau, oracle(per_u, lambda g: np.quantile(g, q)), atol=1e-6)
    want_keep = valid_u & (dist_u <= tau[assign_u])
    np.testing.assert_array_equal(keep, want_keep)
    tau, _ = _run(compute, "labeled_spread", args, labeled_spread_q=q)
    np.testing.assert_allclose(tau, oracle(per_l, lambda g: np.quantile(g, q)), atol=1e-6)
  for kappa in (0.0, 1.5):
    tau, _ = _run(compute, "class_stats", args, kappa=kappa)
    want = oracle(per_u, lambda g: g.mean() + kappa * g.std())
    np.testing.assert_allclose(tau, want, atol=1e-5)
  assert tau[2] == 0.0


def test_keep_mask_boundary_and_padding():
  keep = thresholds.keep_mask(
      np.array([0.2, 0.2000001, 0.5, 0.1, 0.3], np.float32),
      np.array([0, 0, 1, 1, 7], np.int32),  # 7: out of range, never kept
      np.array([1, 1, 1, 0, 1], bool),
      np.array([0.2, 0.5], np.float32))
  np.testing.assert_array_equal(np.asarray(keep), [1, 0, 1, 0, 0])
