"""Tests for the SSL masking rules (aplt_jax.ssl) on hand-computed cases."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aplt_jax import ssl
from aplt_jax.ssl import freematch
from configs import default

ALL = ["aplt", "fixmatch", "flexmatch", "freematch", "softmatch", "supervised",
       "supervised_proto"]


def _f32(x):
  return np.asarray(x, np.float32)


@pytest.fixture(scope="module")
def flex_fns():
  """Jitted FlexMatch rules (tau = 0.9), with and without threshold warm-up."""
  return {
      warm: jax.jit(ssl.get("flexmatch", {"threshold": 0.9,
                                          "flexmatch": {"thresh_warmup": warm}}).pseudo_label)
      for warm in (True, False)
  }


@pytest.fixture(scope="module")
def free_method():
  """FreeMatch with m = 0.5 (easy hand arithmetic) and its jitted functions."""
  cfg = ml_collections.ConfigDict({"freematch": {"ema": 0.5, "ent_weight": 0.01}})
  method = ssl.get("freematch", cfg)
  return method, jax.jit(method.pseudo_label), jax.jit(method.extra_loss)


def test_registry_lists_methods_and_flags():
  assert ssl.names() == ALL
  for name in ALL:
    method = ssl.get(name, None)
    assert method.name == name
    assert method.uses_unlabeled == (name not in ("supervised", "supervised_proto"))
    assert method.uses_prototypes == (name in ("aplt", "supervised_proto"))
  with pytest.raises(ValueError, match="fixmatch"):
    ssl.get("fixmatc", {})
  with pytest.raises(ValueError, match="already registered"):
    ssl.register("fixmatch")(lambda cfg: None)


def test_cfg_value_reads_configdict_dict_and_defaults():
  cfg = ml_collections.ConfigDict({"threshold": 0.8, "softmatch": {"n_sigma": 3.0}})
  assert ssl.cfg_value(cfg, "threshold") == 0.8
  assert ssl.cfg_value(cfg, "softmatch.n_sigma") == 3.0
  assert ssl.cfg_value(cfg, "softmatch.ema") == 0.999
  assert ssl.cfg_value({"flexmatch": {"thresh_warmup": False}}, "flexmatch.thresh_warmup") is False
  assert ssl.cfg_value(None, "freematch.ent_weight") == 0.001


def test_freematch_fairness_weight_default_is_usbs():
  """0.001, the `ent_loss_ratio` of every FreeMatch config USB ships, in both default sources."""
  assert ssl.cfg_value(None, "freematch.ent_weight") == 0.001
  assert default.get_config().ssl.freematch.ent_weight == 0.001


@pytest.mark.parametrize("name", ["fixmatch", "aplt"])
def test_fixmatch_mask(name):
  method = ssl.get(name, {"threshold": 0.95})
  probs = _f32([[0.96, 0.04], [0.5, 0.5], [0.95, 0.05], [0.1, 0.9], [0.02, 0.98]])
  state = method.init_state(2, 10)
  pseudo, weights, new_state = method.pseudo_label(probs, jnp.arange(5), state)
  np.testing.assert_array_equal(pseudo, [0, 0, 0, 1, 1])
  np.testing.assert_array_equal(weights, [1, 0, 1, 0, 1])  # >= tau keeps the 0.95 row
  assert new_state == {}
  lower = ssl.get(name, {"threshold": 0.9})
  np.testing.assert_array_equal(lower.pseudo_label(probs, jnp.arange(5), state)[1],
                                [1, 0, 1, 1, 1])


def test_supervised_has_no_unlabeled_loss():
  method = ssl.get("supervised", {})
  probs = _f32([[0.99, 0.01], [0.3, 0.7]])
  _, weights, _ = method.pseudo_label(probs, jnp.arange(2), method.init_state(2, 4))
  np.testing.assert_array_equal(weights, [0, 0])
  assert method.extra_loss(jnp.zeros((2, 2)), weights, {}) == 0.0


# FlexMatch, tau = 0.9, C = 3, Nu = 8. Call 1 selects u0 -> 0, u1 -> 1, u2 -> 0.
FLEX_UIDX_1 = np.array([0, 1, 2, 3, 4])
FLEX_PROBS_1 = _f32([[0.95, 0.03, 0.02],
                     [0.02, 0.96, 0.02],
                     [0.91, 0.05, 0.04],
                     [0.6, 0.3, 0.1],
                     [0.4, 0.35, 0.25]])
# Call 2 (duplicates u5): u3 -> 2, u5 -> 2 (its later, unconfident duplicate must not undo
# it), u0 -> 1 (overwrites 0), u1 stays 1.
FLEX_UIDX_2 = np.array([3, 5, 0, 5, 1])
FLEX_PROBS_2 = _f32([[0.04, 0.04, 0.92],
                     [0.01, 0.01, 0.98],
                     [0.02, 0.97, 0.01],
                     [0.1, 0.85, 0.05],
                     [0.5, 0.3, 0.2]])


@pytest.mark.parametrize("warmup", [True, False])
def test_flexmatch_masks_with_previous_status_then_updates(flex_fns, warmup):
  fn = flex_fns[warmup]
  state = ssl.get("flexmatch", {}).init_state(3, 8)
  np.testing.assert_array_equal(state["selected"], -np.ones(8))
  pseudo, weights, state = fn(FLEX_PROBS_1, FLEX_UIDX_1, state)
  # First batch, fresh state: the mask uses beta = 0 for every class, so every threshold is
  # 0.9 * 0 / 2 = 0 and every row passes, even the 0.6 and 0.4 ones.
  np.testing.assert_array_equal(weights, [1, 1, 1, 1, 1])
  np.testing.assert_array_equal(state["selected"], [0, 1, 0, -1, -1, -1, -1, -1])
  np.testing.assert_array_equal(pseudo, [0, 1, 0, 0, 0])
  # Counts after the batch: -1: 5, class 0: 2, class 1: 1, class 2: 0.
  if warmup:
    acc = [2 / 5, 1 / 5, 0.0]  # divided by the -1 count (5)
  else:
    acc = [1.0, 1 / 2, 0.0]  # divided by the largest class count (2)
  np.testing.assert_allclose(state["classwise_acc"], acc, rtol=1e-6)

  pseudo, weights, state = fn(FLEX_PROBS_2, FLEX_UIDX_2, state)
  np.testing.assert_array_equal(pseudo, [2, 2, 1, 1, 0])
  # The mask uses the status of call 1; max p = [0.92, 0.98, 0.97, 0.85, 0.5].
  if warmup:
    # thresholds 0.9 * [0.4 / 1.6, 0.2 / 1.8, 0] = [0.225, 0.1, 0]: every row passes.
    expected_w = [1, 1, 1, 1, 1]
  else:
    # thresholds 0.9 * [1 / 1, 0.5 / 1.5, 0] = [0.9, 0.3, 0]: the class-0 row (0.5) fails.
    # (With the status updated first it would be [0.3, 0.9, 0.9]: the 0.85 row would fail.)
    expected_w = [1, 1, 1, 1, 0]
  np.testing.assert_array_equal(weights, expected_w)
  np.testing.assert_array_equal(state["selected"], [1, 1, 0, 2, -1, 2, -1, -1])
  # Counts: -1: 3, class 0: 1, class 1: 2, class 2: 2.
  acc = [1 / 3, 2 / 3, 2 / 3] if warmup else [1 / 2, 1.0, 1.0]
  np.testing.assert_allclose(state["classwise_acc"], acc, rtol=1e-6)


def test_flexmatch_no_selection_keeps_acc_and_all_unselected(flex_fns):
  state = ssl.get("flexmatch", {}).init_state(3, 4)
  state = dict(state, classwise_acc=jnp.array([0.5, 1.0, 0.0]))
  probs = _f32([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
  _, weights, new_state = flex_fns[True](probs, np.array([0, 1, 2]), state)
  np.testing.assert_array_equal(new_state["selected"], [-1, -1, -1, -1])
  np.testing.assert_allclose(new_state["classwise_acc"], [0.5, 1.0, 0.0])
  # Thresholds 0.3, 0.9, 0: rows 0 and 2 pass, row 1 (0.6 < 0.9) fails.
  np.testing.assert_array_equal(weights, [1, 0, 1])


# FreeMatch hand case: m = 0.5, C = 3, B = 4.
FREE_PROBS = _f32([[0.7, 0.2, 0.1],
                   [0.1, 0.8, 0.1],
                   [0.45, 0.3, 0.25],
                   [0.2, 0.45, 0.35]])
# Strong-view probabilities; rows 0-2 are selected by the mask, row 3 is not.
FREE_PS = _f32([[0.6, 0.3, 0.1],
                [0.2, 0.7, 0.1],
                [0.5, 0.25, 0.25],
                [0.1, 0.1, 0.8]])


def test_freematch_update_and_mask(free_method):
  method, pseudo_fn, _ = free_method
  state = method.init_state(3, 100)
  np.testing.assert_allclose(state["tau"], 1 / 3)
  pseudo, weights, state = pseudo_fn(FREE_PROBS, np.arange(4), state)
  # mean max p = (0.7 + 0.8 + 0.45 + 0.45) / 4 = 0.6
  tau = 0.5 / 3 + 0.5 * 0.6
  # mean p = [1.45, 1.75, 0.8] / 4
  p_model = [1 / 6 + 0.5 * 1.45 / 4, 1 / 6 + 0.5 * 1.75 / 4, 1 / 6 + 0.5 * 0.8 / 4]
  # argmax = [0, 1, 0, 1]: histogram [0.5, 0.5, 0]
  label_hist = [1 / 6 + 0.25, 1 / 6 + 0.25, 1 / 6]
  np.testing.assert_allclose(state["tau"], tau, rtol=1e-6)
  np.testing.assert_allclose(state["p_model"], p_model, rtol=1e-6)
  np.testing.assert_allclose(state["label_hist"], label_hist, rtol=1e-6)
  np.testing.assert_array_equal(pseudo, [0, 1, 0, 1])
  # Class thresholds: tau * p_model[c] / max p_model = [0.4213, 0.4667, ...];
  # row 3 (class 1, 0.45) fails, row 2 (class 0, 0.45) passes.
  assert tau * p_model[0] / p_model[1] < 0.45 < tau
  np.testing.assert_array_equal(weights, [1, 1, 1, 0])


def test_freematch_fairness_hand_value_and_gradient(free_method):
  method, pseudo_fn, extra_fn = free_method
  _, weights, state = pseudo_fn(FREE_PROBS, np.arange(4), method.init_state(3, 100))
  logits_s = np.log(FREE_PS)
  # Selected strong rows 0-2: argmax [0, 1, 0] -> hist_s = [2/3, 1/3, 0];
  # mean p_s = [1.3, 1.25, 0.45] / 3; b ∝ [0.65, 1.25, 0] (1/0 -> 0) = [0.65, 1.25, 0] / 1.9.
  b = np.array([0.65 / 1.9, 1.25 / 1.9, 0.0])
  # a ∝ p_model / label_hist = [0.835, 0.925, 1.6], sum 3.36.
  a = np.array([0.835, 0.925, 1.6]) / 3.36
  fair = float(np.sum(a * np.log(b + 1e-12)))
  np.testing.assert_allclose(freematch.fairness(logits_s, weights, state), fair, rtol=1e-5)
  np.testing.assert_allclose(extra_fn(logits_s, weights, state), 0.01 * fair, rtol=1e-5)
  # Changing the unselected row changes nothing; its gradient is zero.
  other = logits_s.copy()
  other[3] = [3.0, -1.0, 0.0]
  np.testing.assert_allclose(extra_fn(other, weights, state), 0.01 * fair, rtol=1e-5)
  grad = jax.jit(jax.grad(method.extra_loss))(jnp.asarray(logits_s), weights, state)
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(grad[3], 0.0)
  assert np.abs(grad[:3]).sum() > 0


def test_freematch_fairness_zero_when_nothing_selected(free_method):
  method, _, extra_fn = free_method
  state = method.init_state(3, 10)
  logits_s = jnp.asarray(np.log(FREE_PS))
  zeros = jnp.zeros(4)
  assert extra_fn(logits_s, zeros, state) == 0.0
  grad = jax.grad(method.extra_loss)(logits_s, zeros, state)
  np.testing.assert_array_equal(grad, np.zeros((4, 3)))


def test_softmatch_weights_hand_case_without_alignment():
  method = ssl.get("softmatch", {"softmatch": {"ema": 0.5, "n_sigma": 2.0,
                                               "dist_align": False}})
  probs = _f32([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
  state = dict(method.init_state(2, 10), mu=jnp.float32(0.8), var=jnp.float32(0.01))
  pseudo, weights, new = method.pseudo_label(probs, np.arange(3), state)
  # conf [0.9, 0.6, 0.7]: mean 0.7333, unbiased var 0.0466667 / 2 = 0.0233333.
  mu = 0.5 * 0.8 + 0.5 * (2.2 / 3)
  var = 0.5 * 0.01 + 0.5 * (0.07 / 3)  # sum of squared deviations 0.14 / 3, over 2
  assert math.isclose(mu, 0.766667, rel_tol=1e-5)
  np.testing.assert_allclose(new["mu"], mu, rtol=1e-5)
  np.testing.assert_allclose(new["var"], var, rtol=1e-5)
  np.testing.assert_allclose(new["p_model"], [0.5, 0.5])  # untouched without alignment
  # 2 var / n_sigma^2 = var / 2 = 0.0083333; row 1 gap -1/6, row 2 gap -1/15.
  expected = [1.0, math.exp(-(1 / 36) / (var / 2)), math.exp(-(1 / 225) / (var / 2))]
  np.testing.assert_allclose(weights, expected, rtol=1e-4)
  np.testing.assert_allclose(expected[1], math.exp(-10 / 3), rtol=1e-6)
  np.testing.assert_array_equal(pseudo, [0, 0, 1])


# SoftMatch with alignment, C = 2, m = 0.5, n_sigma = 2, from a fresh state (mu 1/2, var 1).
# Batch 1: mean [0.6, 0.4]. Batch 2: mean [0.4, 0.6], which brings p_model back to uniform.
SOFT_PROBS_1 = _f32([[0.55, 0.45], [0.95, 0.05], [0.3, 0.7]])
SOFT_PROBS_2 = _f32([[0.2, 0.8], [0.6, 0.4]])


def test_softmatch_first_batch_sets_p_model_and_labels_come_from_raw_prediction():
  method = ssl.get("softmatch", {"softmatch": {"ema": 0.5}})  # n_sigma 2, alignment on
  fn = jax.jit(method.pseudo_label)
  state = method.init_state(2, 10)
  np.testing.assert_allclose([state["mu"], state["var"]], [0.5, 1.0])
  assert state["seen"] == 0

  pseudo, weights, state = fn(SOFT_PROBS_1, np.arange(3), state)
  # p_model is the first batch's mean [0.6, 0.4] (an EMA from uniform would give [0.55, 0.45]).
  np.testing.assert_allclose(state["p_model"], [0.6, 0.4], rtol=1e-6)
  assert state["seen"] == 1
  # Aligned rows ∝ p / [0.6, 0.4]: [11/12, 9/8] -> [22, 27]/49, [19/12, 1/8] -> [38, 3]/41,
  # [1/2, 7/4] -> [2, 7]/9. Row 0's aligned argmax is class 1, but its pseudo-label is the raw
  # argmax, class 0.
  np.testing.assert_array_equal(pseudo, [0, 0, 1])
  conf = [27 / 49, 38 / 41, 7 / 9]  # 0.5510204, 0.9268293, 0.7777778: mean 0.7518758
  mean = sum(conf) / 3
  mu = 0.5 * 0.5 + 0.5 * mean  # 0.6259379
  var = 0.5 * 1.0 + 0.5 * sum((c - mean) ** 2 for c in conf) / 2  # 0.5 + 0.5 * 0.0358113
  assert math.isclose(mu, 0.6259379, rel_tol=1e-6) and math.isclose(var, 0.5179056, rel_tol=1e-6)
  np.testing.assert_allclose(state["mu"], mu, rtol=1e-5)
  np.testing.assert_allclose(state["var"], var, rtol=1e-5)
  # Only row 0 (aligned conf 0.5510 < mu) is down-weighted: exp(-gap^2 / (var / 2)).
  w0 = math.exp(-(conf[0] - mu) ** 2 / (var / 2))  # gap -0.0749175: 0.97856
  assert math.isclose(w0, 0.97856, rel_tol=1e-4)
  np.testing.assert_allclose(weights, [w0, 1.0, 1.0], rtol=1e-5)

  pseudo, weights, state = fn(SOFT_PROBS_2, np.arange(2), state)
  # From the second batch on p_model is an EMA: 0.5 [0.6, 0.4] + 0.5 [0.4, 0.6] = [0.5, 0.5],
  # so the aligned probabilities equal the raw ones: conf [0.8, 0.6], mean 0.7, var 0.02.
  np.testing.assert_allclose(state["p_model"], [0.5, 0.5], rtol=1e-6)
  assert state["seen"] == 2
  mu2, var2 = 0.5 * mu + 0.5 * 0.7, 0.5 * var + 0.5 * 0.02  # 0.6629690, 0.2689528
  np.testing.assert_allclose([state["mu"], state["var"]], [mu2, var2], rtol=1e-5)
  w1 = math.exp(-(0.6 - mu2) ** 2 / (var2 / 2))  # gap -0.062969: 0.97094
  assert math.isclose(w1, 0.97094, rel_tol=1e-4)
  np.testing.assert_allclose(weights, [1.0, w1], rtol=1e-5)
  np.testing.assert_array_equal(pseudo, [1, 0])


@pytest.mark.parametrize("name", ALL)
def test_every_method_jits_and_keeps_state_structure(name):
  num_classes, num_unlabeled, batch = 4, 16, 6
  method = ssl.get(name, {})
  traces = []

  def counted(*args):
    traces.append(1)
    return method.pseudo_label(*args)

  pseudo_fn, extra_fn = jax.jit(counted), jax.jit(method.extra_loss)
  rng = np.random.default_rng(1)
  logits_w = rng.normal(size=(batch, num_classes)) * 3
  probs = jax.nn.softmax(jnp.asarray(logits_w, jnp.float32))
  logits_s = jnp.asarray(rng.normal(size=(batch, num_classes)), jnp.float32)
  uidx = jnp.asarray(rng.integers(0, num_unlabeled, size=batch), jnp.int32)
  state = method.init_state(num_classes, num_unlabeled)
  pseudo, weights, new_state = pseudo_fn(probs, uidx, state)
  assert pseudo.shape == (batch,) and pseudo.dtype == jnp.int32
  assert weights.shape == (batch,) and weights.dtype == jnp.float32
  assert np.all((weights >= 0) & (weights <= 1))
  # Same tree, shapes and dtypes: the state can be carried by a jitted step without retracing.
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  for old, new in zip(jax.tree.leaves(state), jax.tree.leaves(new_state)):
    assert old.shape == new.shape and old.dtype == new.dtype
    assert not getattr(new, "weak_type", False)
  pseudo_fn(probs, uidx, new_state)
  assert len(traces) == 1  # the updated state did not retrace
  extra = extra_fn(logits_s, weights, new_state)
  assert extra.shape == () and np.isfinite(extra)
  if name != "freematch":
    assert extra == 0.0


@pytest.mark.parametrize("name", ["flexmatch", "freematch", "softmatch"])
def test_sharded_batch_matches_single_device(name):
  """Under jit with the batch split over 2 devices, statistics stay global."""
  devices = np.array(jax.devices()[:2])
  if devices.size < 2:
    pytest.skip("needs 2 devices")
  mesh = Mesh(devices, ("data",))
  method = ssl.get(name, {"threshold": 0.5, "freematch": {"ema": 0.9},
                          "softmatch": {"ema": 0.9}})
  rng = np.random.default_rng(2)
  probs = np.asarray(jax.nn.softmax(jnp.asarray(rng.normal(size=(8, 3)) * 2, jnp.float32)))
  logits_s = rng.normal(size=(8, 3)).astype(np.float32)
  uidx = rng.permutation(12)[:8].astype(np.int32)
  state = method.init_state(3, 12)

  def step(p, u, s, ls):
    pseudo, w, s = method.pseudo_label(p, u, s)
    return pseudo, w, s, method.extra_loss(ls, w, s)

  fn = jax.jit(step)
  single = fn(probs, uidx, state, logits_s)
  batch = NamedSharding(mesh, P("data"))
  sharded = fn(jax.device_put(probs, batch), jax.device_put(uidx, batch),
               jax.device_put(state, NamedSharding(mesh, P())),
               jax.device_put(logits_s, batch))
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
