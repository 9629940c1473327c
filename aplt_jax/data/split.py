"""Every split decision, one rule each: split names, split folders, held-out draws, labeled subset.

- `SPLITS`: the split names a dataset can have.
- `split_folders`: whether a folder's subfolders are splits or classes (video class folders,
  `.npy` sequence folders).
- `hold_out`: the per-class held-out draw of a dataset without a test split of its own.
- `draw_labeled` / `load_or_create`: the labeled subset of the train split, drawn per class,
  seeded, written to WORKDIR/split.json and reused on resume.

Errors are `ConfigError` (the budget or the workdir's split) or `DataError` (labels that do not fit
`data.num_classes`), one paragraph each, printed by main.py without a traceback.
"""
from __future__ import annotations

import json
import os

import numpy as np

from aplt_jax import workdir as workdir_lib
from aplt_jax.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def subfolders(path: str) -> list[str]:
  """The sorted names of the folders in `path`, dot-folders (.git, .ipynb_checkpoints) skipped."""
  return sorted(d for d in os.listdir(path)
                if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))


def split_folders(root: str) -> dict[str, str] | None:
  """`{split: folder}` when the folders of `root` are splits, None when they are classes.

  They are splits when they are `train` plus `val` and/or `test`, and nothing else; without
  `train`, or without both `val` and `test`, they are classes. Split folders beside folders of
  other names are ambiguous (a DataError names them).
  """
  top = subfolders(root)
  if "train" not in top or not any(s in top for s in SPLITS[1:]):
    return None
  others = [d for d in top if d not in SPLITS]
  if others:
    raise DataError(f"{root} holds split folders {[d for d in top if d in SPLITS]} beside "
                    f"{others}: either every folder there is a split (train with val and/or "
                    "test, classes inside) or every folder is a class. Move or rename "
                    f"{others}.")
  return {s: os.path.join(root, s) for s in SPLITS if s in top}


def hold_out(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
  """[N] bool, True for the held-out rows: per class (in sorted order), a draw of
  `round(fraction * n_c)` of its n_c rows, at most n_c - 1 (one is always left to train on)."""
  labels = np.asarray(labels)
  held = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    k = min(round(fraction * len(members)), len(members) - 1)
    held[rng.choice(members, size=k, replace=False)] = True
  return held


def draw_labeled(labels: np.ndarray, num_classes: int, *, seed: int,
                 ratio: float | None = None, per_class: int | None = None) -> np.ndarray:
  """Sorted dense indices of the labeled clips.

  Per class c with n_c training clips: `max(1, floor(ratio * n_c))` clips, or
  `min(per_class, n_c)`. Exactly one of `ratio` / `per_class` must be given. Every class must
  have at least one training clip (otherwise no labeled clip can seed its cluster).
  """
  if (ratio is None) == (per_class is None):
    raise ConfigError("Set exactly one of data.labeled_ratio and data.labels_per_class "
                     f"(got labeled_ratio={ratio}, labels_per_class={per_class}).")
  if ratio is not None and not 0.0 < ratio <= 1.0:
    raise ConfigError(f"data.labeled_ratio={ratio} must be in (0, 1].")
  if per_class is not None and per_class < 1:
    raise ConfigError(f"data.labels_per_class={per_class} must be at least 1: every class "
                      "needs a labeled clip to seed its cluster.")
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise DataError(f"Training labels span [{labels.min()}, {labels.max()}], outside "
                     f"[0, {num_classes}): data.num_classes={num_classes} disagrees with the data.")
  counts = np.bincount(labels, minlength=num_classes)
  empty = np.flatnonzero(counts == 0)
  if empty.size:
    raise DataError(f"Classes {empty.tolist()} have no training clips, so the labeled budget "
                    "leaves them without a labeled clip to seed their cluster; fix "
                    "data.num_classes or the dataset.")
  rng = np.random.default_rng([seed, 7])
  chosen = []
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    k = max(1, int(np.floor(ratio * members.size))) if ratio is not None else min(per_class,
                                                                                  members.size)
    chosen.append(rng.choice(members, size=k, replace=False))
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def load_or_create(workdir: str, labels: np.ndarray, num_classes: int, *, seed: int,
                   ratio: float | None, per_class: int | None) -> np.ndarray:
  """Draws the split, or reads WORKDIR/split.json and refuses if it disagrees with the config."""
  labeled = draw_labeled(labels, num_classes, seed=seed, ratio=ratio, per_class=per_class)
  path = os.path.join(workdir, "split.json")
  record = {"labeled_ratio": ratio, "labels_per_class": per_class, "split_seed": seed,
            "num_train": int(len(labels)), "labeled": labeled.tolist()}
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved != record:
      raise ConfigError(
          f"{path} holds a different labeled split (labeled_ratio={saved.get('labeled_ratio')}, "
          f"labels_per_class={saved.get('labels_per_class')}, split_seed={saved.get('split_seed')}, "
          f"{len(saved.get('labeled', []))} clips) than this config asks for; resuming would mix "
          "two experiments. Use a new --workdir, or restore the original config.")
    return labeled
  workdir_lib.write_json(path, record)
  return labeled
