"""Prepared data: built once into ArrayRecord through TFDS, read back by index (DESIGN §4).

Build half: `ArrayRecordBuilder`, the base of the synthetic and sequence builders, and
`ShardedArrayRecordBuilder`, the video builders' (written shard by shard), `config_name` and
`prepare`. Read half: `PreparedSplit`, one prepared split with random access for Grain, opened
by `open_split`. No TensorFlow is needed: the builders use raw `Tensor` / `ClassLabel` features
and write `file_format="array_record"`.

Shared conventions (for every builder based on either):
- features `video` (uint8 [T, H, W, 3] for videos, stored as raw bytes), `label` (`ClassLabel`;
  a plain int64 for prepared real videos, whose class names come from their files and live in
  the metadata) and `index` (int64, the clip's dense index);
- `disable_shuffling = True` and integer keys yielded in index order, so the record at
  position i of a split has `index == i`;
- each builder is parametrised by a frozen dataclass carried by a `ParamsBuilderConfig`,
  whose name encodes every field (`config_name`): different knobs prepare into a different
  directory, the same knobs reuse the prepared one;
- `prepare(builder)` builds once, is a cheap no-op afterwards, and is safe against
  interrupted or concurrent preparations (see its docstring).
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import os
import re
import threading
import time
from typing import Any, Mapping, Sequence

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from aplt_jax import files
from aplt_jax.errors import DataError

FILE_FORMAT = "array_record"

_NAME_CHARS = re.compile(r"^[\w.+\-]+$")  # what TFDS accepts in a config name


def _format_value(value: Any) -> str:
  """Compact, unambiguous, TFDS-legal text for one config value."""
  if isinstance(value, bool):
    return str(int(value))
  if isinstance(value, (int, np.integer)):
    return f"m{-value}" if value < 0 else str(int(value))
  if isinstance(value, (float, np.floating)):
    value = float(value)
    if not math.isfinite(value):
      raise ValueError(f"non-finite config value {value}")
    text = repr(value)  # shortest round-trip form: 1.5, 0.03, 1e-05
    return "m" + text[1:] if text.startswith("-") else text
  if isinstance(value, (tuple, list)):
    return "-".join(_format_value(v) for v in value)
  text = str(value)
  if not _NAME_CHARS.match(text) or "_" in text:
    raise ValueError(f"config value {text!r} cannot be encoded in a config name")
  return text


def config_name(params: Any, abbrev: Mapping[str, str]) -> str:
  """Encodes every field of the dataclass `params` as `<abbrev><value>` joined by '_'.

  `abbrev` must name every field (so a new knob cannot be silently left out of the
  directory name) with distinct, underscore-free abbreviations.
  """
  fields = [f.name for f in dataclasses.fields(params)]
  missing = sorted(set(fields) - set(abbrev))
  extra = sorted(set(abbrev) - set(fields))
  if missing or extra:
    raise ValueError(f"abbreviations must cover exactly the fields of "
                     f"{type(params).__name__}: missing {missing}, unknown {extra}")
  if len(set(abbrev.values())) != len(abbrev) or any("_" in a for a in abbrev.values()):
    raise ValueError(f"abbreviations must be distinct and without '_': {dict(abbrev)}")
  name = "_".join(abbrev[f] + _format_value(getattr(params, f)) for f in fields)
  if len(name) > 200:
    raise ValueError(f"config name too long for a directory ({len(name)} chars): {name}")
  return name


@dataclasses.dataclass(eq=False)
class ParamsBuilderConfig(tfds.core.BuilderConfig):
  """A BuilderConfig carrying the frozen dataclass `params` that parametrises a builder."""
  params: Any = None


class _Conventions:
  """What every builder here shares: `PREPARE_HINT`, `params`, and a TFDS work-around."""
  PREPARE_HINT = "aplt_jax.data.prepared.prepare(builder)"

  # TFDS locates a builder's source file through the `importlib_resources` backport, which is
  # not installed here (and fails with ModuleNotFoundError for builders defined in a package);
  # the file is only used to look for a download checksums file, so name it directly.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))

  @property
  def params(self) -> Any:
    """The frozen dataclass of this builder's `ParamsBuilderConfig`."""
    return self.builder_config.params


