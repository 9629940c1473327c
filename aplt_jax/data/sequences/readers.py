"""Readers of pose and sensor sequence sources, one registered per kind (DESIGN §4).

A reader turns a source (a file or a folder) into `Recordings`: the sequences as recorded, each
`[T_i, C]` or `[T_i, J, D]`, with labels and, where the source knows them, subjects and a split.
Checks of values and labels, splitting, windowing and normalisation are `sequences`' job.
Adding a source format: a reader registered here, its `READER_DEFAULTS` entry in `sequences`.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Callable

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
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (ValueError, OSError, EOFError) as e:
    raise DataError(f"Cannot read {path!r} as an .npz of plain arrays ({e}). Save it with "
                    "numpy.savez(path, x=..., y=...); object arrays are not accepted.") from e
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
  class folder names, sorted."""
  if not os.path.isdir(path):
    raise DataError(f"Sequence folder {path!r} does not exist; set data.manual_dir to a folder "
                    "laid out as <class>/<sample>.npy (or <split>/<class>/<sample>.npy).")
  split_dirs = split_lib.split_folders(path)
  has_splits = split_dirs is not None
  roots = sorted(split_dirs.items()) if has_splits else [(None, path)]  # split names sorted
  files = []  # (split, class, file)
  for split, root in roots:
    for cls in split_lib.subfolders(root):
      for name in sorted(os.listdir(os.path.join(root, cls))):
        if name.endswith(".npy"):
          files.append((split, cls, os.path.join(root, cls, name)))
  if not files:
    raise DataError(f"No .npy files under {path!r}; expected <class>/<sample>.npy or "
                    f"<split>/<class>/<sample>.npy with split in {SPLITS}.")
  class_names = tuple(sorted({c for _, c, _ in files}))
  x = []
  for _, _, f in files:
    try:
      x.append(np.load(f, allow_pickle=False))
    except (ValueError, OSError, EOFError) as e:
      raise DataError(f"Cannot read {f!r} as a .npy array ({e}).") from e
  return Recordings(
      x=x, y=np.array([class_names.index(c) for _, c, _ in files], np.int64),
      subject=np.full(len(files), -1, np.int64),
      split=np.array([s for s, _, _ in files]) if has_splits else None,
      class_names=class_names, source=path)


def watch_path() -> str:
  """`seglearn/data/watch_dataset.npy` inside the installed seglearn package.

  Found without importing seglearn: its package imports pandas, which this project does not
  need (the file is a pickled dict of numpy arrays, read with numpy alone).
  """
  spec = importlib.util.find_spec("seglearn")
  if spec is None or not spec.submodule_search_locations:
    raise DataError("The watch dataset ships in the seglearn package, which is not installed: "
                    "pip install -r requirements.txt (it pins seglearn), or set "
                    "data.manual_dir to a copy of seglearn/data/watch_dataset.npy.")
  return os.path.join(list(spec.submodule_search_locations)[0], "data", "watch_dataset.npy")


@register_reader("watch")
def read_watch(path: str) -> Recordings:
  """seglearn's `watch_dataset.npy`: recordings `[T_i, 6]` (ax, ay, az, wx, wy, wz) at 50 Hz."""
  if not os.path.isfile(path):
    raise DataError(f"The watch dataset file {path!r} does not exist.")
  try:
    d = np.load(path, allow_pickle=True).item()  # The package's own file, a pickled dict.
    x, y, subject = d["X"], d["y"], d["subject"]
  except (ValueError, OSError, EOFError, KeyError, AttributeError) as e:
    raise DataError(f"{path!r} is not seglearn's watch dataset (a dict with X, y, subject): "
                    f"{e}") from e
  return Recordings(x=[np.asarray(r) for r in x], y=_int_array(np.asarray(y), "y", path),
                    subject=_int_array(np.asarray(subject), "subject", path), split=None,
                    class_names=tuple(str(s) for s in d.get("y_labels", WATCH_CLASS_NAMES)),
                    source=path)


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
