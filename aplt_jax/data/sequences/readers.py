"""Readers of pose and sensor sequence sources, one registered per kind (DESIGN §4).

A reader turns a source (a file or a folder) into `Recordings`: the sequences as recorded, each
`[T_i, C]` or `[T_i, J, D]`, with labels and, where the source knows them, subjects and a split.
Checks of values and labels, splitting, windowing and normalisation are `sequences`' job.
Adding a source format: a reader registered here, its `READER_DEFAULTS` entry in `sequences`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import os
from typing import Callable
import zipfile
import zlib

import numpy as np

from aplt_jax.data import split as split_lib
from aplt_jax.data.split import SPLITS
from aplt_jax.errors import DataError
from aplt_jax.registry import Registry

NPZ_KEYS = ("x", "y", "subject", "split", "class_names")

# The smartwatch set shipped with seglearn (BSD): 140 recordings of 6-axis inertial data at 50 Hz
# (10 subjects x 7 shoulder exercises x 2 arms). Its protocol here: 4 s windows with a 2 s
# stride, subjects 8, 9 and 10 held out for testing.
WATCH_RATE_HZ = 50
WATCH_WINDOW = 4 * WATCH_RATE_HZ
WATCH_STRIDE = 2 * WATCH_RATE_HZ
WATCH_TEST_SUBJECTS = (8, 9, 10)
WATCH_VAL_SUBJECTS = (7,)  # For choosing defaults and variants; never trained on.
WATCH_CLASS_NAMES = ("PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW")
# The left-right reflection of a wrist sensor's motion (channels ax ay az wx wy wz), the signs
# `augment_seq.dataset_mirror` uses: the axis across the body, ax, changes sign and, angular
# velocity being a pseudovector, so do the gyro axes perpendicular to it, wy and wz. Each exercise
# was recorded on both arms; chosen on validation (docs/choosing_the_offline_phase.md, round 7).
WATCH_MIRROR_SIGN = (-1, 1, 1, 1, -1, -1)
# SHA-256 of `seglearn/data/watch_dataset.npy` in seglearn 1.2.5 (requirements.txt). The file is a
# pickle, and unpickling runs code: only a file with exactly these bytes is ever unpickled.
WATCH_SHA256 = "eb122f23cdf06ef6bd6c6c5312958ec5cf9d038e2e6d457b8081662c75a42537"

# What numpy raises for a file it cannot read as plain arrays (zip errors for a cut-off .npz).
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclasses.dataclass
class Recordings:
  """Sequences as read from a source, before splitting and windowing.

  Attributes:
    x: R arrays `[T_i, ...]` (one trailing shape for all).
    y: [R] int64 labels.
    subject: [R] int64 subject ids, -1 where unknown.
    split: [R] split names ('train' / 'val' / 'test'), or None when the source has none.
    class_names: names of the classes, or () to name them by index.
    source: where they came from, for messages.
  """
  x: list[np.ndarray]
  y: np.ndarray
  subject: np.ndarray
  split: np.ndarray | None
  class_names: tuple[str, ...]
  source: str


Reader = Callable[[str], Recordings]
READERS: Registry[Reader] = Registry("sequence reader")  # kind -> `fn(path) -> Recordings`
register_reader = READERS.register


def read(kind: str, path: str) -> Recordings:
  return READERS.get(kind)(path)


@register_reader("npz")
def read_npz(path: str) -> Recordings:
  """An `.npz` with `x` [N, T, C] or [N, T, J, D], `y` [N] int, optional `subject` [N] int,
  `split` [N] str ('train' / 'val' / 'test') and `class_names` [num_classes] str."""
  if not os.path.isfile(path):
    raise DataError(f"Sequence file {path!r} does not exist; set data.manual_dir to an .npz "
                    f"holding arrays {NPZ_KEYS[:2]} (and optionally {NPZ_KEYS[2:]}).")
  arrays = _load_npz(path)
  unknown = sorted(set(arrays) - set(NPZ_KEYS))
  missing = [k for k in ("x", "y") if k not in arrays]
  if unknown or missing:
    raise DataError(f"{path!r} holds arrays {sorted(arrays)}: "
                    + (f"missing {missing}" if missing else "")
                    + ("; " if missing and unknown else "")
                    + (f"unknown {unknown}" if unknown else "")
                    + f". Expected x and y, optionally {list(NPZ_KEYS[2:])}.")
  x, y = arrays["x"], arrays["y"]
  if x.ndim not in (3, 4):
    raise DataError(f"{path!r}: x has shape {x.shape}; expected [N, T, C] (channels) or "
                    "[N, T, J, D] (joints x coordinates).")
  n = len(x)
  for key in ("y", "subject", "split"):
    if key in arrays and arrays[key].shape != (n,):
      raise DataError(f"{path!r}: {key} has shape {arrays[key].shape}; expected ({n},), one "
                      f"entry per sequence of x {x.shape}.")
  class_names = ()
  if "class_names" in arrays:
    names = arrays["class_names"]
    if names.ndim != 1 or names.dtype.kind not in "US":
      raise DataError(f"{path!r}: class_names must be a 1-D array of strings, got "
                      f"{names.dtype} {names.shape}.")
    class_names = tuple(str(s) for s in names)
    repeated = sorted({c for c in class_names if class_names.count(c) > 1})
    if repeated:
      raise DataError(f"{path!r}: class_names lists {repeated} more than once; every class needs "
                      "its own name (class k is class_names[k]).")
  subject = arrays.get("subject")
  return Recordings(
      x=list(x), y=_int_array(y, "y", path),
      subject=(np.full(n, -1, np.int64) if subject is None
               else _int_array(subject, "subject", path)),
      split=_split_array(arrays["split"], path) if "split" in arrays else None,
      class_names=class_names, source=path)


@register_reader("npy-folder")
def read_npy_folder(path: str) -> Recordings:
  """`path/<class>/<sample>.npy`, or `path/<split>/<class>/<sample>.npy` with split folders
  among train / val / test. Each file is one sequence `[T, C]` or `[T, J, D]`; classes are the
  class folder names, sorted. Names starting with a dot are skipped; a folder inside a class
  folder is refused (its files would be silently unused)."""
  if not os.path.isdir(path):
    raise DataError(f"Sequence folder {path!r} does not exist; set data.manual_dir to a folder "
                    "laid out as <class>/<sample>.npy (or <split>/<class>/<sample>.npy).")
  split_dirs = split_lib.split_folders(path)
  has_splits = split_dirs is not None
  roots = sorted(split_dirs.items()) if has_splits else [(None, path)]  # split names sorted
  files = []  # (split, class, file)
  for split, root in roots:
    for cls in split_lib.subfolders(root):
      folder = os.path.join(root, cls)
      for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if name.startswith("."):  # .ipynb_checkpoints, editor files: never data
          continue
        if os.path.isdir(full):
          raise DataError(f"{full!r} is a folder inside the class folder {folder!r}; files in it "
                          "would not be read. Move its .npy files up into the class folder, or "
                          "start its name with a dot to hide it.")
        if name.endswith(".npy"):
          if not os.path.exists(full):
            raise DataError(f"{full!r} is a symbolic link to {os.readlink(full)!r}, which does "
                            "not exist; fix or remove the link.")
          files.append((split, cls, full))
  if not files:
    raise DataError(f"No .npy files under {path!r}; expected <class>/<sample>.npy or "
                    f"<split>/<class>/<sample>.npy with split in {SPLITS}.")
  class_names = tuple(sorted({c for _, c, _ in files}))
  x = [_load_npy(f) for _, _, f in files]
  return Recordings(
      x=x, y=np.array([class_names.index(c) for _, c, _ in files], np.int64),
      subject=np.full(len(files), -1, np.int64),
      split=np.array([s for s, _, _ in files]) if has_splits else None,
      class_names=class_names, source=path)


def watch_path() -> str:
  """`seglearn/data/watch_dataset.npy` inside the installed seglearn package.

  Found without importing seglearn: its package imports pandas, which this project does not
  need (the file is a pickled dict of numpy arrays, read with numpy alone, and only when its
  SHA-256 is `WATCH_SHA256`).
  """
  spec = importlib.util.find_spec("seglearn")
  if spec is None or not spec.submodule_search_locations:
    raise DataError("The watch dataset ships in the seglearn package, which is not installed: "
                    "pip install -r requirements.txt (it pins seglearn), or set "
                    "data.manual_dir to an unmodified copy of seglearn 1.2.5's "
                    "seglearn/data/watch_dataset.npy.")
  return os.path.join(list(spec.submodule_search_locations)[0], "data", "watch_dataset.npy")


@register_reader("watch")
def read_watch(path: str) -> Recordings:
  """seglearn's `watch_dataset.npy`: recordings `[T_i, 6]` (ax, ay, az, wx, wy, wz) at 50 Hz."""
  if not os.path.isfile(path):
    raise DataError(f"The watch dataset file {path!r} does not exist.")
  with open(path, "rb") as f:
    raw = f.read()  # hashed and loaded from these bytes: the file cannot change in between
  if hashlib.sha256(raw).hexdigest() != WATCH_SHA256:
    raise DataError(f"{path!r} is not seglearn 1.2.5's watch_dataset.npy (its SHA-256 differs), "
                    "so it is not loaded: that file is a pickle, and unpickling any other file "
                    "could run code. Leave data.manual_dir empty to read the copy in the "
                    "installed seglearn package; for other sensor data use data.name=npz or "
                    "npy_folder.")
  d = np.load(io.BytesIO(raw), allow_pickle=True).item()  # the checksum above pins the bytes
  x, y, subject = d["X"], d["y"], d["subject"]
  return Recordings(x=[np.asarray(r) for r in x], y=_int_array(np.asarray(y), "y", path),
                    subject=_int_array(np.asarray(subject), "subject", path), split=None,
                    class_names=tuple(str(s) for s in d.get("y_labels", WATCH_CLASS_NAMES)),
                    source=path)


