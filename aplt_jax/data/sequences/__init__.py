"""Pose and sensor sequences (DESIGN §4): `.npz` files, folders of `.npy`, the smartwatch set.

A sequence is a float array `[T, C]` (channels, e.g. a wearable's accelerometer and gyroscope
axes) or `[T, J, D]` (joints x coordinates, e.g. a 2-D or 3-D skeleton). Preparation, once per
source and settings, goes through five steps and stores the result as ArrayRecord through a TFDS
builder, read back with Grain exactly like video:

1. read: a reader (`readers`, by kind: `npz`, `npy-folder`, `watch`) loads the
   *recordings*, each `[T_i, ...]` with a label and, where known, a subject and a split;
2. validate: shapes, finite values, labels in `[0, num_classes)` (a `DataError` names the cause);
3. split, per recording (never per window, so the windows of one recording stay on one side):
   the recordings' own `split` if given; else by subject (`test_subjects`, or a seeded draw of
   `test_fraction` of the subjects); else a seeded per-class draw of `test_fraction` of the
   recordings;
4. window (optional): window `w` of recording `r` is samples `[w * stride, w * stride + window)`
   of `r`; windows that would run past the end are not made (a recording's tail shorter than a
   window is unused), and a recording shorter than one window gives none (reported);
5. normalise: per-channel mean and std over every time step of the *training* recordings only,
   applied to every stored sequence (stored in the dataset's metadata as `mean` / `std`).

Stored features: `sequence` float32 `[T, ...]`, `label`, `index` (dense, position in the split),
`recording` (the recording's position in the source), `start` (the window's first sample) and
`subject` (-1 if unknown).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Callable

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from aplt_jax.data import prepared
from aplt_jax.data import split as split_lib
from aplt_jax.data.dataset import Dataset, default_data_dir
from aplt_jax.data.sequences import readers
from aplt_jax.data.sequences.readers import Recordings
from aplt_jax.errors import ConfigError, DataError

# --------------------------------------------------------------------------------------
# Validation, splitting, windowing, normalisation (pure numpy)


def validate(rec: Recordings, num_classes: int) -> Recordings:
  """Checks shapes, values and labels; returns the recordings with x as float32.

  Raises:
    DataError: naming the first offending recording and the cause.
  """
  src = rec.source
  if not rec.x:
    raise DataError(f"{src!r} holds no sequences.")
  x = []
  trailing = None
  for i, a in enumerate(rec.x):
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
      raise DataError(f"{src!r}: sequence {i} has dtype {a.dtype}; expected a numeric array.")
    if a.ndim not in (2, 3) or a.shape[0] < 1 or 0 in a.shape:
      raise DataError(f"{src!r}: sequence {i} has shape {a.shape}; expected [T, C] (channels) "
                      "or [T, J, D] (joints x coordinates) with T, C, J, D >= 1.")
    if trailing is None:
      trailing = a.shape[1:]
    elif a.shape[1:] != trailing:
      raise DataError(f"{src!r}: sequence {i} has shape {a.shape} but sequence 0 has "
                      f"[T, {', '.join(map(str, trailing))}]; every sequence needs the same "
                      "channels.")
    # Finite floats beyond float32's range would become inf below: say so, not "NaN". (No
    # integer type reaches that range.)
    if a.dtype.kind == "f":
      big = np.isfinite(a) & (np.abs(a) > np.finfo(np.float32).max)
      if big.any():
        t = int(np.argwhere(big)[0][0])
        raise DataError(f"{src!r}: sequence {i} has {int(big.sum())} values beyond float32's "
                        f"range (|x| > {np.finfo(np.float32).max:.3g}; first at time step {t}); "
                        "rescale the data (e.g. to SI units) before training.")
    a = a.astype(np.float32)
    bad = ~np.isfinite(a)
    if bad.any():
      t = int(np.argwhere(bad)[0][0])
      raise DataError(f"{src!r}: sequence {i} has {int(bad.sum())} NaN or infinite values "
                      f"(first at time step {t}). Clean or interpolate them before training.")
    x.append(a)
  y = np.asarray(rec.y)
  out = (y < 0) | (y >= num_classes)
  if out.any():
    i = int(np.flatnonzero(out)[0])
    raise DataError(f"{src!r}: {int(out.sum())} labels lie outside [0, {num_classes}) "
                    f"(data.num_classes={num_classes}), e.g. label {int(y[i])} of sequence {i}. "
                    "Labels must be 0-based class indices; fix the data or data.num_classes.")
  if rec.class_names and len(rec.class_names) != num_classes:
    raise DataError(f"{src!r} names {len(rec.class_names)} classes {list(rec.class_names)[:8]} "
                    f"but data.num_classes={num_classes}; set "
                    f"--config.data.num_classes={len(rec.class_names)}.")
  return dataclasses.replace(rec, x=x)


def assign_splits(rec: Recordings, *, test_subjects: tuple[int, ...] = (),
                  test_fraction: float = 0.2, seed: int = 0, val_subjects: tuple[int, ...] = (),
                  val_fraction: float = 0.0) -> np.ndarray:
  """The split ('train' / 'val' / 'test') of every recording, [R] str.

  First train / test (`_train_test`), then the validation split carved from the training side
  (`_carve_val`): `val_subjects`, else a seeded `val_fraction` of the training subjects (or,
  without subjects, of each class's training recordings). A source's own split is used as it is.
  Validation recordings are never trained on; they are for choosing, test is for reporting.
  """
  split = _train_test(rec, test_subjects=test_subjects, test_fraction=test_fraction, seed=seed)
  if rec.split is not None:
    if val_subjects or val_fraction:
      raise DataError(f"{rec.source!r} carries its own split, and data.sequence.val_subjects / "
                      "data.val_fraction ask for another; drop them (or the file's split).")
    return split
  return _carve_val(rec, split, val_subjects=val_subjects, val_fraction=val_fraction, seed=seed)


def _carve_val(rec: Recordings, split: np.ndarray, *, val_subjects: tuple[int, ...],
               val_fraction: float, seed: int) -> np.ndarray:
  """Moves training recordings to 'val': whole subjects when subjects are known."""
  subject = np.asarray(rec.subject)
  train = split == "train"
  if val_subjects:
    if not (subject >= 0).all():
      raise DataError(f"data.sequence.val_subjects={tuple(val_subjects)} needs a subject for "
                      f"every sequence, but {rec.source!r} lacks some.")
    absent = sorted(set(val_subjects) - set(subject[train].tolist()))
    if absent:
      raise DataError(f"data.sequence.val_subjects lists subjects {absent} that are not on the "
                      f"training side of {rec.source!r} (training subjects: "
                      f"{sorted(set(subject[train].tolist()))}).")
    val = train & np.isin(subject, val_subjects)
  elif val_fraction:
    if not 0.0 < val_fraction < 1.0:
      raise ConfigError(f"data.val_fraction={val_fraction} must be in [0, 1).")
    rng = np.random.default_rng([seed, 13])
    val = np.zeros(len(split), bool)
    if (subject >= 0).all():
      ids = np.unique(subject[train])
      k = min(max(1, round(val_fraction * len(ids))), len(ids) - 1)
      if k < 1:
        raise DataError(f"{rec.source!r} has a single training subject: no validation subject "
                        "can be carved from it; set data.val_fraction=0.")
      val = train & np.isin(subject, rng.choice(ids, size=k, replace=False))
    else:
      for c in np.unique(rec.y[train]):
        members = np.flatnonzero(train & (rec.y == c))
        k = min(max(1, round(val_fraction * len(members))), len(members) - 1)
        val[rng.choice(members, size=max(k, 0), replace=False)] = True
  else:
    return split
  split = split.astype("<U5")
  split[val] = "val"
  return split


def _train_test(rec: Recordings, *, test_subjects: tuple[int, ...] = (),
                test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
  """Train / test (or the source's own split) of every recording, [R] str.

  In order of precedence: the recordings' own split; `test_subjects` (those subjects are the
  test set, everyone else trains); when subjects are known, a seeded draw of
  `round(test_fraction * #subjects)` test subjects (at least one, and one left to train on);
  else, per class, a seeded draw of `round(test_fraction * n_c)` test recordings (one left to
  train on). Subject-based splits never put a subject on both sides, so subjects must be known
  for every recording or for none (`_check_subjects`).
  """
  n = len(rec.y)
  subject = np.asarray(rec.subject)
  known = subject >= 0
  if rec.split is not None:
    if test_subjects:
      raise DataError(f"{rec.source!r} carries its own split, and data.sequence.test_subjects="
                      f"{tuple(test_subjects)} asks for another; drop one of them.")
    return np.asarray(rec.split, str)
  _check_subjects(rec)
  if test_subjects:
    if not known.all():
      raise DataError(f"data.sequence.test_subjects={tuple(test_subjects)} needs a subject for "
                      f"every sequence, but {rec.source!r} has none for {int((~known).sum())}.")
    absent = sorted(set(test_subjects) - set(subject.tolist()))
    if absent:
      raise DataError(f"data.sequence.test_subjects lists subjects {absent} that "
                      f"{rec.source!r} does not have (it has {sorted(set(subject.tolist()))}).")
    return np.where(np.isin(subject, test_subjects), "test", "train")
  if not 0.0 < test_fraction < 1.0:
    raise ConfigError(f"data.sequence.test_fraction={test_fraction} must be in (0, 1) when "
                      f"{rec.source!r} has no split of its own.")
  rng = np.random.default_rng([seed, 11])
  if known.all():
    ids = np.unique(subject)
    if len(ids) < 2:
      raise DataError(f"{rec.source!r} has a single subject, so it cannot be split by subject; "
                      "give it a split array.")
    k = min(max(1, round(test_fraction * len(ids))), len(ids) - 1)
    return np.where(np.isin(subject, rng.choice(ids, size=k, replace=False)), "test", "train")
  # The [seed, 11] salt, not video class folders' seed 0: another would re-draw prepared copies.
  return np.where(split_lib.hold_out(rec.y, test_fraction, rng), "test", "train").astype("<U5")


def _check_subjects(rec: Recordings) -> None:
  """Subjects are known for every recording or for none; a partial list is refused.

  Splitting only the known subjects would let each unknown one land on both sides of
  train / test, so its recordings could be tested on after being trained on.
  """
  unknown = np.flatnonzero(np.asarray(rec.subject) < 0)
  if 0 < len(unknown) < len(rec.subject):
    rows = unknown[:10].tolist()
    raise DataError(
        f"{rec.source!r}: {len(unknown)} of {len(rec.subject)} sequences have a negative "
        f"(unknown) subject id, e.g. rows {rows} (subjects "
        f"{np.asarray(rec.subject)[rows].tolist()}). A subject split needs every subject, or one "
        "subject could land on both train and test; give those rows their subject ids (>= 0), "
        "drop the subject array to split by recording, or give a split array.")


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
  """First samples of the windows `[s, s + window)` that fit in `length` samples, every `stride`."""
  if window < 1 or stride < 1:
    raise ValueError(f"window={window} and stride={stride} must be >= 1")
  return np.arange(0, max(length - window + 1, 0), stride, dtype=np.int64)


@dataclasses.dataclass
class Windows:
  """Fixed-length sequences of one split: x [N, T, ...] float32 and, per row, label, the
  recording it comes from, its first sample and its subject; `skipped` lists the recordings too
  short for one window."""
  x: np.ndarray
  label: np.ndarray
  recording: np.ndarray
  start: np.ndarray
  subject: np.ndarray
  skipped: tuple[int, ...] = ()


def _check_one_length(rec: Recordings, members) -> None:
  lengths = sorted({len(rec.x[r]) for r in members})
  if len(lengths) > 1:
    raise DataError(f"{rec.source!r} holds sequences of different lengths "
                    f"({lengths[0]}..{lengths[-1]} steps); set data.sequence.window (and "
                    "stride) to cut them into fixed-length windows.")


def make_windows(rec: Recordings, members: np.ndarray, window: int, stride: int) -> Windows:
  """Windows of the recordings `members` (in order); `window == 0` keeps whole recordings,
  which must then share one length."""
  xs, rows, short = [], [], []
  if window == 0:
    _check_one_length(rec, members)
    for r in members:
      xs.append(rec.x[r])
      rows.append((r, 0))
  else:
    for r in members:
      starts = window_starts(len(rec.x[r]), window, stride)
      if not len(starts):
        short.append(int(r))
      for s in starts:
        xs.append(rec.x[r][s:s + window])
        rows.append((r, s))
    if short:
      logging.warning("%s: %d recordings shorter than the %d-step window give no window and "
                      "are skipped: %s", rec.source, len(short), window, short[:20])
  trailing = rec.x[0].shape[1:]
  t = window or (len(rec.x[members[0]]) if len(members) else 0)
  rows = np.asarray(rows, np.int64).reshape(-1, 2)
  return Windows(
      x=np.stack(xs).astype(np.float32) if xs else np.zeros((0, t, *trailing), np.float32),
      label=rec.y[rows[:, 0]], recording=rows[:, 0], start=rows[:, 1],
      subject=rec.subject[rows[:, 0]], skipped=tuple(short))


def channel_stats(xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Mean and std over every time step of `xs` (each [T_i, ...]), per channel: [...] each.

  Constant channels get std 1, so normalising never divides by zero.
  """
  flat = np.concatenate([np.asarray(a, np.float64) for a in xs], axis=0)
  mean, std = flat.mean(0), flat.std(0)
  std = np.where(std < 1e-6, 1.0, std)
  return mean.astype(np.float32), std.astype(np.float32)


# --------------------------------------------------------------------------------------
# The TFDS builder

@dataclasses.dataclass(frozen=True)
class SequenceParams:
  """What to prepare; every field changes the stored data (and the prepared dataset's name).

  Attributes:
    kind: the reader (`npz`, `npy-folder`, `watch`).
    fingerprint: hash of the source files' names, sizes and modification times, so an edited
      source prepares anew.
    num_classes: C; labels must lie in [0, C).
    window, stride: windowing in time steps (window 0: whole sequences).
    test_subjects: subjects held out for the test split (empty: see `assign_splits`).
    test_fraction: the held-out fraction when the source has no split and no test subjects.
    seed: seed of that draw (the dataset's own, fixed across runs).
    normalize: standardise every channel with the training split's mean and std.
    val_subjects, val_fraction: the validation split carved from the training side (see
      `assign_splits`); never trained on.
  """
  kind: str
  fingerprint: str
  num_classes: int
  window: int = 0
  stride: int = 0
  test_subjects: tuple[int, ...] = ()
  test_fraction: float = 0.2
  seed: int = 0
  normalize: bool = True
  val_subjects: tuple[int, ...] = ()
  val_fraction: float = 0.0

  def __post_init__(self):
    object.__setattr__(self, "test_subjects", tuple(int(s) for s in self.test_subjects))
    object.__setattr__(self, "val_subjects", tuple(int(s) for s in self.val_subjects))
    if self.window < 0 or (self.window and self.stride < 1):
      raise ConfigError(f"data.sequence.window={self.window} must be >= 0 and, when windowing, "
                      f"data.sequence.stride={self.stride} must be >= 1.")


_ABBREV = {"kind": "k", "fingerprint": "src", "num_classes": "c", "window": "win",
           "stride": "stride", "test_subjects": "ts", "test_fraction": "tf", "seed": "seed",
           "normalize": "norm", "val_subjects": "vs", "val_fraction": "vf"}


def fingerprint(path: str) -> str:
  """12 hex digits from the relative names, sizes and mtimes of `path` (a file or a tree).

  Symbolic links are followed (an edit inside a linked class folder prepares anew); names
  starting with a dot are skipped, as the readers skip them.
  """
  entries = []
  if os.path.isdir(path):
    seen = set()  # real folders walked, so a link loop is walked once
    for root, dirs, names in os.walk(path, followlinks=True):
      real = os.path.realpath(root)
      if real in seen:
        dirs[:] = []
        continue
      seen.add(real)
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      for name in sorted(n for n in names if not n.startswith(".")):
        full = os.path.join(root, name)
        try:
          st = os.stat(full)
        except OSError as e:
          raise DataError(f"Cannot read {full!r} in the sequence source {path!r} "
                          f"({'a link to a missing file' if os.path.islink(full) else e}); fix "
                          "or remove it.") from None
        entries.append(f"{os.path.relpath(full, path)}:{st.st_size}:{st.st_mtime_ns}")
  elif os.path.isfile(path):
    st = os.stat(path)
    entries.append(f"{os.path.basename(path)}:{st.st_size}:{st.st_mtime_ns}")
  else:
    raise DataError(f"Sequence source {path!r} does not exist (data.manual_dir).")
  return hashlib.sha1("\n".join(entries).encode()).hexdigest()[:12]


@dataclasses.dataclass(eq=False)
class SequenceBuilderConfig(prepared.ParamsBuilderConfig):
  """`params` plus the source path (not in the name: `params.fingerprint` stands for it)."""
  path: str = ""


class Sequences(prepared.ArrayRecordBuilder):
  """Sequence datasets prepared from a source file or folder; splits train / test (/ val)."""
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  PREPARE_HINT = "aplt_jax.data.sequences.prepare(params, path, data_dir)"

  @property
  def _prepared(self) -> dict:
    """Reads, validates, splits, windows and normalises the source once per instance."""
    if not hasattr(self, "_prepared_cache"):
      self._prepared_cache = build_splits(self.params, self.builder_config.path)
    return self._prepared_cache

  def _info(self) -> tfds.core.DatasetInfo:
    # Prepared data carries its features and metadata: opening it never re-reads the source.
    if (self.data_path / "features.json").exists() and (
        self.data_path / "dataset_info.json").exists():
      return self.dataset_info_from_configs(
          features=tfds.features.FeatureConnector.from_config(os.fspath(self.data_path)),
          supervised_keys=("sequence", "label"), disable_shuffling=True,
          metadata=tfds.core.MetadataDict(), description=__doc__)
    d = self._prepared
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "sequence": tfds.features.Tensor(shape=d["shape"], dtype=np.float32),
            "label": tfds.features.ClassLabel(names=list(d["class_names"])),
            "index": tfds.features.Tensor(shape=(), dtype=np.int64),
            "recording": tfds.features.Tensor(shape=(), dtype=np.int64),
            "start": tfds.features.Tensor(shape=(), dtype=np.int64),
            "subject": tfds.features.Tensor(shape=(), dtype=np.int64),
        }),
        supervised_keys=("sequence", "label"),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(
            params=dataclasses.asdict(self.params), mean=d["mean"].tolist(),
            std=d["std"].tolist(), source=os.path.abspath(self.builder_config.path),
            recordings={s: sorted(set(w.recording.tolist())) for s, w in d["splits"].items()},
            # Recordings too short for one window, in the trainer's skipped-samples report.
            report={s: {"skipped_by_reason": {"shorter_than_window": len(w.skipped)}
                        if w.skipped else {}} for s, w in d["splits"].items()}),
        description=__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {s: self._generate_examples(split=s) for s in self._prepared["splits"]}

  def _generate_examples(self, split: str):
    w = self._prepared["splits"][split]
    for i in range(len(w.x)):
      yield i, {"sequence": w.x[i], "label": int(w.label[i]), "index": i,
                "recording": int(w.recording[i]), "start": int(w.start[i]),
                "subject": int(w.subject[i])}


