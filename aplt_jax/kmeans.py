"""Semi-supervised spherical k-means and plain Lloyd k-means (DESIGN E2).

Both are pure functions built on one `lax.while_loop`: assignment is a matmul against the
centres, centre sums are a `segment_sum`, so memory stays O(N*K + N*d). With `axis_name` set
they run per shard inside `jax.shard_map` and reduce every sum with `lax.psum`, so all shards
hold identical centres and agree on when to stop. `sharded_*` wrappers pad, place and run them
over a 1-D 'data' mesh; `jit_*` wrappers are the single-device versions.

`max_iter` and `tol` may be traced scalars: the jitted wrappers take them as arguments, so
changing them never recompiles.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, PartitionSpec as P

from aplt_jax import parallel

DATA_AXIS = parallel.DATA
_EPS = 1e-12
# Full f32 matmuls: assignments must not depend on the backend's default matmul precision
# (TF32/bf16 passes on accelerators), so sharded and single-device runs agree.
_PRECISION = lax.Precision.HIGHEST


class KMeansResult(NamedTuple):
  """Output of one k-means run.

  Attributes:
    centers: [K, d] float32 final centres (unit-norm in spherical mode).
    assign: [N] int32 cluster of each point against the final centres (padding rows: arbitrary).
    objective: [] float32, spherical: sum of `1 - z.mu_assign`; Euclidean: sum of squared
      distances to the assigned centre (scikit-learn's inertia). Valid rows only.
    num_iters: [] int32 centre updates performed.
    shift: [] float32 largest centre movement `max_c ||mu_c - mu_c_prev||` of the last update.
  """
  centers: jax.Array
  assign: jax.Array
  objective: jax.Array
  num_iters: jax.Array
  shift: jax.Array


def l2_normalize(x: jax.Array) -> jax.Array:
  """Rows of `x` [..., d] scaled to unit L2 norm; an all-zero row stays zero (never NaN).

  The other L2 normalisations stay apart on purpose, as results depend on their exact numerics:
  `losses.l2_normalize` (eps 1e-6, clamped inside the loss's gradient), the embed step's
  (`steps.make_embed_step`, a divide where this is an rsqrt) and the report's (numpy, on host).
  """
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * lax.rsqrt(jnp.maximum(sq, _EPS * _EPS))


def _psum(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else lax.psum(x, axis_name)


def _pmax(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else lax.pmax(x, axis_name)


SINKHORN_ITERS = 20


def balance_offsets(logits: jax.Array, free: jax.Array, log_mass: jax.Array, *,
                    num_iters: int = SINKHORN_ITERS, axis_name: str | None = None) -> jax.Array:
  """Per-cluster offsets `g [K]` that give `softmax_k(logits + g)` the cluster masses wanted.

  Sinkhorn-Knopp in the log domain (entropic optimal transport): rows of `logits [K, N]` where
  `free [N]` is True each carry mass 1, cluster k receives `exp(log_mass[k])` of them in all
  (`log_mass` sums, in exp, to the number of free rows; shards' sums are `psum`'d). The
  balanced assignment is then `argmax_k logits[k] + g[k]`: nearest centre, with a per-cluster
  bias that shrinks the clusters that draw more than their share.
  """
  logits = jnp.where(free[None, :], logits, -jnp.inf)

  def col_lse(x):  # logsumexp over the N axis of every shard -> [K]
    top = _pmax(jnp.max(x, axis=1), axis_name)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    return jnp.log(_psum(jnp.sum(jnp.exp(x - top[:, None]), axis=1), axis_name)) + top

  def body(_, g):
    f = -jax.nn.logsumexp(logits + g[:, None], axis=0)  # [N] row potentials
    f = jnp.where(free, f, -jnp.inf)
    return log_mass - col_lse(logits + f[None, :])

  return lax.fori_loop(0, num_iters, body, jnp.zeros(logits.shape[:1], jnp.float32))


def segment_sum(data: jax.Array, ids: jax.Array, mask: jax.Array, k: int) -> jax.Array:
  """Sums rows of `data` [N, ...] into `k` segments by `ids` [N]; masked-out rows go nowhere.

  Masked rows are sent to an extra segment `k` that is cut off, so no [N, ...] copy is made.
  """
  ids = jnp.where(mask, ids, k)
  return jax.ops.segment_sum(data, ids, num_segments=k + 1)[:k]


def _similarities(centres: jax.Array, x: jax.Array) -> jax.Array:
  """`centres [K, d] . x [N, d]^T -> [K, N]`, centre-major.

  The arg-reductions then run over the short leading axis with N contiguous, which XLA:CPU
  vectorises; the point-major [N, K] layout was ~20% slower per Lloyd iteration at N = 100k,
  d = 512, K = 52 (bench/kmeans.py).
  """
  return jnp.dot(centres, x.T, precision=_PRECISION)


def _first_arg(values: jax.Array, best) -> jax.Array:
  """`argmin` / `argmax` over axis 0 of `values` [K, N] -> [N] int32, `best` = jnp.min / max.

  Equal to `jnp.argmin(values, 0)` (first index on ties) for finite values, as two plain
  reductions: XLA:CPU lowers arg-reductions to a scalar loop over (value, index) pairs, which
  took ~40% of a Lloyd iteration at N = 100k; a min/max and a masked min of indices vectorise.
  A row of NaNs maps to K - 1 (never out of range).
  """
  k = values.shape[0]
  top = best(values, axis=0)
  ids = lax.broadcasted_iota(jnp.int32, values.shape, 0)
  return jnp.minimum(jnp.min(jnp.where(values == top[None, :], ids, k), axis=0), k - 1)


def _max_shift(new: jax.Array, old: jax.Array) -> jax.Array:
  return jnp.max(jnp.sqrt(jnp.sum(jnp.square(new - old), axis=-1)))


def _lloyd_loop(init, step, max_iter, tol):
  """Runs `centres = step(centres)` until the largest move is `< tol` or `max_iter` updates."""

  def cond(carry):
    i, _, shift = carry
    return (i < max_iter) & (shift >= tol)

  def body(carry):
    i, centres, _ = carry
    new = step(centres)
    return i + 1, new, _max_shift(new, centres)

  carry = (jnp.zeros((), jnp.int32), init, jnp.full((), jnp.inf, jnp.float32))
  return lax.while_loop(cond, body, carry)


def spherical_kmeans(
    z: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    num_classes: int,
    *,
    max_iter: int | jax.Array = 100,
    tol: float | jax.Array = 1e-5,
    balance_scale: float | jax.Array | None = None,
    axis_name: str | None = None,
) -> KMeansResult:
  """Semi-supervised spherical k-means with `K = num_classes` (DESIGN E2).

  Args:
    z: [N, d] features; normalised here (all-zero rows stay zero).
    labels: [N] int32; `>= 0` clamps a point to that class, `-1` marks it unlabeled.
    valid: [N] bool; False marks padding rows, ignored everywhere (their content may be garbage).
    num_classes: K (static).
    max_iter: most centre updates.
    tol: stop once `max_c ||mu_c - mu_c_prev|| < tol`.
    balance_scale: None: every free point joins its nearest centre. s > 0: the free points are
      assigned by `balance_offsets` on `s * cos`, so that the clusters' masses follow the class
      frequencies of the clamped points (the labeled prior), at every iteration and at the end.
    axis_name: mesh axis to `psum` over when run per shard inside `jax.shard_map`.

  Returns:
    KMeansResult; init is the normalised mean of each class's labeled points, and a centre
    whose members sum to zero (no members) keeps its previous value (zero for a class with no
    labeled point, which then never wins an argmax against a positive similarity).
  """
  k = num_classes
  valid = valid.astype(bool)
  labels = labels.astype(jnp.int32)
  z = l2_normalize(jnp.where(valid[:, None], z.astype(jnp.float32), 0.0))
  clamped = valid & (labels >= 0)

  def centres_from(assign, mask, prev):
    sums = _psum(segment_sum(z, assign, mask, k), axis_name)  # [K, d]
    sq = jnp.sum(sums * sums, axis=-1, keepdims=True)
    fresh = sums * lax.rsqrt(jnp.maximum(sq, _EPS * _EPS))
    return jnp.where(sq > _EPS * _EPS, fresh, prev)

  free_rows = valid & ~clamped
  if balance_scale is not None:
    counts = _psum(segment_sum(jnp.ones(z.shape[:1], jnp.float32), labels, clamped, k), axis_name)
    num_free = _psum(jnp.sum(free_rows.astype(jnp.float32)), axis_name)
    log_mass = jnp.log(jnp.maximum(counts / jnp.maximum(jnp.sum(counts), 1.0) * num_free, _EPS))

  def assign_to(centres):
    sims = _similarities(centres, z)  # [K, N]
    score = sims
    if balance_scale is not None:
      logits = balance_scale * sims
      score = logits + balance_offsets(logits, free_rows, log_mass, axis_name=axis_name)[:, None]
    free = _first_arg(score, jnp.max)
    return jnp.where(clamped, labels, free), sims

  init = centres_from(labels, clamped, jnp.zeros((k, z.shape[-1]), jnp.float32))
  num_iters, centres, shift = _lloyd_loop(
      init, lambda c: centres_from(assign_to(c)[0], valid, c), max_iter, tol)

  assign, sims = assign_to(centres)
  sim = jnp.take_along_axis(sims, jnp.clip(assign, 0, k - 1)[None, :], axis=0)[0]
  objective = _psum(jnp.sum(jnp.where(valid, 1.0 - sim, 0.0)), axis_name)
  return KMeansResult(centres, assign, objective, num_iters, shift)


def euclidean_kmeans(
    x: jax.Array,
    init_centers: jax.Array,
    valid: jax.Array,
    *,
    max_iter: int | jax.Array = 100,
    tol: float | jax.Array = 1e-5,
    axis_name: str | None = None,
) -> KMeansResult:
  """Plain (unconstrained) Lloyd k-means from given centres; the benchmark's faiss counterpart.

  Args:
    x: [N, d] points (not normalised).
    init_centers: [K, d] initial centres.
    valid: [N] bool; False marks padding rows, ignored everywhere.
    max_iter: most centre updates.
    tol: stop once `max_c ||mu_c - mu_c_prev|| < tol` (absolute, unlike scikit-learn's
      variance-scaled tol).
    axis_name: mesh axis to `psum` over when run per shard inside `jax.shard_map`.

  Returns:
    KMeansResult; distances are `||x||^2 - 2 x.mu + ||mu||^2`, an empty cluster keeps its
    previous centre (no relocation, unlike scikit-learn).
  """
  valid = valid.astype(bool)
  x = jnp.where(valid[:, None], x.astype(jnp.float32), 0.0)
  init_centers = init_centers.astype(jnp.float32)
  k = init_centers.shape[0]
  ones = jnp.ones(x.shape[:1], jnp.float32)

  def assign_to(centres):
    # ||x||^2 is constant per row, so the argmin only needs ||mu||^2 - 2 x.mu.
    part = jnp.sum(centres * centres, axis=-1)[:, None] - 2.0 * _similarities(
        centres, x)  # [K, N]
    return _first_arg(part, jnp.min), part

  def step(centres):
    assign, _ = assign_to(centres)
    sums = _psum(segment_sum(x, assign, valid, k), axis_name)  # [K, d]
    counts = _psum(segment_sum(ones, assign, valid, k), axis_name)[:, None]  # [K, 1]
    return jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), centres)

  num_iters, centres, shift = _lloyd_loop(init_centers, step, max_iter, tol)

  assign, part = assign_to(centres)
  sq_dist = jnp.sum(x * x, axis=-1) + jnp.take_along_axis(part, assign[None, :], axis=0)[0]
  objective = _psum(jnp.sum(jnp.where(valid, jnp.maximum(sq_dist, 0.0), 0.0)), axis_name)
  return KMeansResult(centres, assign, objective, num_iters, shift)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _jit_spherical(z, labels, valid, max_iter, tol, balance_scale, *, num_classes):
  return spherical_kmeans(z, labels, valid, num_classes, max_iter=max_iter, tol=tol,
                          balance_scale=balance_scale)


@jax.jit
def _jit_euclidean(x, init_centers, valid, max_iter, tol):
  return euclidean_kmeans(x, init_centers, valid, max_iter=max_iter, tol=tol)


def _scalars(max_iter, tol):
  return jnp.asarray(max_iter, jnp.int32), jnp.asarray(tol, jnp.float32)


def _balance(balance_scale):
  return None if balance_scale is None else jnp.asarray(balance_scale, jnp.float32)


def jit_spherical_kmeans(z, labels, valid, num_classes, *, max_iter=100, tol=1e-5,
                         balance_scale=None):
  """Single-device jitted `spherical_kmeans`; recompiles only for new shapes, K, or balancing
  switched on / off (its scale is traced)."""
  return _jit_spherical(z, labels, valid, *_scalars(max_iter, tol), _balance(balance_scale),
                        num_classes=num_classes)


def jit_euclidean_kmeans(x, init_centers, valid, *, max_iter=100, tol=1e-5):
  """Single-device jitted `euclidean_kmeans`; recompiles only for new shapes."""
  return _jit_euclidean(x, init_centers, valid, *_scalars(max_iter, tol))


@functools.lru_cache(maxsize=None)
def _sharded_fn(kind: str, mesh: Mesh, num_classes: int | None):
  """One jitted shard_map per (mode, mesh, K); jit's own cache handles shapes (and balancing
  on / off: `balance_scale` None or a scalar)."""
  rows, rep = P(DATA_AXIS), P()
  if kind == "spherical":
    def per_shard(z, labels, valid, max_iter, tol, balance_scale):
      return spherical_kmeans(z, labels, valid, num_classes, max_iter=max_iter, tol=tol,
                              balance_scale=balance_scale, axis_name=DATA_AXIS)
    in_specs = (rows, rows, rows, rep, rep, rep)
  else:
    def per_shard(x, init_centers, valid, max_iter, tol):
      return euclidean_kmeans(x, init_centers, valid, max_iter=max_iter, tol=tol,
                              axis_name=DATA_AXIS)
    in_specs = (rows, rep, rows, rep, rep)
  out_specs = KMeansResult(centers=rep, assign=rows, objective=rep, num_iters=rep, shift=rep)
  return jax.jit(jax.shard_map(per_shard, mesh=mesh, in_specs=in_specs, out_specs=out_specs))


def _num_padding(mesh: Mesh, n: int) -> int:
  """Rows to add so that `n` divides evenly over the mesh's 'data' axis."""
  if DATA_AXIS not in mesh.axis_names:
    raise ValueError(f"mesh needs a {DATA_AXIS!r} axis, got {mesh.axis_names}")
  return -n % mesh.shape[DATA_AXIS]


def _shard_rows(mesh: Mesh, n_pad: int, *arrays_and_fills):
  """Pads each [N, ...] array with `n_pad` rows of its fill value and shards it on 'data'.

  Inputs may be numpy (identical on every process) or global arrays already on the mesh
  (e.g. device-resident embeddings): those are never copied to the host.
  """
  sharding = parallel.data_sharded(mesh)
  out = []
  for a, fill in arrays_and_fills:
    a = parallel.placeable(a if isinstance(a, jax.Array) else np.asarray(a))
    if n_pad:
      pad = [(0, n_pad)] + [(0, 0)] * (a.ndim - 1)
      a = (jnp.pad if isinstance(a, jax.Array) else np.pad)(a, pad, constant_values=fill)
    out.append(jax.device_put(a, sharding))
  return out


def shard_rows(mesh: Mesh, *arrays_and_fills) -> list[jax.Array]:
  """`(array [N, ...], fill)` pairs -> arrays padded to a multiple of the mesh size with `fill`
  rows and sharded on its 'data' axis (what the `sharded_*` functions do to their inputs)."""
  n = arrays_and_fills[0][0].shape[0]
  return _shard_rows(mesh, _num_padding(mesh, n), *arrays_and_fills)


def sharded_spherical_kmeans(mesh: Mesh, z, labels, valid, num_classes: int, *,
                             max_iter=100, tol=1e-5, balance_scale=None) -> KMeansResult:
  """`spherical_kmeans` with rows sharded over `mesh`'s 'data' axis; any N.

  N is padded to a multiple of the mesh size with invalid rows; `assign` comes back cut to N.
  """
  n = z.shape[0]
  n_pad = _num_padding(mesh, n)
  z, labels, valid = _shard_rows(mesh, n_pad, (z, 0.0), (labels, -1), (valid, False))
  max_iter, tol, scale = parallel.replicate(
      mesh, (*_scalars(max_iter, tol), _balance(balance_scale)))
  res = _sharded_fn("spherical", mesh, num_classes)(z, labels, valid, max_iter, tol, scale)
  return res._replace(assign=res.assign[:n])


def sharded_euclidean_kmeans(mesh: Mesh, x, init_centers, valid, *,
                             max_iter=100, tol=1e-5) -> KMeansResult:
  """`euclidean_kmeans` with rows sharded over `mesh`'s 'data' axis; any N (as above)."""
  n = x.shape[0]
  n_pad = _num_padding(mesh, n)
  x, valid = _shard_rows(mesh, n_pad, (x, 0.0), (valid, False))
  init_centers, max_iter, tol = parallel.replicate(
      mesh, (jnp.asarray(init_centers, jnp.float32), *_scalars(max_iter, tol)))
  res = _sharded_fn("euclidean", mesh, None)(x, init_centers, valid, max_iter, tol)
  return res._replace(assign=res.assign[:n])
