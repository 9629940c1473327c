"""Augmentation (DESIGN §5): a modality's `Views` (weak, strong, centre), by registry name.

`video` augments clips on device (TSN frame pick, crops, flips, RandAugment-style ops, cutout);
`sequence` augments pose and sensor sequences. The train, eval and embed steps (`steps`) take a
`Views` and never look at the modality.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
from absl import logging

from aplt_jax.registry import Registry

ViewFn = Callable[[jax.Array, jax.Array], jax.Array]  # (key, raw clips [B, ...]) -> float [B, ...]


@dataclasses.dataclass(frozen=True)
class Views:
  """The modality's batched views: random weak / strong augmentation and the fixed eval view."""
  weak: ViewFn
  strong: ViewFn
  center: Callable[[jax.Array], jax.Array]


_VIEWS: Registry[Callable[..., Views]] = Registry("augmentation modality")
register = _VIEWS.register


def build(modality: str, config, **kwargs) -> Views:
  """The views of `modality`; `kwargs` are the dataset's `view_kwargs` (e.g. frames_per_segment)."""
  return _VIEWS.get(modality)(config, **kwargs)


@register("video")
def _video(config, frames_per_segment: int = 1) -> Views:
  """Clip views; prepared videos (`frames_per_segment` k > 1) first pick one frame per segment."""
  from aplt_jax.augment import video as augment  # pylint: disable=g-import-not-at-top
  from aplt_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from aplt_jax.models import tcn  # pylint: disable=g-import-not-at-top
  if config.model.name in tcn.SEQUENCE_BACKBONES:
    raise ConfigError(f"data.name={config.data.name!r} holds video clips, but "
                      f"model.name={config.model.name!r} is a sequence backbone; use a video "
                      "backbone such as tsm_resnet18.")
  cfg = augment.AugmentConfig.from_config(config.augment, config.model.image_size)
  if frames_per_segment == 1:  # synthetic clips: exactly the frames the model sees
    return Views(weak=lambda k, x: augment.weak_batch(k, x, cfg),
                 strong=lambda k, x: augment.strong_batch(k, x, cfg),
                 center=lambda x: augment.center_batch(x, cfg))
  pick = lambda key, x: augment.pick_segment_frames(
      None if key is None else jax.random.fold_in(key, 1), x, frames_per_segment)
  return Views(weak=lambda k, x: augment.weak_batch(k, pick(k, x), cfg),
               strong=lambda k, x: augment.strong_batch(k, pick(k, x), cfg),
               center=lambda x: augment.center_batch(pick(None, x), cfg))


@register("sequence")
def _sequence(config, dataset_mirror_sign=()) -> Views:
  """Sequence views; `dataset_mirror_sign` is the data's own reflection (`augment_seq.dataset_mirror`)."""
  from aplt_jax.augment import sequence as augment_seq  # pylint: disable=g-import-not-at-top
  from aplt_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from aplt_jax.models import tcn  # pylint: disable=g-import-not-at-top
  if config.model.name not in tcn.SEQUENCE_BACKBONES:
    raise ConfigError(f"data.name={config.data.name!r} holds sequences, but "
                      f"model.name={config.model.name!r} is a video backbone; set "
                      f"--config.model.name to one of {list(tcn.SEQUENCE_BACKBONES)}.")
  cfg = augment_seq.SeqAugmentConfig.from_config(config.augment_seq, dataset_mirror_sign)
  if config.augment_seq.dataset_mirror and not cfg.mirror_sign:
    logging.warning("augment_seq.dataset_mirror: data.name=%r declares no left-right reflection, "
                    "so no view is mirrored; give augment_seq.mirror_sign (a sign per channel) "
                    "for one.", config.data.name)
  return Views(weak=lambda k, x: augment_seq.weak_batch(k, x, cfg),
               strong=lambda k, x: augment_seq.strong_batch(k, x, cfg),
               center=lambda x: augment_seq.center_batch(x, cfg))
