"""`Dataset`: what the trainer sees of any dataset, modality-agnostic (DESIGN §4)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np


@dataclasses.dataclass
class Dataset:
  """Prepared splits plus what the trainer needs to know about them.

  Attributes:
    name: registry name.
    train / eval: random-access splits (`len`, `[i] -> dict`, e.g. `prepared.PreparedSplit`);
      train position i is dense index i.
    train_labels / eval_labels: [N] int32 true labels (train labels of unlabeled clips are hidden
      labels, used only for monitoring).
    num_classes, class_names: the label space.
    modality: 'video' or 'sequence' (picks the augmentation views).
    input_key: the record field holding the clip.
    view_kwargs: extra arguments of the modality's views (prepared videos: frames_per_segment;
      sequences: the data's own left-right reflection, dataset_mirror_sign).
    evaluate_extra: optional `(scores [N, C], labels [N]) -> dict`, the dataset's own evaluation
      protocol (MA-52's; sequences' top-1 by subject), added to final.json beside the standard
      metrics where not empty.
    skipped: samples dropped at preparation (corrupt, empty, bad label, ...) as
      `{'<split>/<reason>': count}`, or None for a dataset that reports nothing (synthetic). The
      trainer logs them once as `data/skipped_*` and writes them to final.json. Left None by a
      family, `data.build` fills it from the prepared train split's metadata `report`
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


def skipped_counts(report: Any) -> dict[str, int] | None:
  """`{'<split>/<reason>': n}` from a preparation report `{split: {'skipped_by_reason': {reason:
  n}, ...}}`; None when there is no report."""
  if not isinstance(report, dict):
    return None
  return {f"{split}/{reason}": int(n) for split, r in sorted(report.items())
          for reason, n in sorted((r.get("skipped_by_reason") or {}).items())}


def default_data_dir(data_cfg) -> str:
  return data_cfg.data_dir or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
