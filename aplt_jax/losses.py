"""Loss functions of the online phase (DESIGN §2, E5–E9).

Everything here is a pure, jittable function of arrays. Per-example losses return `[B]` so the
caller chooses the reduction (the unlabeled losses are masked means over the batch).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-6) -> jax.Array:
  """Scales `x` to unit L2 norm along `axis`; rows with norm < `eps` are divided by `eps`.

  The clamp sits inside the reciprocal square root, so an all-zero row gives zeros and a
  finite gradient (no `sqrt(0)` on the differentiated path).
  """
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example cross-entropy with integer labels.

  Args:
    logits: [B, C] unnormalised scores.
    labels: [B] int class indices.

  Returns:
    [B] float, `-log softmax(logits)[y]`.
  """
  logp = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)
  return -picked[:, 0]


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example cross-entropy against a target distribution.

  Args:
    logits: [B, C] unnormalised scores.
    targets: [B, C] non-negative rows (normally summing to 1).

  Returns:
    [B] float, `-sum_c t_c log softmax(logits)_c`.
  """
  return -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def prototype_logits(features: jax.Array, centers: jax.Array, scale: float) -> jax.Array:
  """Scaled-cosine logits of the memory-based prototype classifier.

  The prototypes are frozen: they enter through `stop_gradient`, so gradients reach only the
  features (and through them the backbone).

  Args:
    features: [B, d] raw clip features `f` (normalised here).
    centers: [C, d] unit-norm prototypes `M` (used as given).
    scale: the cosine scale `s`.

  Returns:
    [B, C] `s * normalize(f) @ M^T`.
  """
  z = l2_normalize(features.astype(jnp.float32))
  m = jax.lax.stop_gradient(centers).astype(jnp.float32)
  return scale * (z @ m.T)


def cosface_loss(features: jax.Array, centers: jax.Array, labels: jax.Array, *,
                 scale: float = 16.0, margin: float = 0.2) -> jax.Array:
  """Per-example CosFace loss against frozen prototypes (E6, E8).

  Args:
    features: [B, d] raw clip features.
    centers: [C, d] unit-norm prototypes (no gradient).
    labels: [B] int target classes.
    scale: cosine scale `s`.
    margin: additive cosine margin `m` subtracted from the target class; 0 gives a plain
      scaled-cosine softmax.

  Returns:
    [B] float, `CE(s * (cos - m * onehot(y)), y)`.
  """
  logits = prototype_logits(features, centers, scale)
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return cross_entropy(logits - (scale * margin) * onehot, labels)


def masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  """`sum(w * v) / B`: FixMatch's convention, dividing by the batch size, not the kept count.

  Args:
    values: [B] per-example losses.
    weights: [B] per-example weights (0/1 masks or soft weights).

  Returns:
    [] float.
  """
  return jnp.sum(weights.astype(values.dtype) * values) / values.shape[0]


def class_balanced_weights(labels: jax.Array, keep: jax.Array, prior: jax.Array) -> jax.Array:
  """Per-class weights that give each class's kept rows its `prior` share of the kept mass.

  Args:
    labels: [N] int class of each row.
    keep: [N] bool rows that count.
    prior: [C] float class frequencies.

  Returns:
    [C] float32 `w_c = prior_c / P * K / n_c` (K kept rows, n_c of them in class c, P the prior
    mass of the classes with n_c > 0; 0 where n_c = 0): the kept rows' weights average 1 and
    class c's rows carry `K * prior_c / P` of them together.
  """
  counts = jnp.zeros(prior.shape, jnp.float32).at[labels].add(keep.astype(jnp.float32))
  present = counts > 0
  mass = jnp.sum(jnp.where(present, prior, 0.0))
  share = prior / jnp.maximum(mass, 1e-12)
  return jnp.where(present, share * jnp.sum(counts) / jnp.maximum(counts, 1.0), 0.0)


def consistency_loss(logits_s: jax.Array, pseudo: jax.Array, weights: jax.Array) -> jax.Array:
  """Weighted hard-label consistency loss on the strong view (E7 and the baselines).

  Args:
    logits_s: [B, C] parametric logits of the strong view.
    pseudo: [B] int pseudo-labels from the weak view.
    weights: [B] per-example weights from the SSL method's rule.

  Returns:
    [] float, `masked_mean(CE(logits_s, pseudo), weights)`.
  """
  return masked_mean(cross_entropy(logits_s, pseudo), weights)


def aplt_total(sup_logits: jax.Array, sup_margin: jax.Array, u_logits: jax.Array,
               u_margin: jax.Array, *, alpha: float, beta: float,
               lambda_u: float) -> jax.Array:
  """The APLT objective, E9: `L_sup^logits + α L_sup^margin + λ_u (L_u^logits + β L_u^margin)`.

  All four inputs are scalars (already reduced).
  """
  return sup_logits + alpha * sup_margin + lambda_u * (u_logits + beta * u_margin)