def build_splits(params: SequenceParams, path: str) -> dict:
  """Steps 1-5 of the module docstring: {'splits': {name: Windows}, 'mean', 'std', 'shape',
  'class_names'}."""
  rec = validate(readers.read(params.kind, path), params.num_classes)
  split = assign_splits(rec, test_subjects=params.test_subjects,
                        test_fraction=params.test_fraction, seed=params.seed,
                        val_subjects=params.val_subjects, val_fraction=params.val_fraction)
  train_ids = np.flatnonzero(split == "train")
  held_out = int(np.isin(split, split_lib.SPLITS[1:]).sum())
  if not len(train_ids) or not held_out:
    raise DataError(f"{rec.source!r}: the split leaves {len(train_ids)} training and "
                    f"{held_out} val / test recordings; both must be non-empty.")
  if params.window == 0:  # whole sequences: one length across the splits, not only within each
    _check_one_length(rec, range(len(rec.x)))
  trailing = rec.x[0].shape[1:]
  if params.normalize:
    mean, std = channel_stats([rec.x[r] for r in train_ids])
  else:
    mean, std = np.zeros(trailing, np.float32), np.ones(trailing, np.float32)
  rec = dataclasses.replace(rec, x=[(a - mean) / std for a in rec.x])
  splits = {}
  for name in split_lib.SPLITS:
    members = np.flatnonzero(split == name)
    if len(members):
      splits[name] = make_windows(rec, members, params.window, params.stride)
      if not len(splits[name].x):
        raise DataError(f"{rec.source!r}: the {name} split has no sequence of "
                        f"{params.window} steps; lower data.sequence.window.")
  names = rec.class_names or tuple(f"class_{c}" for c in range(params.num_classes))
  return {"splits": splits, "mean": mean, "std": std, "shape": splits["train"].x.shape[1:],
          "class_names": names}


