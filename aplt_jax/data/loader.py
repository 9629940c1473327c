"""Input pipelines indexed by global step, so the iterator position is just the step.

Every global step reads B labeled and mu*B unlabeled clips; the order comes from per-epoch
permutations seeded by (seed, stream, epoch), so batch k is a pure function of k and a resumed
run reads exactly what an uninterrupted one would. Grain reads and assembles batches on a
thread pool ahead of the train step. Each process reads only its rows of every global batch.
"""
from __future__ import annotations

import functools
from typing import Any, Iterator, Sequence

import grain
import numpy as np


class Stream:
  """An endless shuffled stream over `pool`; `indices(step)` gives that step's global batch."""

  def __init__(self, pool: np.ndarray, batch_size: int, seed: int, stream_id: int):
    if len(pool) == 0:
      raise ValueError(f"Stream {stream_id} has no samples to draw from.")
    self.pool = np.asarray(pool, np.int64)
    self.batch_size = batch_size
    self._seed = (seed, stream_id)

  @functools.lru_cache(maxsize=8)
  def _perm(self, epoch: int) -> np.ndarray:
    return self.pool[np.random.default_rng([*self._seed, epoch]).permutation(len(self.pool))]

  def indices(self, step: int) -> np.ndarray:
    pos = step * self.batch_size + np.arange(self.batch_size)
    epoch, off = np.divmod(pos, len(self.pool))
    return np.array([self._perm(int(e))[o] for e, o in zip(epoch, off)], np.int64)


def _read(source, indices: Sequence[int], key: str) -> np.ndarray:
  """[n, ...] `key` of records `indices`, in order: one batched read when the source has
  `__getitems__` (ArrayRecord then reads the records in parallel, outside the GIL)."""
  indices = [int(i) for i in indices]
  if hasattr(source, "__getitems__"):
    records = source.__getitems__(indices)
  else:
    records = [source[i] for i in indices]
  return np.stack([np.asarray(r[key]) for r in records])


class TrainBatches:
  """Host-local training batches for steps [start, stop), prefetched by Grain threads.

  Yields `(step, batch)` with the layout `aplt_jax.steps` documents; `batch['unlabeled']` is
  absent when `unlabeled_batch` is 0 (supervised warm-up and the supervised baseline). `rows`
  are this process's (labeled, unlabeled) rows of each global batch.

  `read_workers` > 0 assembles batches in that many Grain worker processes (each with
  `read_threads` threads and `prefetch` batches in flight), past the one core that the GIL
  lets threads use; steps still come out in order, each a pure function of its index.
  """

  def __init__(self, source, input_key: str, labeled: np.ndarray, unlabeled: np.ndarray,
               train_labels: np.ndarray, *, batch_size: int, unlabeled_batch: int, seed: int,
               rows: tuple[slice, slice], read_threads: int = 4, prefetch: int = 4,
               read_workers: int = 0):
    self.source, self.key = source, input_key
    self.rows, self.urows = rows
    self.labels = np.asarray(train_labels)
    self.lab = Stream(labeled, batch_size, seed, 0)
    self.unl = Stream(unlabeled, unlabeled_batch, seed, 1) if unlabeled_batch else None
    self.uidx_of = np.full(len(self.labels), -1, np.int64)
    self.uidx_of[np.asarray(unlabeled, np.int64)] = np.arange(len(unlabeled))
    self.options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch)
    self.workers = read_workers

  def batch(self, step: int) -> dict[str, Any]:
    li = self.lab.indices(step)[self.rows]
    out = {"labeled": {"x": _read(self.source, li, self.key),
                       "label": self.labels[li].astype(np.int32)}}
    if self.unl is not None:
      ui = self.unl.indices(step)[self.urows]
      out["unlabeled"] = {"x": _read(self.source, ui, self.key), "index": ui.astype(np.int32),
                          "uidx": self.uidx_of[ui].astype(np.int32),
                          "hidden": self.labels[ui].astype(np.int32)}
    return out

  def iterate(self, start: int, stop: int) -> Iterator[tuple[int, dict[str, Any]]]:
    if start >= stop:
      return iter(())
    ds = grain.MapDataset.range(start, stop).map(lambda s: (s, self.batch(s)))
    ds = ds.to_iter_dataset(self.options)
    if self.workers:
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.workers))
    return iter(ds)


def fixed_batches(source, input_key: str, indices: np.ndarray, batch_size: int, rows: slice,
                  read_threads: int = 4) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Walks `indices` in order in global batches of `batch_size`, the last one padded.

  Yields `(x, valid)`: `x` holds this process's `rows` of the global batch, `valid [batch_size]`
  marks the real rows of the whole global batch (to index gathered outputs). Padding rows repeat
  the last index and are not valid, so shapes never change (one compilation) and every example
  counts exactly once.
  """
  indices = np.asarray(indices, np.int64)
  n = len(indices)
  num_batches = -(-n // batch_size)

  def make(b):
    idx = indices[b * batch_size:(b + 1) * batch_size]
    valid = np.ones(batch_size, bool)
    valid[len(idx):] = False
    idx = np.concatenate([idx, np.full(batch_size - len(idx), idx[-1] if len(idx) else 0)])
    return _read(source, idx[rows], input_key), valid

  ds = grain.MapDataset.range(num_batches).map(make)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                                   prefetch_buffer_size=read_threads)))
