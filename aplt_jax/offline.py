"""The offline phase (DESIGN §2, E1-E4): embed, cluster, threshold, build the prototype memory.

`run_offline_phase` is the whole phase: `embed_passes` (E1) runs the frozen model over the
training clips and keeps the features on the device, sharded as the pass left them; then
semi-supervised spherical k-means over labeled + unlabeled points, per-class self-adaptive
thresholds on the cosine distance to the cluster centre, and prototypes from labeled points plus
the kept unlabeled ones (E2-E4) run on those rows, and only per-clip results reach the host.
`to_prototypes` lays the result out as the dense `Prototypes` pytree that the train step indexes
by clip index; `pseudo_label_metrics` gives the per-round log scalars.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

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
    offset: [d] float32 mean subtracted from the unit-norm features before clustering
      (`center=True`), zeros otherwise.
  """
  kmeans_centers: jax.Array
  centers: jax.Array
  assign_u: jax.Array
  dist_u: jax.Array
  keep_u: jax.Array
  thresholds: jax.Array
  num_iters: jax.Array
  objective: jax.Array
  offset: jax.Array


SELECTION_SCORES = ("distance", "margin", "prob")
PROTOTYPE_SOURCES = ("refined", "labeled")
VOUCH_RULES = ("unanimous", "majority", "veto", "decisive", "gated")
# How k-means assigns the unlabeled rows: nearest centre, or Sinkhorn-balanced so that the
# clusters' sizes follow the labeled rows' class frequencies (`kmeans.balance_offsets`).
ASSIGNMENTS = ("nearest", "balanced")


def selection_score(z: jax.Array, centers: jax.Array, cls: jax.Array, kind: str,
                    scale: float | jax.Array = 16.0) -> jax.Array:
  """How far each row is from confidently belonging to class `cls` (lower: more confident).

  Args:
    z: [N, d] unit-norm features; centers: [C, d] unit-norm centres; cls: [N] int32 class.
    kind: 'distance': `1 - cos(z, mu_cls)`, the cosine distance (DESIGN E3);
      'margin': `(1 - (cos_cls - max_{c != cls} cos_c)) / 2`, small when the assigned centre
      beats the runner-up by far, whatever the absolute distance (features in a narrow cone
      sit at similar distances from every centre);
      'prob': `1 - softmax(scale * cos)_cls`, the prototype classifier's doubt.
    scale: the prototype classifier's `s` ('prob' only).

  Returns:
    [N] float32, in [0, 2] ('distance'), [-0.5, 1.5] ('margin') or [0, 1] ('prob').
  """
  if kind == "distance":  # clipping removes rounding just outside [0, 2]
    return jnp.clip(1.0 - jnp.sum(z * centers[cls], axis=-1), 0.0, 2.0)
  cos = z @ centers.T
  own = jnp.take_along_axis(cos, cls[:, None], axis=-1)[:, 0]
  if kind == "margin":
    others = jnp.where(jax.nn.one_hot(cls, cos.shape[-1], dtype=bool), -jnp.inf, cos)
    return 0.5 * (1.0 - (own - jnp.max(others, axis=-1)))
  if kind == "prob":
    p = jax.nn.softmax(scale * cos, axis=-1)
    return 1.0 - jnp.take_along_axis(p, cls[:, None], axis=-1)[:, 0]
  raise ValueError(f"aplt.select={kind!r}: expected one of {SELECTION_SCORES}.")


def kept_fraction(q: float, q_final: float | None, r: int, num_rounds: int) -> float:
  """Round r's (1-based) quantile: `q`, growing linearly to `q_final` by the last round."""
  if q_final is None or num_rounds <= 1:
    return float(q)
  return float(q + (q_final - q) * (min(max(r, 1), num_rounds) - 1) / (num_rounds - 1))


