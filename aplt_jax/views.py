"""Per-modality augmentation views (weak, strong, centre), chosen by a registry name."""
from __future__ import annotations

from typing import Callable

from aplt_jax.steps import Views

_BUILDERS: dict[str, Callable[..., Views]] = {}


def register(modality: str):
  def wrap(fn):
    _BUILDERS[modality] = fn
    return fn
  return wrap


def build(modality: str, config) -> Views:
  if modality not in _BUILDERS:
    raise ValueError(f"No augmentation views for modality {modality!r}; known: {sorted(_BUILDERS)}.")
  return _BUILDERS[modality](config)


@register("video")
def _video(config) -> Views:
  from aplt_jax import augment  # pylint: disable=g-import-not-at-top
  cfg = augment.AugmentConfig.from_config(config.augment, config.model.image_size)
  return Views(weak=lambda k, x: augment.weak_batch(k, x, cfg),
               strong=lambda k, x: augment.strong_batch(k, x, cfg),
               center=lambda x: augment.center_batch(x, cfg))
