"""Datasets by registry name: each builder returns a `Dataset` of prepared random-access splits.

Adding a dataset = one function registered here that prepares (or finds) its data and opens the
train and evaluation splits. The algorithm sees only `Dataset`: modality-agnostic.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from aplt_jax.errors import ConfigError, DataError


@dataclasses.dataclass
class Dataset:
  """Prepared splits plus what the trainer needs to know about them.

  Attributes:
    name: registry name.
    train / eval: random-access sources (`len`, `[i] -> dict`); train position i is dense index i.
    train_labels / eval_labels: [N] int32 true labels (train labels of unlabeled clips are hidden
      labels, used only for monitoring).
    num_classes, class_names: the label space.
    modality: 'video' or 'sequence' (picks the augmentation views).
    input_key: the record field holding the clip.
    view_kwargs: extra arguments of the modality's views (prepared videos: frames_per_segment).
    evaluate_extra: optional `(scores [N, C], labels [N]) -> dict`, the dataset's own evaluation
      protocol (MA-52's), added to final.json beside the standard metrics.
    skipped: samples dropped at preparation (corrupt, empty, bad label, ...) as
      `{'<split>/<reason>': count}`, or None for a dataset that reports nothing (synthetic). The
      trainer logs them once as `data/skipped_*` and writes them to final.json. Left None by a
      builder, `build` fills it from the prepared train split's metadata `report`
      (`{split: {'skipped_by_reason': {reason: n}}}`, as the video builders store it).
  """
  name: str
  train: Any
  eval: Any
  train_labels: np.ndarray
  eval_labels: np.ndarray
  num_classes: int
  class_names: list[str]
  modality: str = "video"
  input_key: str = "video"
  view_kwargs: dict = dataclasses.field(default_factory=dict)
  evaluate_extra: Callable[[np.ndarray, np.ndarray], dict] | None = None
  skipped: dict[str, int] | None = None


_BUILDERS: dict[str, Callable[[Any], Dataset]] = {}


def register(name: str):
  def wrap(fn):
    _BUILDERS[name] = fn
    return fn
  return wrap


def names() -> list[str]:
  return sorted(_BUILDERS)


def build(data_cfg) -> Dataset:
  """Prepares (if needed) and opens the dataset `data_cfg.name`."""
  if data_cfg.name not in _BUILDERS:
    raise DataError(f"data.name={data_cfg.name!r} is not a known dataset; choose one of {names()}.")
  dataset = _BUILDERS[data_cfg.name](data_cfg)
  if dataset.skipped is None:
    builder = getattr(dataset.train, "builder", None)
    metadata = getattr(getattr(builder, "info", None), "metadata", None) or {}
    dataset.skipped = skipped_counts(metadata.get("report"))
  return dataset


def skipped_counts(report: Any) -> dict[str, int] | None:
  """`{'<split>/<reason>': n}` from a preparation report `{split: {'skipped_by_reason': {reason:
  n}, ...}}`; None when there is no report."""
  if not isinstance(report, dict):
    return None
  return {f"{split}/{reason}": int(n) for split, r in sorted(report.items())
          for reason, n in sorted((r.get("skipped_by_reason") or {}).items())}


def default_data_dir(data_cfg) -> str:
  return data_cfg.data_dir or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


@register("synthetic")
def _synthetic(data_cfg) -> Dataset:
  from aplt_jax.data import builders, sources, synthetic  # pylint: disable=g-import-not-at-top
  s = data_cfg.synthetic
  try:
    cfg = synthetic.SyntheticConfig(
        num_classes=data_cfg.num_classes, num_frames=s.num_frames, size=s.size,
        num_train=s.num_train, num_val=s.num_val, num_test=s.num_test, seed=s.seed)
  except ValueError as e:
    raise ConfigError(f"data.num_classes / data.synthetic.*: {e}") from e
  builder = builders.prepare_synthetic(cfg, default_data_dir(data_cfg))
  train = sources.open_split(builder, "train")
  ev = sources.open_split(builder, data_cfg.eval_split)
  return Dataset(name="synthetic", train=train, eval=ev, train_labels=train.labels(),
                 eval_labels=ev.labels(), num_classes=cfg.num_classes,
                 class_names=list(synthetic.CLASS_NAMES[:cfg.num_classes]))


def _prepared_videos(name: str):
  """Videos prepared by `python -m aplt_jax.prepare` (aplt_jax/data/video.py, builders.py)."""
  def build_fn(data_cfg) -> Dataset:
    from aplt_jax.data import videos  # pylint: disable=g-import-not-at-top
    return videos.open_dataset(name, data_cfg)
  return build_fn


for _name in ("ma52", "ma12", "list_files", "class_folder"):
  register(_name)(_prepared_videos(_name))
del _name


def _sequences(name: str):
  """Pose and sensor sequences (aplt_jax/data/sequences.py): npz, npy_folder, watch."""
  def build_fn(data_cfg) -> Dataset:
    from aplt_jax.data import sequences  # pylint: disable=g-import-not-at-top
    return sequences.open_dataset(name, data_cfg)
  return build_fn


for _name in ("npz", "npy_folder", "watch"):
  register(_name)(_sequences(_name))
del _name