def builder(params: SequenceParams, path: str, data_dir: str | os.PathLike) -> Sequences:
  """The (possibly unprepared) builder of `params` from `path`, under `data_dir`."""
  config = SequenceBuilderConfig(name=prepared.config_name(params, _ABBREV),
                                 description=f"Sequences from {path}", params=params, path=path)
  return Sequences(data_dir=os.fspath(data_dir), config=config)


def prepare(params: SequenceParams, path: str, data_dir: str | os.PathLike) -> Sequences:
  """Prepares `params` from `path` under `data_dir` once; a no-op when already there."""
  return prepared.prepare(builder(params, path, data_dir))


# --------------------------------------------------------------------------------------
# The family's datasets (aplt_jax/data/__init__.py): `npz`, `npy_folder`, `watch`

@dataclasses.dataclass(frozen=True)
class ReaderDefaults:
  """A sequence dataset's reader and its defaults for the `data.sequence.*` knobs left unset.

  Attributes:
    kind: the reader.
    window, stride: default windowing (window 0: whole sequences; stride 0: half the window).
    test_subjects: default held-out subjects.
    val_subjects: default validation subjects (carved from the training side).
    default_path: where the source is when data.manual_dir is empty (None: it must be set).
    mirror_sign: the data's own left-right reflection (`augment_seq.SeqAugmentConfig`), used
      when `augment_seq.dataset_mirror` is on; () where the reader cannot know the channels'
      meaning (npz, npy_folder: give `augment_seq.mirror_sign` instead).
  """
  kind: str
  window: int = 0
  stride: int = 0
  test_subjects: tuple[int, ...] = ()
  val_subjects: tuple[int, ...] = ()
  default_path: Callable[[], str] | None = None
  mirror_sign: tuple[int, ...] = ()


