"""Datasets by registry name: each builder returns a `Dataset` of prepared random-access splits.

Adding a dataset = one function registered here that prepares (or finds) its data and opens the
train and evaluation splits. The algorithm sees only `Dataset`: modality-agnostic.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from aplt_jax.errors import DataError


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
  return _BUILDERS[data_cfg.name](data_cfg)


def default_data_dir(data_cfg) -> str:
  return data_cfg.data_dir or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


@register("synthetic")
def _synthetic(data_cfg) -> Dataset:
  from aplt_jax.data import builders, sources, synthetic  # pylint: disable=g-import-not-at-top
  s = data_cfg.synthetic
  cfg = synthetic.SyntheticConfig(
      num_classes=data_cfg.num_classes, num_frames=s.num_frames, size=s.size,
      num_train=s.num_train, num_val=s.num_val, num_test=s.num_test, seed=s.seed)
  builder = builders.prepare_synthetic(cfg, default_data_dir(data_cfg))
  train = sources.open_split(builder, "train")
  ev = sources.open_split(builder, data_cfg.eval_split)
  return Dataset(name="synthetic", train=train, eval=ev, train_labels=train.labels(),
                 eval_labels=ev.labels(), num_classes=cfg.num_classes,
                 class_names=list(synthetic.CLASS_NAMES[:cfg.num_classes]))


def _needs_video_issue(name: str, classes: int):
  def build_fn(data_cfg) -> Dataset:
    root = data_cfg.manual_dir or "<manual_dir>"
    raise DataError(
        f"The {name} dataset is read from the MA-52 list-file layout: {root}/label_name.txt, "
        f"{root}/{{train,val,test}}_list_videos.txt and {root}/videos_{{train,val,test}}/*.mp4 "
        f"({classes} classes), prepared once into ArrayRecord under data.data_dir. Video "
        "preparation is not part of this release yet; train on data.name='synthetic' meanwhile.")
  return build_fn


register("ma52")(_needs_video_issue("MA-52", 52))
register("ma12")(_needs_video_issue("MA-12", 12))