@jax.jit
def center_features(z: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Centres rows (normalised first) on their valid mean, renormalises: (z' [N, d], mean [d]).

  Post-ReLU mean features fill a narrow cone, where every centre sits at a similar cosine from
  every clip; removing the common direction spreads them out. Invalid rows become zeros.
  """
  z = kmeans.l2_normalize(jnp.where(valid[:, None], z.astype(jnp.float32), 0.0))
  w = valid.astype(jnp.float32)[:, None]
  mean = jnp.sum(z * w, axis=0) / jnp.maximum(jnp.sum(w), 1.0)
  return jnp.where(valid[:, None], kmeans.l2_normalize(z - mean), 0.0), mean


@functools.partial(jax.jit, static_argnames=("num_classes", "threshold", "select", "prototypes"))
def _select(z, labels, valid, unlabeled, kmeans_centers, assign, q, kappa, labeled_spread_q,
            scale, vouched=None, *, num_classes, threshold, select="distance",
            prototypes="refined"):
  """E3 thresholds and E4 prototypes from the k-means result, on the k-means rows.

  Rows mix labeled points (`labels` their class) and unlabeled ones (`unlabeled` True), in any
  order and sharding: every per-row quantity is elementwise, the thresholds and prototype sums
  are masked reductions, so the rows can stay where the embedding pass left them.

  Args:
    z: [N, d] features; labels: [N] int32; valid, unlabeled: [N] bool; kmeans_centers: [C, d];
    assign: [N] int32 k-means cluster of each row; q, kappa, labeled_spread_q: rule parameters;
    scale: the prototype classifier's `s` (for `select='prob'`); select: the selection score
    that the threshold rule screens (`selection_score`); prototypes: 'refined' (E4: labeled
    plus kept unlabeled points) or 'labeled' (labeled points only: the kept offline labels
    still train through E8 and the head term, but the frozen classifier they train against
    cannot inherit the clustering's errors); vouched: [N] bool or None, rows allowed to be
    kept (`vouched_rows`), applied after the threshold.

  Returns:
    (prototypes [C, d], dist [N] selection score for the assigned centre, keep [N] (unlabeled
    rows within their cluster's threshold), thresholds [C]).
  """
  c = num_classes
  z = kmeans.l2_normalize(jnp.where(valid[:, None], z.astype(jnp.float32), 0.0))
  is_l = valid & ~unlabeled & (labels >= 0) & (labels < c)
  is_u = valid & unlabeled
  y = jnp.clip(labels, 0, c - 1)
  assign = jnp.clip(assign, 0, c - 1)

  dist = lambda ids: selection_score(z, kmeans_centers, ids, select, scale)
  dist_l, dist_u = dist(y), dist(assign)
  tau, keep = thresholds_lib.compute(
      threshold, dist_u, assign, is_u, dist_l, y, is_l, c,
      q=q, kappa=kappa, labeled_spread_q=labeled_spread_q)
  if vouched is not None:
    keep &= vouched

  # E4: normalise(mean) == normalise(sum); a class with no member keeps its k-means centre.
  sums = kmeans.segment_sum(z, y, is_l, c)
  if prototypes == "refined":
    sums += kmeans.segment_sum(z, assign, keep, c)
  elif prototypes != "labeled":
    raise ValueError(f"aplt.prototypes={prototypes!r}: expected one of {PROTOTYPE_SOURCES}.")
  sq = jnp.sum(sums * sums, axis=-1, keepdims=True)
  protos = jnp.where(sq > 0, kmeans.l2_normalize(sums), kmeans_centers)
  return protos, dist_u, keep, tau


def vouched_rows(z, labels, valid, assign, num_modes: int, seed: int,
                 rule: str = "unanimous") -> np.ndarray:
  """[N] bool: rows whose mode's labeled rows do not contradict their own cluster label.

  The modes are `num_modes` clusters of an unconstrained Lloyd k-means
  (`kmeans.euclidean_kmeans`) over the valid rows of `z [N, d]` (host numpy), unit-normalised,
  from a k-means++ start drawn with `seed`. With `own` / `other` the mode's labeled rows
  (`labels >= 0`) of the row's label `assign` / of the most frequent other label, a row passes
  (`VOUCH_RULES`): unanimous, own > 0 and other = 0; majority, own > other; veto, own > 0 or the
  mode holds no labeled row (only a mode whose labeled rows all say other labels drops it);
  decisive, unanimous or the mode's labeled rows carry two or more labels (a mixed mode does not
  judge); gated, unanimous if no mode mixes labeled rows of two labels, else every row (modes that
  do not separate the labeled rows do not judge at all). A semi-supervised cluster that absorbed
  another class's mode loses that mode. Invalid rows never pass.
  """
  valid = np.asarray(valid, bool)
  labels, assign = np.asarray(labels), np.asarray(assign)
  x = np.asarray(kmeans.l2_normalize(jnp.where(valid[:, None], jnp.asarray(z, jnp.float32), 0.)))
  rows = np.flatnonzero(valid)
  rng = np.random.default_rng(seed)
  init = [x[rng.choice(rows)]]
  gap = np.full(len(rows), np.inf)
  for _ in range(1, num_modes):  # k-means++: next centre with prob ~ squared distance.
    gap = np.minimum(gap, np.sum(np.square(x[rows] - init[-1]), axis=-1))
    init.append(x[rows[rng.choice(len(rows), p=gap / gap.sum())]] if gap.sum() > 0 else init[-1])
  mode = np.asarray(kmeans.jit_euclidean_kmeans(x, np.stack(init), valid).assign)
  is_l = valid & (labels >= 0)
  assign = np.clip(assign, 0, None)  # padding rows may carry anything
  counts = np.zeros((num_modes, max(labels.max(), assign.max()) + 1), np.int64)  # [M, C]
  np.add.at(counts, (mode[is_l], labels[is_l]), 1)
  per_row = counts[mode]  # [N, C] labeled rows of each label in the row's mode
  own = per_row[np.arange(len(mode)), assign]
  per_row[np.arange(len(mode)), assign] = -1
  other = per_row.max(axis=1)  # the most labeled rows of any other label
  labels_in_mode = (counts > 0).sum(axis=1)  # [M] distinct labels among them
  unanimous = (own > 0) & (other <= 0)
  passes = {"unanimous": unanimous, "majority": (own > 0) & (own > other),
            "veto": (own > 0) | (other <= 0),
            "decisive": unanimous | (labels_in_mode[mode] > 1),
            "gated": unanimous | (labels_in_mode > 1).any()}[rule]
  return valid & passes


def _check_labels_cover_classes(labels, valid, num_classes: int) -> None:
  y, v = np.asarray(labels), np.asarray(valid, bool)
  present = np.bincount(y[v & (y >= 0) & (y < num_classes)], minlength=num_classes)
  if not present.all():
    raise ValueError(f"classes without a labeled point: {np.flatnonzero(present == 0).tolist()}")


def _cluster_and_select(z, labels, valid, unlabeled, num_classes: int, *, threshold: str, q,
                        kappa, labeled_spread_q, max_iter, tol, mesh: Mesh | None,
                        select: str = "distance", scale: float = 16.0, center: bool = False,
                        prototypes: str = "refined", vouch_modes: int = 0,
                        vouch_rule: str = "unanimous", assign: str = "nearest", seed: int = 0):
  """E2-E4 over rows `z [N, d]` (host or device, sharded on `mesh` or not).

  `labels [N]` (-1: free), `valid [N]` and `unlabeled [N]` are host arrays. With `center`, the
  rows are first centred on their valid mean (`center_features`). With `vouch_modes` r > 0, only
  rows of a vouched mode among r*C can be kept (`vouched_rows`: `seed` its init,
  `vouch_rule` its rule; the features go to the host for it). `assign` (ASSIGNMENTS):
  "balanced" runs the k-means with `balance_scale=scale`. Returns the k-means result,
  `_select`'s (prototypes, dist [N], keep [N], thresholds [C]) and the offset [d].
  """
  n = z.shape[0]
  has_unlabeled = np.any(unlabeled)  # supervised_proto: none to vouch for or balance
  vouch = vouch_modes and has_unlabeled
  if assign not in ASSIGNMENTS:
    raise ValueError(f"aplt.assign={assign!r}: expected one of {ASSIGNMENTS}.")
  balance = float(scale) if assign == "balanced" and has_unlabeled else None
  if mesh is None:
    labels, valid, unlabeled = map(jnp.asarray, (labels, valid, unlabeled))
  else:  # Padding rows (if N does not divide) are invalid and cut off below.
    z, labels, valid, unlabeled = kmeans.shard_rows(
        mesh, (z, 0.0), (labels, -1), (valid, False), (unlabeled, False))
  if center:
    z, offset = center_features(z, valid)
  else:
    offset = jnp.zeros(z.shape[-1:], jnp.float32)
  if mesh is None:
    km = kmeans.jit_spherical_kmeans(z, labels, valid, num_classes, max_iter=max_iter, tol=tol,
                                     balance_scale=balance)
  else:
    km = kmeans.sharded_spherical_kmeans(mesh, z, labels, valid, num_classes,
                                         max_iter=max_iter, tol=tol, balance_scale=balance)
  params = tuple(np.float32(v) for v in (q, kappa, labeled_spread_q, scale))
  vouched = None
  if vouch:
    from aplt_jax import parallel  # pylint: disable=g-import-not-at-top
    vouched = vouched_rows(*parallel.to_host((z, labels, valid, km.assign)),
                           vouch_modes * num_classes, seed, vouch_rule)
    vouched = (jnp.asarray(vouched) if mesh is None
               else kmeans.shard_rows(mesh, (vouched, False))[0])
  protos, dist, keep, tau = _select(z, labels, valid, unlabeled, km.centers, km.assign,
                                    *params, vouched, num_classes=num_classes,
                                    threshold=threshold, select=select, prototypes=prototypes)
  return km._replace(assign=km.assign[:n]), (protos, dist[:n], keep[:n], tau), offset


def to_prototypes(result: OfflineResult, labeled_index, labeled_y, unlabeled_index,
                  num_train: int, round: int) -> Prototypes:  # pylint: disable=redefined-builtin
  """Dense `Prototypes` rows indexed by training-clip index (DESIGN E4).

  Args:
    result: the phase's per-row result (unlabeled rows in `unlabeled_index` order).
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
      offset=jnp.asarray(result.offset, jnp.float32),
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


class Pass(NamedTuple):
  """One embedding pass over training clips: `indices` [n], the view's `key`, weak or centre."""
  indices: np.ndarray
  key: jax.Array
  weak: bool


class Embedded(NamedTuple):
  """Device-resident features of one or more passes (E1).

  Attributes:
    z: [R, d] float32 unit-norm features, a global array sharded on the mesh's 'data' rows.
    source: [R] int64 host array: row r holds clip `source[r]` of the passes' concatenated
      index lists, or -1 for a padding row.
  """
  z: jax.Array
  source: np.ndarray


def embed_passes(embed_step, state, dataset, passes, mesh, *, batch_size: int, use_ema: bool,
                 read_threads: int = 4, bar=None) -> Embedded:
  """Runs the frozen model over every pass (E1) and keeps the features on device.

  Batch b of a pass uses `fold_in(pass.key, b)` for its weak view, so the views do not depend on
  the device count. Steps are dispatched back to back with no host round-trip (the loader keeps
  reading while the device computes); each process reads and holds only its rows.
  """
  from aplt_jax import parallel  # pylint: disable=g-import-not-at-top
  from aplt_jax.data import loader  # pylint: disable=g-import-not-at-top
  rows = parallel.process_slice(batch_size, mesh)
  outs, sources, offset = [], [], 0
  for p in passes:
    indices = np.asarray(p.indices, np.int64)
    batches = loader.fixed_batches(dataset.train, dataset.input_key, indices, batch_size, rows,
                                   read_threads)
    for b, (x, valid) in enumerate(batches):
      outs.append(embed_step(state, parallel.global_batch(mesh, x),
                             jax.random.fold_in(p.key, b), p.weak, use_ema))
      src = offset + b * batch_size + np.arange(batch_size)
      sources.append(np.where(valid, src, -1))
      if bar is not None:
        bar.update(1)
    offset += len(indices)
  z, order = parallel.stack_rows(outs)
  return Embedded(z, np.concatenate(sources)[order])


def embed(embed_step, state, dataset, indices, mesh, *, key, weak: bool, batch_size: int,
          use_ema: bool, read_threads: int = 4, bar=None) -> np.ndarray:
  """Unit-norm features [len(indices), d] of training clips (E1) on the host, in the order of
  `indices`: the centre view, or with `weak` one random weak view per clip."""
  from aplt_jax import parallel  # pylint: disable=g-import-not-at-top
  emb = embed_passes(embed_step, state, dataset, [Pass(indices, key, weak)], mesh,
                     batch_size=batch_size, use_ema=use_ema, read_threads=read_threads, bar=bar)
  z = parallel.to_host(emb.z)
  keep = emb.source >= 0
  out = np.empty((len(indices),) + z.shape[1:], z.dtype)
  out[emb.source[keep]] = z[keep]
  return out


def run_offline_phase(embed_step, state, dataset, labeled: np.ndarray, unlabeled: np.ndarray,
                      mesh, *, key, round_: int, aplt_cfg, batch_size: int, use_ema: bool,
                      read_threads: int = 4, progress=None, q: float | None = None):
  """E1-E4: embed every training clip with the frozen model, cluster, screen, build prototypes.

  Labeled clips are embedded V+1 times (centre plus `aplt_cfg.labeled_views` weak views, view v
  drawn with `fold_in(key, v)`), unlabeled clips once (centre view). The features stay on
  device, sharded as the embedding pass left them, through k-means, thresholds and prototypes;
  only the per-clip results ([N] ints) come back to the host. `q` overrides
  `aplt_cfg.threshold_q` (the kept-fraction schedule). Returns the replicated Prototypes pytree
  for round `round_` and the phase's metrics.
  """
  from aplt_jax import parallel  # pylint: disable=g-import-not-at-top
  views = aplt_cfg.labeled_views
  c = dataset.num_classes
  labels = np.asarray(dataset.train_labels)
  y_lab = labels[labeled].astype(np.int32)
  # Row order: labeled (centre, then each view), then unlabeled.
  passes = [Pass(labeled, key, False)]
  passes += [Pass(labeled, jax.random.fold_in(key, v), True) for v in range(views)]
  passes.append(Pass(unlabeled, key, False))
  bar = None
  if progress is not None:
    bar = progress.bar(sum(-(-len(p.indices) // batch_size) for p in passes),
                       f"offline r{round_}")
  emb = embed_passes(embed_step, state, dataset, passes, mesh, batch_size=batch_size,
                     use_ema=use_ema, read_threads=read_threads, bar=bar)
  if bar is not None:
    bar.close()
  faults.maybe_die("offline", round_)

  n_l = (views + 1) * len(labeled)
  src = emb.source
  valid = src >= 0
  unl = src >= n_l
  row_labels = np.where(valid & ~unl, np.tile(y_lab, views + 1)[np.clip(src, 0, n_l - 1)], -1)
  _check_labels_cover_classes(row_labels, valid, c)
  km, (protos_c, dist, keep, tau), offset = _cluster_and_select(
      emb.z, row_labels.astype(np.int32), valid, unl, c, threshold=aplt_cfg.threshold,
      q=aplt_cfg.threshold_q if q is None else q, kappa=aplt_cfg.threshold_kappa,
      labeled_spread_q=aplt_cfg.labeled_spread_q, max_iter=aplt_cfg.kmeans_max_iter,
      tol=aplt_cfg.kmeans_tol, mesh=mesh, select=aplt_cfg.select, scale=aplt_cfg.scale,
      center=aplt_cfg.center, prototypes=aplt_cfg.prototypes,
      vouch_modes=aplt_cfg.vouch_modes, vouch_rule=aplt_cfg.vouch_rule, assign=aplt_cfg.assign,
      seed=int(jax.random.randint(jax.random.fold_in(key, views + 1), (), 0, 2**31 - 1)))
  host = parallel.to_host(dict(assign=km.assign, dist=dist, keep=keep, centers=km.centers,
                               protos=protos_c, tau=tau, iters=km.num_iters,
                               objective=km.objective,
                               # Gathered only when computed from the rows (a global array): the
                               # zeros of an uncentred phase are process-local.
                               **({"offset": offset} if aplt_cfg.center else {})))
  rows_u = np.flatnonzero(unl)[np.argsort(src[unl], kind="stable")]  # unlabeled, in order
  result = OfflineResult(host["centers"], host["protos"], host["assign"][rows_u],
                         host["dist"][rows_u], host["keep"][rows_u], host["tau"],
                         host["iters"], host["objective"],
                         host.get("offset", np.zeros(emb.z.shape[-1:], np.float32)))
  protos = to_prototypes(result, labeled, y_lab, unlabeled, len(labels), round_)
  metrics = pseudo_label_metrics(result, labels[unlabeled].astype(np.int32),
                                 np.ones(len(unlabeled), bool))
  return parallel.replicate(mesh, protos), metrics