# Dataset name -> its reader and defaults. The reader kind `npy-folder` keeps its '-': it is part
# of the prepared copy's directory name, where '_' separates the fields (`prepared.config_name`).
READER_DEFAULTS = {
    "npz": ReaderDefaults("npz"),
    "npy_folder": ReaderDefaults("npy-folder"),
    "watch": ReaderDefaults("watch", window=readers.WATCH_WINDOW, stride=readers.WATCH_STRIDE,
                            test_subjects=readers.WATCH_TEST_SUBJECTS,
                            val_subjects=readers.WATCH_VAL_SUBJECTS,
                            default_path=readers.watch_path,
                            mirror_sign=readers.WATCH_MIRROR_SIGN),
}


NAMES = tuple(READER_DEFAULTS)  # the dataset names this family opens


def params_from_config(name: str, data_cfg) -> tuple[SequenceParams, str]:
  """(SequenceParams, source path) for registry entry `name` under the `data` config."""
  proto, s = READER_DEFAULTS[name], data_cfg.sequence
  path = data_cfg.manual_dir
  if not path:
    if proto.default_path is None:
      raise DataError(f"data.name={name!r} reads sequences from data.manual_dir, which is empty: "
                      f"point it at {'an .npz file' if name == 'npz' else 'a folder of .npy'}.")
    path = proto.default_path()
  window = proto.window if s.window is None else int(s.window)
  stride = 0
  if window:
    stride = int(s.stride) if s.stride is not None else (proto.stride or max(1, window // 2))
  return SequenceParams(
      kind=proto.kind, fingerprint=fingerprint(path), num_classes=int(data_cfg.num_classes),
      window=window, stride=stride,
      test_subjects=tuple(s.test_subjects) if s.test_subjects else proto.test_subjects,
      test_fraction=float(s.test_fraction), seed=int(s.test_seed),
      normalize=bool(s.normalize),
      val_subjects=tuple(s.val_subjects) if s.val_subjects else proto.val_subjects,
      val_fraction=float(data_cfg.val_fraction)), path


def top1_by_subject(split) -> Callable[[np.ndarray, np.ndarray], dict]:
  """The sequences' `evaluate_extra`: top-1 on each subject of `split` (a prepared split whose
  records carry `subject`), as `{"top1_by_subject": {"<subject>": fraction}}`, or `{}` where the
  data names no subjects. Subjects are read from the split (`scalar_fields`) on first use (at
  the final evaluation), in record order, i.e. the order of `scores` and `labels`."""
  cache = []

  def evaluate(scores: np.ndarray, labels: np.ndarray) -> dict:
    if not cache:
      cache.append(split.scalar_fields("subject").get("subject"))
    subject = cache[0]
    if subject is None:  # records without a subject field
      return {}
    if len(subject) != len(labels):
      raise ValueError(f"{len(labels)} evaluated windows, {len(subject)} in {split!r}.")
    if not len(subject) or (subject < 0).any():
      return {}
    right = np.argmax(scores, axis=-1) == labels
    return {"top1_by_subject": {str(k): float(right[subject == k].mean())
                                for k in np.unique(subject)}}

  return evaluate


def open_dataset(name: str, data_cfg) -> Dataset:
  """Prepares (once) and opens the sequence dataset `name` as a `Dataset`."""
  params, path = params_from_config(name, data_cfg)
  prepared_copy = prepare(params, path, default_data_dir(data_cfg))
  train = prepared.open_split(prepared_copy, "train")
  ev = prepared.open_split(prepared_copy, data_cfg.eval_split)
  label = prepared_copy.info.features["label"]
  return Dataset(name=name, train=train, eval=ev, train_labels=train.labels(),
                 eval_labels=ev.labels(), num_classes=label.num_classes,
                 class_names=list(label.names), modality="sequence", input_key="sequence",
                 view_kwargs={"dataset_mirror_sign": READER_DEFAULTS[name].mirror_sign},
                 evaluate_extra=top1_by_subject(ev))
