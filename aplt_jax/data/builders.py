"""TFDS dataset builders: clips rendered or decoded once, stored as ArrayRecord (DESIGN §4).

No TensorFlow is needed: the builders use raw `Tensor` / `ClassLabel` features and write
`file_format="array_record"`, which `sources.open_split` reads with random access.

Shared conventions (for every builder in this module):
- features `video` (uint8 [T, H, W, 3] for videos), `label` (`ClassLabel`) and `index`
  (int64, the clip's dense index);
- `disable_shuffling = True` and integer keys yielded in index order, so the record at
  position i of a split has `index == i`;
- each builder is parametrised by a frozen dataclass carried by a `ParamsBuilderConfig`,
  whose name encodes every field (`config_name`): different knobs prepare into a different
  directory, the same knobs reuse the prepared one;
- `prepare(builder)` builds once, is a cheap no-op afterwards, and is safe against
  interrupted or concurrent preparations (see its docstring).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import inspect
import math
import os
import re
import time
from typing import Any, Iterator, Mapping

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from aplt_jax.data import synthetic

FILE_FORMAT = "array_record"

_NAME_CHARS = re.compile(r"^[\w.+\-]+$")  # what TFDS accepts in a config name


def _format_value(value: Any) -> str:
  """Compact, unambiguous, TFDS-legal text for one config value."""
  if isinstance(value, bool):
    return str(int(value))
  if isinstance(value, (int, np.integer)):
    return f"m{-value}" if value < 0 else str(int(value))
  if isinstance(value, (float, np.floating)):
    value = float(value)
    if not math.isfinite(value):
      raise ValueError(f"non-finite config value {value}")
    text = repr(value)  # shortest round-trip form: 1.5, 0.03, 1e-05
    return "m" + text[1:] if text.startswith("-") else text
  if isinstance(value, (tuple, list)):
    return "-".join(_format_value(v) for v in value)
  text = str(value)
  if not _NAME_CHARS.match(text) or "_" in text:
    raise ValueError(f"config value {text!r} cannot be encoded in a config name")
  return text


def config_name(params: Any, abbrev: Mapping[str, str]) -> str:
  """Encodes every field of the dataclass `params` as `<abbrev><value>` joined by '_'.

  `abbrev` must name every field (so a new knob cannot be silently left out of the
  directory name) with distinct, underscore-free abbreviations.
  """
  fields = [f.name for f in dataclasses.fields(params)]
  missing = sorted(set(fields) - set(abbrev))
  extra = sorted(set(abbrev) - set(fields))
  if missing or extra:
    raise ValueError(f"abbreviations must cover exactly the fields of "
                     f"{type(params).__name__}: missing {missing}, unknown {extra}")
  if len(set(abbrev.values())) != len(abbrev) or any("_" in a for a in abbrev.values()):
    raise ValueError(f"abbreviations must be distinct and without '_': {dict(abbrev)}")
  name = "_".join(abbrev[f] + _format_value(getattr(params, f)) for f in fields)
  if len(name) > 200:
    raise ValueError(f"config name too long for a directory ({len(name)} chars): {name}")
  return name


@dataclasses.dataclass(eq=False)
class ParamsBuilderConfig(tfds.core.BuilderConfig):
  """A BuilderConfig carrying the frozen dataclass `params` that parametrises a builder."""
  params: Any = None


def video_features(num_frames: int, height: int, width: int,
                   class_names: tuple[str, ...]) -> tfds.features.FeaturesDict:
  """The common video-clip features: video uint8 [T, H, W, 3], label, dense index."""
  return tfds.features.FeaturesDict({
      "video": tfds.features.Tensor(shape=(num_frames, height, width, 3), dtype=np.uint8),
      "label": tfds.features.ClassLabel(names=list(class_names)),
      "index": tfds.features.Tensor(shape=(), dtype=np.int64),
  })


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of this module's builders: the shared conventions and a TFDS work-around.

  Subclasses set `VERSION`, `PREPARE_HINT` (how to prepare them, quoted in errors) and
  implement `_info` / `_split_generators` / `_generate_examples` as for any TFDS builder,
  with `disable_shuffling=True` and integer keys in index order.
  """
  PREPARE_HINT = "aplt_jax.data.builders.prepare(builder)"

  # TFDS locates a builder's source file through the `importlib_resources` backport, which is
  # not installed here (and fails with ModuleNotFoundError for builders defined in a package);
  # the file is only used to look for a download checksums file, so name it directly.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))

  @property
  def params(self) -> Any:
    """The frozen dataclass of this builder's `ParamsBuilderConfig`."""
    return self.builder_config.params


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
  """Exclusive advisory lock (flock) on `path`: one preparation per machine at a time."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
  """`builder.is_prepared()`, without TFDS's warning for a directory that does not exist."""
  return (builder.data_path / "dataset_info.json").exists() and builder.is_prepared()