class ArrayRecordBuilder(_Conventions, tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of this module's builders: the shared conventions and a TFDS work-around.

  Subclasses set `VERSION`, `PREPARE_HINT` (how to prepare them, quoted in errors) and
  implement `_info` / `_split_generators` / `_generate_examples` as for any TFDS builder,
  with `disable_shuffling=True` and integer keys in index order.

  TFDS holds a split's serialized records in memory up to 1 GB and beyond that writes them all
  to one temporary file, then reads that file back into memory to sort it: fine for small
  splits; large ones (full-size video) use `ShardedArrayRecordBuilder`.
  """


class ShardedArrayRecordBuilder(_Conventions, tfds.core.ShardBasedBuilder,
                                skip_registration=True):
  """The same conventions, written shard by shard: one ArrayRecord file per example generator.

  Subclasses implement `_info` and `_shard_iterators_per_split` (split -> list of functions,
  each returning an iterator of (key, example) in index order). Records stream straight into
  their file (no temporary copy of the split on disk or in memory beyond one shard).
  """


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
  """`builder.is_prepared()`, without TFDS's warning for a directory that does not exist."""
  return (builder.data_path / "dataset_info.json").exists() and builder.is_prepared()


def prepare(builder: tfds.core.DatasetBuilder,
            download_config: tfds.download.DownloadConfig | None = None
            ) -> tfds.core.DatasetBuilder:
  """Prepares `builder` as ArrayRecord unless already prepared; returns it (ready to read).

  `download_config` passes e.g. the `manual_dir` of builders prepared from local files.

  Cheap when prepared (one directory check). Safe to interrupt: TFDS writes into a sibling
  `incomplete.*` directory and renames it to the versioned directory only after every split
  and the dataset info are written (an exception removes the temporary directory; one that a
  killed process left behind is removed by the next preparation). Concurrent calls on one
  machine serialise on a lock file beside the config directory; the second finds the data
  prepared and returns.
  """
  if is_prepared(builder):
    return reopen(builder)
  lock = os.path.join(os.fspath(builder.data_path.parent.parent),
                      f".{builder.builder_config.name if builder.builder_config else 'default'}"
                      ".lock")
  with files.flock(lock):  # one preparation per machine at a time
    if not is_prepared(builder):  # else another process finished while we waited
      _remove_incomplete(builder)
      logging.info("Preparing %s into %s", builder.info.full_name, builder.data_dir)
      start = time.perf_counter()
      builder.download_and_prepare(file_format=FILE_FORMAT, download_config=download_config)
      logging.info("Prepared %s in %.1f s", builder.info.full_name,
                   time.perf_counter() - start)
  return reopen(builder)


def _remove_incomplete(builder: tfds.core.DatasetBuilder) -> None:
  """Deletes the `incomplete.*` folders that a killed preparation of `builder` left behind.

  Called under the preparation lock, so none of them belongs to a live preparation.
  """
  for stale in builder.data_path.parent.glob("incomplete.*"):
    if stale.is_dir():
      logging.info("Removing %s, left by an interrupted preparation", stale)
      stale.rmtree(missing_ok=True)


def reopen(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
  """`builder` itself if its info already reflects prepared data, else a fresh instance.

  A builder constructed before its data was prepared (here or by another process) keeps
  an info without splits; a new instance reads the info back from disk.
  """
  if builder.info.splits or not is_prepared(builder):
    return builder
  return type(builder)(data_dir=builder.data_dir_root, config=builder.builder_config,
                       version=builder.version)


# --------------------------------------------------------------------------------------
# Reading: one prepared split by index

_READ_CHUNK = 256  # records per read while collecting scalar fields


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


class PreparedSplit:
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

  def scalar_fields(self, *keys: str) -> dict[str, np.ndarray]:
    """`{key: [N] int64}` for each of `keys` that the records carry, in record order.

    One pass over the split in chunks (ArrayRecord reads a chunk's records in parallel), not
    cached: `labels()` caches its own. A key missing from any record is left out.
    """
    values = {k: np.empty((self._len,), np.int64) for k in keys}
    for start in range(0, self._len, _READ_CHUNK):
      positions = list(range(start, min(start + _READ_CHUNK, self._len)))
      for pos, record in zip(positions, self._data.__getitems__(positions)):
        for k in list(values):
          if k in record:
            values[k][pos] = int(record[k])
          else:
            del values[k]
    return values

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
    fields = self.scalar_fields("label", "index")
    labels = fields["label"].astype(np.int32)
    whole_split = re.fullmatch(r"\w+", self.split) is not None  # not a slice like 'train[5:]'
    if whole_split and "index" in fields:
      out_of_order = np.flatnonzero(fields["index"] != np.arange(self._len))
      if out_of_order.size:
        pos = out_of_order[0]
        raise DataError(f"{self!r}: record {pos} has index {fields['index'][pos]}; "
                        "prepared data must be stored in index order")
    try:
      with files.write_then_rename(path, "wb") as f:
        np.save(f, labels)
    except OSError as e:  # e.g. read-only shared data: keep them in memory only
      logging.warning("Could not cache labels at %s: %s", path, e)
    return labels

  def __getstate__(self) -> dict[str, Any]:
    """Pickles as (builder, split) so Grain worker processes can reopen it."""
    return {"builder": self.builder, "split": self.split}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__init__(state["builder"], state["split"])

  def __repr__(self) -> str:
    return f"PreparedSplit({self.builder.info.full_name}, split={self.split!r}, n={self._len})"


def open_split(builder: tfds.core.DatasetBuilder, split: str) -> PreparedSplit:
  """The prepared `split` of `builder` as a `PreparedSplit`.

  Raises:
    DataError: the dataset is not prepared (the message names the path and how to prepare
      it), or the split does not exist.
  """
  if not is_prepared(builder):
    raise DataError(
        f"Dataset {builder.name}/{builder.builder_config_name or ''} is not prepared at "
        f"{builder.data_dir}. Prepare it first with {_prepare_hint(builder)} "
        f"(it writes ArrayRecord files there).")
  builder = reopen(builder)  # in case it was constructed before preparation
  base = re.split(r"[\[+]", split, maxsplit=1)[0]
  if base not in builder.info.splits:
    raise DataError(f"No split {split!r} in {builder.data_dir}; available: "
                     f"{sorted(builder.info.splits)}")
  return PreparedSplit(builder, split)