def _unreadable(path: str, e: Exception, expected: str) -> DataError:
  """One paragraph for a file numpy cannot read; numpy's own advice to unpickle is not passed on."""
  if isinstance(e, ValueError) and "pickle" in str(e).lower():
    cause = ("it holds pickled Python objects (object arrays), which are never loaded because "
             "unpickling a file can run code")
  elif isinstance(e, (zipfile.BadZipFile, zlib.error, EOFError)):
    cause = f"it is truncated or corrupt ({type(e).__name__}: {e})"
  else:
    cause = f"{type(e).__name__}: {e}"
  return DataError(f"Cannot read {path!r} as {expected}: {cause}. Save numeric and string arrays "
                   "only, with numpy.save / numpy.savez.")


def _load_npz(path: str) -> dict[str, np.ndarray]:
  """Every array of the `.npz` at `path`, without unpickling (DataError when unreadable)."""
  with open(path, "rb") as f:
    if f.read(6) == b"\x93NUMPY":
      raise DataError(f"{path!r} is a single .npy array, not an .npz archive of named arrays; "
                      "save it with numpy.savez(path, x=..., y=...).")
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except _READ_ERRORS as e:
    raise _unreadable(path, e, "an .npz of plain arrays") from None


def _load_npy(path: str) -> np.ndarray:
  """The array of the `.npy` at `path`, without unpickling (DataError when unreadable)."""
  try:
    a = np.load(path, allow_pickle=False)
  except _READ_ERRORS as e:
    raise _unreadable(path, e, "a .npy array") from None
  if not isinstance(a, np.ndarray):
    raise DataError(f"{path!r} is an .npz archive, not a .npy array; save one sequence per file "
                    "with numpy.save.")
  return a


def _int_array(a: np.ndarray, key: str, path: str) -> np.ndarray:
  """Integer-valued `a` as int64 (floats are accepted only when every value is an integer)."""
  a = np.asarray(a)
  if a.dtype.kind in "iu":
    return a.astype(np.int64)
  if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
    return a.astype(np.int64)
  raise DataError(f"{path!r}: {key} must hold integers, got dtype {a.dtype}"
                  + (f" with values like {a.ravel()[:3].tolist()}" if a.size else "") + ".")


def _split_array(a: np.ndarray, path: str) -> np.ndarray:
  if a.dtype.kind not in "US":
    raise DataError(f"{path!r}: split must hold strings among {SPLITS}, got dtype {a.dtype}.")
  a = a.astype(str)
  bad = sorted(set(a.tolist()) - set(SPLITS))
  if bad:
    raise DataError(f"{path!r}: split has values {bad}; allowed: {list(SPLITS)}.")
  return a