def prepare(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
  """Prepares `builder` as ArrayRecord unless already prepared; returns it (ready to read).

  Cheap when prepared (one directory check). Safe to interrupt: TFDS writes into a sibling
  `incomplete.*` directory and renames it to the versioned directory only after every split
  and the dataset info are written (an exception removes the temporary directory; a killed
  process leaves it behind, unused). Concurrent calls on one machine serialise on a lock file
  beside the config directory; the second finds the data prepared and returns.
  """
  if is_prepared(builder):
    return reopen(builder)
  lock = os.path.join(os.fspath(builder.data_path.parent.parent),
                      f".{builder.builder_config.name if builder.builder_config else 'default'}"
                      ".lock")
  with _file_lock(lock):
    if not is_prepared(builder):  # else another process finished while we waited
      logging.info("Preparing %s into %s", builder.info.full_name, builder.data_dir)
      start = time.perf_counter()
      builder.download_and_prepare(file_format=FILE_FORMAT)
      logging.info("Prepared %s in %.1f s", builder.info.full_name,
                   time.perf_counter() - start)
  return reopen(builder)


def reopen(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
  """`builder` itself if its info already reflects prepared data, else a fresh instance.

  A builder constructed before its data was prepared (here or by another process) keeps
  an info without splits; a new instance reads the info back from disk.
  """
  if builder.info.splits or not is_prepared(builder):
    return builder
  return type(builder)(data_dir=builder.data_dir_root, config=builder.builder_config,
                       version=builder.version)


# --------------------------------------------------------------------------------------
# Synthetic micro-actions (DESIGN §4.1)

_SYNTHETIC_ABBREV = {
    "num_classes": "c", "num_frames": "t", "size": "s", "num_train": "tr", "num_val": "va",
    "num_test": "te", "seed": "seed", "motion_amplitude": "amp", "rest_jitter": "rest",
    "speed_range": "speed", "noise_std": "noise", "texture_contrast": "tex",
    "camera_jitter": "cam", "position_jitter": "pos", "size_range": "scale",
    "breathing": "breath", "idle_motion": "idle", "edge_softness": "soft",
}


def synthetic_builder_config(cfg: synthetic.SyntheticConfig) -> ParamsBuilderConfig:
  """The BuilderConfig for `cfg`; its name encodes every field of `cfg`."""
  return ParamsBuilderConfig(
      name=config_name(cfg, _SYNTHETIC_ABBREV),
      description=f"Synthetic micro-actions rendered with {cfg}",
      params=cfg)


class SyntheticMicroActions(ArrayRecordBuilder):
  """Procedural synthetic micro-action clips; splits train / test (and val if num_val > 0).

  Construct with `config=synthetic_builder_config(cfg)`, or use `prepare_synthetic`.
  """
  VERSION = tfds.core.Version(synthetic.RENDER_VERSION)
  RELEASE_NOTES = {"1.0.0": "First renderer."}
  BUILDER_CONFIGS = [synthetic_builder_config(synthetic.SyntheticConfig())]
  PREPARE_HINT = "aplt_jax.data.builders.prepare_synthetic(cfg, data_dir)"

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.params
    return self.dataset_info_from_configs(
        features=video_features(cfg.num_frames, cfg.size, cfg.size, cfg.class_names),
        supervised_keys=("video", "label"),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(synthetic_config=dataclasses.asdict(cfg)),
        description=synthetic.__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    cfg = self.params
    return {split: self._generate_examples(split=split)
            for split in ("train", "val", "test") if cfg.num_examples(split) > 0}

  def _generate_examples(self, split: str):
    cfg = self.params
    for index in range(cfg.num_examples(split)):
      video, label = synthetic.render_clip(cfg, split, index)
      yield index, {"video": video, "label": label, "index": index}


def synthetic_builder(cfg: synthetic.SyntheticConfig, data_dir: str | os.PathLike
                      ) -> SyntheticMicroActions:
  """The (possibly unprepared) builder of `cfg` under `data_dir`."""
  config = synthetic_builder_config(cfg)
  if config.name in SyntheticMicroActions.builder_configs:
    config = config.name  # TFDS refuses a second object named like a predefined config
  return SyntheticMicroActions(data_dir=os.fspath(data_dir), config=config)


def prepare_synthetic(cfg: synthetic.SyntheticConfig, data_dir: str | os.PathLike
                      ) -> SyntheticMicroActions:
  """Renders and stores `cfg`'s splits under `data_dir` once; a no-op when already there."""
  return prepare(synthetic_builder(cfg, data_dir))
