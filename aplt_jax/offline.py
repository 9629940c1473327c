"""The offline phase (DESIGN §2, E1-E4): embed, cluster, threshold, build the prototype memory.

`run_offline_phase` is the whole phase: `embed` (E1) runs the frozen model over the training
clips, then `pseudo_label` (E2-E4), a pure jitted function of the embeddings: semi-supervised
spherical k-means over labeled + unlabeled points, per-class self-adaptive thresholds on the
cosine distance to the cluster centre, and prototypes from labeled points plus the kept
unlabeled ones. `to_prototypes` lays the result out as the dense `Prototypes` pytree that the
train step indexes by clip index; `pseudo_label_metrics` gives the per-round log scalars.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aplt_jax import faults
from aplt_jax import kmeans
from aplt_jax import thresholds as thresholds_lib
from aplt_jax.state import Prototypes


class OfflineResult(NamedTuple):
  """One offline phase's output (rows of `*_u` follow the unlabeled input order).

  Attributes:
    kmeans_centers: [C, d] unit-norm k-means centres (E2).
    centers: [C, d] unit-norm prototypes `m_c` (E4).
    assign_u: [Nu] int32 cluster (offline pseudo-label) of each unlabeled point.
    dist_u: [Nu] float32 cosine distance `1 - z.mu_assign`, clipped to [0, 2].
    keep_u: [Nu] bool, valid and within its cluster's threshold.
    thresholds: [C] float32 per-class thresholds tau_t(c).
    num_iters: [] int32 k-means centre updates.
    objective: [] float32 k-means objective (sum of valid distances).
  """
  kmeans_centers: jax.Array
  centers: jax.Array
  assign_u: jax.Array
  dist_u: jax.Array
  keep_u: jax.Array
  thresholds: jax.Array
  num_iters: jax.Array
  objective: jax.Array


def _segment_sum(data, ids, mask, k):
  ids = jnp.where(mask, ids, k)
  return jax.ops.segment_sum(data, ids, num_segments=k + 1)[:k]


@functools.partial(jax.jit, static_argnames=("num_classes", "threshold"))
def _select(z_l, y_l, valid_l, z_u, valid_u, kmeans_centers, assign_u, q, kappa,
            labeled_spread_q, *, num_classes, threshold):
  """E3 thresholds and E4 prototypes from the k-means result.

  Returns (prototypes [C, d], dist_u [Nu], keep_u [Nu], thresholds [C]).
  """
  c = num_classes
  z_l = kmeans.l2_normalize(jnp.where(valid_l[:, None], z_l.astype(jnp.float32), 0.0))
  z_u = kmeans.l2_normalize(jnp.where(valid_u[:, None], z_u.astype(jnp.float32), 0.0))
  valid_l = valid_l & (y_l >= 0) & (y_l < c)
  y_l = jnp.clip(y_l, 0, c - 1)
  assign_u = jnp.clip(assign_u, 0, c - 1)

  # 1 - z.mu lies in [0, 2] for unit vectors; clipping removes rounding just outside it.
  dist = lambda z, ids: jnp.clip(1.0 - jnp.sum(z * kmeans_centers[ids], axis=-1), 0.0, 2.0)
  dist_l, dist_u = dist(z_l, y_l), dist(z_u, assign_u)
  tau, keep_u = thresholds_lib.compute(
      threshold, dist_u, assign_u, valid_u, dist_l, y_l, valid_l, c,
      q=q, kappa=kappa, labeled_spread_q=labeled_spread_q)

  # E4: normalise(mean) == normalise(sum); a class with no member keeps its k-means centre.
  sums = _segment_sum(z_l, y_l, valid_l, c) + _segment_sum(z_u, assign_u, keep_u, c)
  sq = jnp.sum(sums * sums, axis=-1, keepdims=True)
  protos = jnp.where(sq > 0, kmeans.l2_normalize(sums), kmeans_centers)
  return protos, dist_u, keep_u, tau


def pseudo_label(
    z_l, y_l, valid_l, z_u, valid_u, num_classes: int, *,
    threshold: str = "quantile",
    q: float = 0.3,
    kappa: float = 0.0,
    labeled_spread_q: float = 0.9,
    max_iter: int = 100,
    tol: float = 1e-5,
    mesh: Mesh | None = None,
) -> OfflineResult:
  """E2-E4 on precomputed embeddings.

  Args:
    z_l: [Nl, d] labeled features (every view of every labeled clip).
    y_l: [Nl] int32 labels of those rows.
    valid_l: [Nl] bool, False for padding rows.
    z_u: [Nu, d] unlabeled features (one view per clip).
    valid_u: [Nu] bool, False for padding rows.
    num_classes: C.
    threshold: a name in `thresholds.names()`.
    q, kappa, labeled_spread_q: threshold parameters (DESIGN E3).
    max_iter, tol: k-means stopping rule.
    mesh: 1-D mesh with a 'data' axis to shard k-means over; None runs on one device.

  Returns:
    OfflineResult.

  Raises:
    ValueError: bad shapes, an unknown rule, or a class without any valid labeled row.
  """
  thresholds_lib.get(threshold)  # fail before any compile
  if z_l.ndim != 2 or z_u.ndim != 2 or z_l.shape[1] != z_u.shape[1]:
    raise ValueError(f"z_l and z_u must be [N, d] with one d, got {z_l.shape} and {z_u.shape}")
  if y_l.shape != z_l.shape[:1] or valid_l.shape != z_l.shape[:1] or (
      valid_u.shape != z_u.shape[:1]):
    raise ValueError("y_l/valid_l must be [Nl] and valid_u [Nu]")
  y_host, v_host = np.asarray(y_l), np.asarray(valid_l, bool)
  present = np.bincount(y_host[v_host & (y_host >= 0) & (y_host < num_classes)],
                        minlength=num_classes)
  if not present.all():
    raise ValueError(f"classes without a labeled point: {np.flatnonzero(present == 0).tolist()}")

  n_l = z_l.shape[0]
  z = jnp.concatenate([jnp.asarray(z_l, jnp.float32), jnp.asarray(z_u, jnp.float32)])
  labels = jnp.concatenate([jnp.where(valid_l, jnp.asarray(y_l, jnp.int32), -1),
                            jnp.full(z_u.shape[:1], -1, jnp.int32)])
  valid = jnp.concatenate([jnp.asarray(valid_l, bool), jnp.asarray(valid_u, bool)])
  if mesh is None:
    km = kmeans.jit_spherical_kmeans(z, labels, valid, num_classes, max_iter=max_iter, tol=tol)
  else:
    km = kmeans.sharded_spherical_kmeans(mesh, z, labels, valid, num_classes,
                                         max_iter=max_iter, tol=tol)
  assign_u = km.assign[n_l:]

  args = (z_l, y_l, valid_l, z_u, valid_u, km.centers, assign_u,
          jnp.float32(q), jnp.float32(kappa), jnp.float32(labeled_spread_q))
  args = tuple(jnp.asarray(a) for a in args)
  if mesh is not None:  # one device set for every input; the selection is O(N log N), cheap
    args = jax.device_put(args, NamedSharding(mesh, P()))
  protos, dist_u, keep_u, tau = _select(*args, num_classes=num_classes, threshold=threshold)
  return OfflineResult(km.centers, protos, assign_u, dist_u, keep_u, tau, km.num_iters,
                       km.objective)


def to_prototypes(result: OfflineResult, labeled_index, labeled_y, unlabeled_index,
                  num_train: int, round: int) -> Prototypes:  # pylint: disable=redefined-builtin
  """Dense `Prototypes` rows indexed by training-clip index (DESIGN E4).

  Args:
    result: `pseudo_label` output.
    labeled_index: [L] int32 dense index of each labeled clip (per clip, not per view).
    labeled_y: [L] int32 true labels of those clips.
    unlabeled_index: [Nu] int32 dense index of each row of `result.*_u`; a padding row may
      carry `num_train` (out of range) and is dropped.
    num_train: N, the number of training clips.
    round: the round that produced `result`.

  Returns:
    Prototypes with labeled rows = true label, keep False; unlabeled rows = (y_hat, keep);
    rows in neither set: label 0, keep False.
  """
  labeled_index = np.asarray(labeled_index, np.int64)
  labeled_y = np.asarray(labeled_y, np.int64)
  unlabeled_index = np.asarray(unlabeled_index, np.int64)
  if labeled_index.shape != labeled_y.shape:
    raise ValueError(f"labeled_index {labeled_index.shape} vs labeled_y {labeled_y.shape}")
  if unlabeled_index.shape != result.assign_u.shape:
    raise ValueError(f"unlabeled_index {unlabeled_index.shape} vs assign_u "
                     f"{result.assign_u.shape}")
  if (labeled_index < 0).any() or (labeled_index >= num_train).any() or (
      unlabeled_index < 0).any():
    raise ValueError("clip indices must lie in [0, num_train)")
  rows = unlabeled_index < num_train
  labels = np.zeros((num_train,), np.int32)
  keep = np.zeros((num_train,), bool)
  labels[unlabeled_index[rows]] = np.asarray(result.assign_u)[rows]
  keep[unlabeled_index[rows]] = np.asarray(result.keep_u)[rows]
  labels[labeled_index] = labeled_y  # labeled rows win: true label, never "kept"
  keep[labeled_index] = False
  return Prototypes(
      centers=jnp.asarray(result.centers, jnp.float32),
      labels=jnp.asarray(labels),
      keep=jnp.asarray(keep),
      thresholds=jnp.asarray(result.thresholds, jnp.float32),
      round=jnp.asarray(round, jnp.int32),
  )


def pseudo_label_metrics(result: OfflineResult, hidden_u, valid_u) -> dict[str, float]:
  """Per-round scalars: kept fraction, k-means iterations, mean threshold and, when hidden
  labels `hidden_u` [Nu] are given, pseudo-label accuracy over kept and over all valid rows.

  `offline/pl_acc_kept` is left out when nothing is kept (an accuracy over no samples); hidden
  labels < 0 count as unknown and are left out of both accuracies.
  """
  valid = np.asarray(valid_u, bool)
  keep = np.asarray(result.keep_u, bool) & valid
  out = {
      "offline/kept_frac": float(keep.sum() / max(valid.sum(), 1)),
      "offline/kmeans_iters": float(np.asarray(result.num_iters)),
      "offline/threshold_mean": float(np.mean(np.asarray(result.thresholds))),
  }
  if hidden_u is not None:
    hidden = np.asarray(hidden_u)
    known = hidden >= 0
    correct = np.asarray(result.assign_u) == hidden
    for key, mask in (("offline/pl_acc_all", valid & known), ("offline/pl_acc_kept",
                                                                keep & known)):
      if mask.any():
        out[key] = float(correct[mask].mean())
  return out


# ---- E1 and the whole offline phase (host loop around the jitted pieces) -----------------------


def embed(embed_step, state, dataset, indices, mesh, *, key, weak: bool, batch_size: int,
          use_ema: bool, read_threads: int = 4, bar=None) -> np.ndarray:
  """Unit-norm features [len(indices), d] of training clips (E1), in the order of `indices`:
  the centre view, or with `weak` one random weak view per clip (batch b uses
  `fold_in(key, b)`, so the views do not depend on the device count)."""
  from aplt_jax import parallel  # pylint: disable=g-import-not-at-top
  from aplt_jax.data import loader  # pylint: disable=g-import-not-at-top
  rows = parallel.process_slice(batch_size, mesh)
  out = []
  for b, (x, valid) in enumerate(loader.fixed_batches(dataset.train, dataset.input_key, indices,
                                                      batch_size, rows, read_threads)):
    z = embed_step(state, parallel.global_batch(mesh, x), jax.random.fold_in(key, b), weak,
                   use_ema)
    out.append(parallel.to_host(z)[valid])
    if bar is not None:
      bar.update(1)
  return np.concatenate(out)


def run_offline_phase(embed_step, state, dataset, labeled: np.ndarray, unlabeled: np.ndarray,
                      mesh, *, key, round_: int, aplt_cfg, batch_size: int, use_ema: bool,
                      read_threads: int = 4, progress=None):
  """E1-E4: embed every training clip with the frozen model, cluster, screen, build prototypes.

  Unlabeled clips are embedded once (centre view); labeled clips V+1 times (centre plus
  `aplt_cfg.labeled_views` weak views, view v drawn with `fold_in(key, v)`). Returns the
  replicated Prototypes pytree for round `round_` and the phase's metrics.
  """
  from aplt_jax import parallel  # pylint: disable=g-import-not-at-top
  views = aplt_cfg.labeled_views
  batches = lambda n: -(-n // batch_size)
  bar = None
  if progress is not None:
    bar = progress.bar(batches(len(unlabeled)) + (views + 1) * batches(len(labeled)),
                       f"offline r{round_}")
  kw = dict(batch_size=batch_size, use_ema=use_ema, read_threads=read_threads, bar=bar)
  z_u = embed(embed_step, state, dataset, unlabeled, mesh, key=key, weak=False, **kw)
  z_l = [embed(embed_step, state, dataset, labeled, mesh, key=key, weak=False, **kw)]
  z_l += [embed(embed_step, state, dataset, labeled, mesh, key=jax.random.fold_in(key, v),
                weak=True, **kw) for v in range(views)]
  if bar is not None:
    bar.close()
  faults.maybe_die("offline", round_)
  labels = np.asarray(dataset.train_labels)
  y_lab = labels[labeled].astype(np.int32)
  z_l = np.concatenate(z_l)
  y_l = np.tile(y_lab, views + 1)
  result = pseudo_label(
      jnp.asarray(z_l), jnp.asarray(y_l), jnp.ones(len(z_l), bool), jnp.asarray(z_u),
      jnp.ones(len(z_u), bool), dataset.num_classes, threshold=aplt_cfg.threshold,
      q=aplt_cfg.threshold_q, kappa=aplt_cfg.threshold_kappa,
      labeled_spread_q=aplt_cfg.labeled_spread_q, max_iter=aplt_cfg.kmeans_max_iter,
      tol=aplt_cfg.kmeans_tol, mesh=mesh)
  protos = to_prototypes(result, jnp.asarray(labeled, jnp.int32), jnp.asarray(y_lab),
                         jnp.asarray(unlabeled, jnp.int32), len(labels), round_)
  metrics = pseudo_label_metrics(result, jnp.asarray(labels[unlabeled], jnp.int32),
                                 jnp.ones(len(unlabeled), bool))
  return parallel.replicate(mesh, protos), metrics
