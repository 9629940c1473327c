"""Tests for aplt_jax.losses on tiny hand-computed cases."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aplt_jax import losses


def _np_log_softmax(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.fixture(scope="module")
def cosface_value_and_grad():
  """One jitted (value, d/dfeatures, d/dcenters) of the summed CosFace loss, shared by tests."""
  def total(features, centers, labels, margin):
    return jnp.sum(losses.cosface_loss(features, centers, labels, scale=16.0, margin=margin))
  return jax.jit(jax.value_and_grad(total, argnums=(0, 1)))


def test_cross_entropy_hand_values():
  logits = jnp.array([[0.0, math.log(3.0)], [1.0, 1.0]])
  labels = jnp.array([1, 0])
  # Row 0: softmax = [1/4, 3/4] so CE = log(4/3); row 1: uniform over 2, CE = log 2.
  np.testing.assert_allclose(losses.cross_entropy(logits, labels),
                             [math.log(4 / 3), math.log(2)], rtol=1e-6)


def test_cross_entropy_is_stable_for_large_logits():
  logits = jnp.array([[1000.0, 0.0], [0.0, -1000.0]])
  out = losses.cross_entropy(logits, jnp.array([1, 0]))
  assert np.all(np.isfinite(out))
  np.testing.assert_allclose(out, [1000.0, 0.0], atol=1e-3)


def test_soft_cross_entropy_matches_hard_and_hand_value():
  logits = jnp.array([[0.0, math.log(3.0)], [2.0, -1.0]])
  targets = jnp.array([[0.5, 0.5], [0.0, 1.0]])
  # Row 0: -(0.5 log 1/4 + 0.5 log 3/4); row 1 is the hard CE of class 1.
  expected0 = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
  expected1 = -_np_log_softmax([2.0, -1.0])[1]
  np.testing.assert_allclose(losses.soft_cross_entropy(logits, targets),
                             [expected0, expected1], rtol=1e-6)
  np.testing.assert_allclose(
      losses.soft_cross_entropy(logits, jax.nn.one_hot(jnp.array([1, 0]), 2)),
      losses.cross_entropy(logits, jnp.array([1, 0])), rtol=1e-6)


def test_prototype_logits_normalises_features_only():
  features = jnp.array([[3.0, 4.0], [0.0, -2.0]])
  centers = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
  out = losses.prototype_logits(features, centers, 2.0)
  # z = [0.6, 0.8] and [0, -1]; logits = 2 * z . m.
  np.testing.assert_allclose(out, [[1.2, 1.6, 2.0], [0.0, -2.0, -1.6]], rtol=1e-6)
  g = jax.grad(lambda m: jnp.sum(losses.prototype_logits(features, m, 2.0)))(centers)
  np.testing.assert_array_equal(g, np.zeros_like(centers))  # frozen prototypes


def test_cosface_margin_zero_is_scaled_cosine_softmax(cosface_value_and_grad):
  rng = np.random.default_rng(0)
  features = rng.normal(size=(5, 4)).astype(np.float32)
  centers = rng.normal(size=(3, 4)).astype(np.float32)
  centers /= np.linalg.norm(centers, axis=1, keepdims=True)
  labels = np.array([0, 1, 2, 1, 0])
  per_ex = losses.cosface_loss(features, centers, labels, scale=16.0, margin=0.0)
  z = features / np.linalg.norm(features, axis=1, keepdims=True)
  logp = _np_log_softmax(16.0 * z @ centers.T)
  expected = -logp[np.arange(5), labels]
  np.testing.assert_allclose(per_ex, expected, rtol=1e-5, atol=1e-5)
  value, _ = cosface_value_and_grad(features, centers, labels, 0.0)
  np.testing.assert_allclose(value, expected.sum(), rtol=1e-5)


def test_cosface_margin_hand_value_and_is_larger():
  features = jnp.array([[3.0, 4.0]])
  centers = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  labels = jnp.array([1])
  # cos = [0.6, 0.8]; s = 2, m = 0.2: logits [1.2, 1.6 - 0.4] = [1.2, 1.2] -> CE = log 2.
  with_margin = losses.cosface_loss(features, centers, labels, scale=2.0, margin=0.2)
  np.testing.assert_allclose(with_margin, [math.log(2.0)], rtol=1e-6)
  no_margin = losses.cosface_loss(features, centers, labels, scale=2.0, margin=0.0)
  np.testing.assert_allclose(no_margin, [math.log(1 + math.exp(-0.4))], rtol=1e-6)
  assert with_margin[0] > no_margin[0]


def test_cosface_zero_feature_row_is_finite(cosface_value_and_grad):
  features = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 0.0]], np.float32)
  centers = np.eye(3, 4, dtype=np.float32)
  labels = np.array([2, 0])
  value, (g_feat, g_centers) = cosface_value_and_grad(features, centers, labels, 0.2)
  assert np.isfinite(value)
  assert np.all(np.isfinite(g_feat))
  np.testing.assert_array_equal(g_centers, np.zeros_like(centers))
  # The zero row has all cosines 0: logits = -s m onehot(y), CE = s m + log(e^{-s m} + C - 1).
  per_ex = losses.cosface_loss(features, centers, labels, scale=16.0, margin=0.2)
  sm = 16.0 * 0.2
  np.testing.assert_allclose(per_ex[0], sm + math.log(math.exp(-sm) + 2.0), rtol=1e-5)


def test_masked_mean_divides_by_batch_size():
  values = jnp.array([1.0, 2.0, 3.0, 4.0])
  np.testing.assert_allclose(losses.masked_mean(values, jnp.array([1.0, 0.0, 1.0, 0.0])), 1.0)
  np.testing.assert_allclose(losses.masked_mean(values, jnp.array([0.5, 0.5, 0.0, 0.0])),
                             0.375)
  np.testing.assert_allclose(losses.masked_mean(values, jnp.array([True, False, False, True])),
                             1.25)
  assert losses.masked_mean(values, jnp.zeros(4)) == 0.0


def test_class_balanced_weights_hand_values():
  """Kept rows 0,0,0,1 (class 2 has none): prior (0.5, 0.3, 0.2) renormalised over the present
  classes gives shares 0.625 / 0.375 of K = 4, i.e. 2.5 over 3 rows and 1.5 over 1 row."""
  labels = jnp.array([0, 0, 0, 1, 2, 2, 1, 0])
  keep = jnp.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
  w = losses.class_balanced_weights(labels, keep, jnp.array([0.5, 0.3, 0.2]))
  np.testing.assert_allclose(w, [2.5 / 3, 1.5, 0.0], rtol=1e-6)
  assert float(jnp.sum(jnp.where(keep, w[labels], 0.0))) == pytest.approx(4.0)
  # Sizes that already follow the prior give every kept row weight 1.
  even = losses.class_balanced_weights(jnp.array([0, 1, 1, 2]), jnp.ones(4, bool),
                                       jnp.array([0.25, 0.5, 0.25]))
  np.testing.assert_allclose(even, [1.0, 1.0, 1.0], rtol=1e-6)


def test_consistency_loss_hand_value():
  logits_s = jnp.array([[0.0, math.log(3.0)], [1.0, 1.0], [5.0, -5.0]])
  pseudo = jnp.array([1, 0, 1])
  weights = jnp.array([1.0, 1.0, 0.0])
  # (log(4/3) + log 2 + 0) / 3: the masked third row contributes nothing, B = 3 divides.
  expected = (math.log(4 / 3) + math.log(2)) / 3
  np.testing.assert_allclose(losses.consistency_loss(logits_s, pseudo, weights), expected,
                             rtol=1e-6)


def test_aplt_total_weights_each_term():
  out = losses.aplt_total(jnp.float32(1.0), jnp.float32(2.0), jnp.float32(3.0),
                          jnp.float32(5.0), alpha=0.5, beta=0.1, lambda_u=2.0)
  # 1 + 0.5*2 + 2*(3 + 0.1*5) = 9
  np.testing.assert_allclose(out, 9.0, rtol=1e-6)
  ablated = losses.aplt_total(1.0, 2.0, 3.0, 5.0, alpha=0.0, beta=0.0, lambda_u=1.0)
  np.testing.assert_allclose(ablated, 4.0)
