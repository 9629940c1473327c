"""Self-adaptive class-wise thresholds on cosine distance to the cluster centre (DESIGN E3).

A rule maps per-sample distances to one threshold per class, `tau [C] float32`; an unlabeled
sample is kept when `d <= tau(y_hat)`. Every rule is a pure, jittable function with the same
signature (see `quantile`), so the config name `aplt.threshold` picks one through `get(name)`.
A class with no members gets `tau = 0.0` (nothing to keep), never NaN.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from aplt_jax.registry import Registry

ThresholdRule = Callable[..., jax.Array]

_RULES: Registry[ThresholdRule] = Registry("threshold rule")

# Largest possible cosine distance `1 - z.mu` between unit vectors: "keep everything".
MAX_DISTANCE = 2.0


register = _RULES.register  # decorator adding a rule under a name
get = _RULES.get  # the rule registered as a name
names = _RULES.names  # registered rule names, sorted


def _class_ids(cls: jax.Array, valid: jax.Array, num_classes: int) -> jax.Array:
  """[N] class ids with invalid or out-of-range rows sent to the overflow bucket `num_classes`."""
  cls = cls.astype(jnp.int32)
  ok = valid.astype(bool) & (cls >= 0) & (cls < num_classes)
  return jnp.where(ok, cls, num_classes)


def _counts(ids: jax.Array, num_classes: int) -> jax.Array:
  return jax.ops.segment_sum(jnp.ones_like(ids), ids, num_segments=num_classes + 1)[:num_classes]


def class_quantile(dist: jax.Array, cls: jax.Array, valid: jax.Array, num_classes: int,
                   q: float | jax.Array) -> jax.Array:
  """Per-class `q`-quantile of `dist` [N] grouped by `cls` [N] (valid rows only) -> [C].

  Linear interpolation between order statistics, as numpy's default method. One sort by
  (class, distance) and a gather per class: O(N log N), no [C, N] matrix. Empty class: 0.0.
  """
  n = dist.shape[0]
  if n == 0:
    return jnp.zeros((num_classes,), jnp.float32)
  ids = _class_ids(cls, valid, num_classes)
  _, sorted_d = lax.sort((ids, dist.astype(jnp.float32)), num_keys=2)
  counts = _counts(ids, num_classes)
  starts = jnp.cumsum(counts) - counts  # first sorted position of each class
  pos = jnp.maximum(counts - 1, 0).astype(jnp.float32) * jnp.asarray(q, jnp.float32)
  lo = jnp.floor(pos)
  frac = pos - lo
  lo = lo.astype(jnp.int32)
  hi = jnp.minimum(lo + 1, jnp.maximum(counts - 1, 0))
  a = sorted_d[jnp.clip(starts + lo, 0, n - 1)]
  b = sorted_d[jnp.clip(starts + hi, 0, n - 1)]
  return jnp.where(counts > 0, a + (b - a) * frac, 0.0)


@register("quantile")
def quantile(dist_u, assign_u, valid_u, dist_l, label_l, valid_l, num_classes, *,
             q=0.3, kappa=0.0, labeled_spread_q=0.9):
  """tau(c) = `q`-quantile of the distances of cluster c's valid unlabeled members.

  The common rule signature:
    dist_u: [Nu] float32 unlabeled distances `1 - z.mu_assign`.
    assign_u: [Nu] int32 cluster of each unlabeled sample.
    valid_u: [Nu] bool, False for padding.
    dist_l: [Nl] float32 labeled distances to their own class centre.
    label_l: [Nl] int32 labels.
    valid_l: [Nl] bool, False for padding.
    num_classes: C (static).
    q, kappa, labeled_spread_q: rule parameters (each rule reads its own).
  Returns [C] float32 thresholds.
  """
  del dist_l, label_l, valid_l, kappa, labeled_spread_q
  return class_quantile(dist_u, assign_u, valid_u, num_classes, q)


@register("class_stats")
def class_stats(dist_u, assign_u, valid_u, dist_l, label_l, valid_l, num_classes, *,
                q=0.3, kappa=0.0, labeled_spread_q=0.9):
  """tau(c) = mean + kappa * std (population) of cluster c's valid unlabeled distances."""
  del dist_l, label_l, valid_l, q, labeled_spread_q
  ids = _class_ids(assign_u, valid_u, num_classes)
  d = dist_u.astype(jnp.float32)
  counts = _counts(ids, num_classes)
  denom = jnp.maximum(counts, 1).astype(jnp.float32)
  seg = lambda v: jax.ops.segment_sum(v, ids, num_segments=num_classes + 1)[:num_classes]
  mean = seg(d) / denom
  # Two passes (deviations from the class mean) for a variance that cannot go negative.
  dev = d - jnp.append(mean, 0.0)[ids]
  std = jnp.sqrt(seg(dev * dev) / denom)
  return jnp.where(counts > 0, mean + kappa * std, 0.0)


@register("labeled_spread")
def labeled_spread(dist_u, assign_u, valid_u, dist_l, label_l, valid_l, num_classes, *,
                   q=0.3, kappa=0.0, labeled_spread_q=0.9):
  """tau(c) = `labeled_spread_q`-quantile of class c's labeled distances to its centre."""
  del dist_u, assign_u, valid_u, q, kappa
  return class_quantile(dist_l, label_l, valid_l, num_classes, labeled_spread_q)


@register("none")
def keep_all(dist_u, assign_u, valid_u, dist_l, label_l, valid_l, num_classes, *,
             q=0.3, kappa=0.0, labeled_spread_q=0.9):
  """Keep everything (ablation): tau = 2.0, the largest cosine distance; empty class: 0.0."""
  del dist_u, dist_l, label_l, valid_l, q, kappa, labeled_spread_q
  counts = _counts(_class_ids(assign_u, valid_u, num_classes), num_classes)
  return jnp.where(counts > 0, MAX_DISTANCE, 0.0).astype(jnp.float32)


def keep_mask(dist_u: jax.Array, assign_u: jax.Array, valid_u: jax.Array,
              thresholds: jax.Array) -> jax.Array:
  """[Nu] bool: valid and `d <= tau(assign)` (an out-of-range cluster id is never kept)."""
  num_classes = thresholds.shape[0]
  ids = _class_ids(assign_u, valid_u, num_classes)
  tau = jnp.append(thresholds.astype(jnp.float32), -jnp.inf)[ids]
  return (ids < num_classes) & (dist_u <= tau)


def compute(name: str, dist_u, assign_u, valid_u, dist_l, label_l, valid_l, num_classes: int,
            **params) -> tuple[jax.Array, jax.Array]:
  """Runs rule `name` -> (thresholds [C] float32, keep [Nu] bool)."""
  tau = get(name)(dist_u, assign_u, valid_u, dist_l, label_l, valid_l, num_classes, **params)
  return tau, keep_mask(dist_u, assign_u, valid_u, tau)
