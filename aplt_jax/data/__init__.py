"""Datasets by registry name -> the family module that opens them, imported on first use.

A family module (`synthetic`, `sequences`, `video`) declares `NAMES`, the dataset names it opens,
and `open_dataset(name, data_cfg) -> Dataset` (`dataset.py`), which prepares its data once (or
finds it prepared) and opens the train and evaluation splits. Adding a dataset touches its
family's module (and a config), never this file. The algorithm sees only `Dataset`.

Words: a dataset's *source* is the raw data it is prepared from (a video folder, an .npz, a
folder of .npy); a *prepared split* (`prepared.PreparedSplit`) is what is read back by index.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from aplt_jax.data.dataset import Dataset, skipped_counts
from aplt_jax.registry import Registry

FAMILIES = ("aplt_jax.data.synthetic", "aplt_jax.data.sequences", "aplt_jax.data.video")

_DATASETS: Registry[ModuleType] | None = None


def registry() -> Registry[ModuleType]:
  """Dataset name -> family module; the families are imported on the first call."""
  global _DATASETS
  if _DATASETS is None:
    datasets = Registry("dataset")
    for module in map(importlib.import_module, FAMILIES):
      for name in module.NAMES:
        datasets.register(name)(module)
    _DATASETS = datasets
  return _DATASETS


def names() -> list[str]:
  return registry().names()


def build(data_cfg) -> Dataset:
  """Prepares (if needed) and opens the dataset `data_cfg.name`.

  A family that leaves `Dataset.skipped` None gets it from the prepared train split's metadata
  `report` (`{split: {'skipped_by_reason': {reason: n}}}`, as the video and sequence families
  store it).
  """
  dataset = registry().get(data_cfg.name).open_dataset(data_cfg.name, data_cfg)
  if dataset.skipped is None:
    builder = getattr(dataset.train, "builder", None)
    metadata = getattr(getattr(builder, "info", None), "metadata", None) or {}
    dataset.skipped = skipped_counts(metadata.get("report"))
  return dataset
