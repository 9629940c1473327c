"""Prepared splits as random-access sources for Grain (DESIGN §4).

A `Source` wraps one split of a prepared TFDS builder (ArrayRecord, read without
TensorFlow): `len(source)`, `source[i]` -> dict of numpy arrays (the clip at position i,
whose `index` is i), and `source.labels()`, the whole split's labels, read once and cached as
a `.npy` beside the prepared data so that later runs never re-read the videos for them.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from typing import Any, Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from aplt_jax.data import builders
from aplt_jax.errors import DataError

_LABEL_CHUNK = 256  # records per read while collecting labels


def _to_numpy(value: Any) -> np.ndarray:
  """Integers become int32 (dense indices and labels fit), arrays are kept as stored."""
  arr = np.asarray(value)
  if np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8:
    if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
      raise OverflowError(f"integer feature out of int32 range: {arr.min()}..{arr.max()}")
    arr = arr.astype(np.int32)
  return arr


def _labels_filename(split: str) -> str:
  """`labels-<split>.npy`; splits with special characters (slices) get a hash suffix."""
  safe = re.sub(r"[^\w\-]", "_", split)
  if safe != split:
    safe += "-" + hashlib.sha1(split.encode()).hexdigest()[:8]
  return f"labels-{safe}.npy"


def _prepare_hint(builder: tfds.core.DatasetBuilder) -> str:
  return getattr(builder, "PREPARE_HINT",
                 "builder.download_and_prepare(file_format='array_record')")


class Source:
  """One prepared split, random access: `len`, `[i]` -> dict of numpy arrays, `labels()`.

  Usable with `grain.MapDataset.source(source)`, with reading threads. Records come back as
  `{"video": uint8 [T, H, W, 3], "label": int32 [], "index": int32 [], ...}` (every stored
  feature; integer features as int32).
  """

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str):
    self.builder = builder
    self.split = split
    self._data = builder.as_data_source(split)
    self._len = len(self._data)
    self._labels: np.ndarray | None = None
    self._labels_lock = threading.Lock()

  @property
  def labels_path(self) -> str:
    """Where `labels()` caches the split's labels: beside the prepared data."""
    return os.path.join(os.fspath(self.builder.data_dir), _labels_filename(self.split))

  def __len__(self) -> int:
    return self._len

  def _check(self, i: int) -> int:
    i = int(i)
    if not 0 <= i < self._len:
      raise IndexError(f"record {i} out of range for {self!r}")
    return i

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return {k: _to_numpy(v) for k, v in self._data[self._check(i)].items()}

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Batch read (ArrayRecord reads the records in parallel)."""
    records = self._data.__getitems__([self._check(i) for i in indices])
    return [{k: _to_numpy(v) for k, v in r.items()} for r in records]

  def labels(self) -> np.ndarray:
    """[N] int32 labels of the whole split, in record order.

    Computed by one pass over the split on first use (which also checks that record i of a
    whole split has `index == i`), then cached in `labels_path`; later calls and later
    processes load it.
    """
    with self._labels_lock:
      if self._labels is None:
        self._labels = self._load_or_compute_labels()
      return self._labels

  def _load_or_compute_labels(self) -> np.ndarray:
    path = self.labels_path
    if os.path.exists(path):
      try:
        cached = np.load(path)
        if cached.shape == (self._len,) and cached.dtype == np.int32:
          return cached
        logging.warning("Ignoring stale label cache %s (shape %s, dtype %s)", path,
                        cached.shape, cached.dtype)
      except (OSError, ValueError) as e:
        logging.warning("Ignoring unreadable label cache %s: %s", path, e)
    labels = np.empty((self._len,), np.int32)
    whole_split = re.fullmatch(r"\w+", self.split) is not None  # not a slice like 'train[5:]'
    for start in range(0, self._len, _LABEL_CHUNK):
      positions = list(range(start, min(start + _LABEL_CHUNK, self._len)))
      for pos, record in zip(positions, self._data.__getitems__(positions)):
        if whole_split and "index" in record and int(record["index"]) != pos:
          raise DataError(f"{self!r}: record {pos} has index {int(record['index'])}; "
                          "prepared data must be stored in index order")
        labels[pos] = int(record["label"])
    try:  # write-then-rename, so a reader never sees a partial file
      tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
      with open(tmp, "wb") as f:
        np.save(f, labels)
      os.replace(tmp, path)
    except OSError as e:  # e.g. read-only shared data: keep them in memory only
      logging.warning("Could not cache labels at %s: %s", path, e)
    return labels

  def __getstate__(self) -> dict[str, Any]:
    """Pickles as (builder, split) so Grain worker processes can reopen it."""
    return {"builder": self.builder, "split": self.split}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__init__(state["builder"], state["split"])

  def __repr__(self) -> str:
    return f"Source({self.builder.info.full_name}, split={self.split!r}, n={self._len})"


def open_split(builder: tfds.core.DatasetBuilder, split: str) -> Source:
  """The prepared `split` of `builder` as a `Source`.

  Raises:
    DataError: the dataset is not prepared (the message names the path and how to prepare
      it), or the split does not exist.
  """
  if not builders.is_prepared(builder):
    raise DataError(
        f"Dataset {builder.name}/{builder.builder_config_name or ''} is not prepared at "
        f"{builder.data_dir}. Prepare it first with {_prepare_hint(builder)} "
        f"(it writes ArrayRecord files there).")
  builder = builders.reopen(builder)  # in case it was constructed before preparation
  base = re.split(r"[\[+]", split, maxsplit=1)[0]
  if base not in builder.info.splits:
    raise DataError(f"No split {split!r} in {builder.data_dir}; available: "
                     f"{sorted(builder.info.splits)}")
  return Source(builder, split)
