"""TFDS dataset builders: clips rendered or decoded once, stored as ArrayRecord (DESIGN §4).

No TensorFlow is needed: the builders use raw `Tensor` / `ClassLabel` features and write
`file_format="array_record"`, which `sources.open_split` reads with random access.

Shared conventions (for every builder in this module):
- features `video` (uint8 [T, H, W, 3] for videos), `label` (`ClassLabel`; a plain int64 for
  prepared real videos, whose class names come from their files and live in the metadata) and
  `index` (int64, the clip's dense index);
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
import shutil
import time
from typing import Any, Iterator, Mapping

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from aplt_jax import workdir as workdir_lib
from aplt_jax.data import listfiles
from aplt_jax.data import synthetic
from aplt_jax.data import video
from aplt_jax.data import video_cache
from aplt_jax.errors import DataError

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


def prepare(builder: tfds.core.DatasetBuilder,
            download_config: tfds.download.DownloadConfig | None = None
            ) -> tfds.core.DatasetBuilder:
  """Prepares `builder` as ArrayRecord unless already prepared; returns it (ready to read).

  `download_config` passes e.g. the `manual_dir` of builders prepared from local files.

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
      builder.download_and_prepare(file_format=FILE_FORMAT, download_config=download_config)
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


# --------------------------------------------------------------------------------------
# Real videos: MA-52 / MA-12 list files, generic list files, class folders (DESIGN §4)


@dataclasses.dataclass(frozen=True)
class VideoParams:
  """What a prepared video dataset stores; every field is part of its directory name.

  Attributes:
    num_frames: T, TSN segments (frames the model sees per clip).
    frames_per_segment: k frames stored per segment, for temporal jitter (see `video`).
    height, width: stored frame size (each video scaled to cover it, then centre-cropped).
    test_fraction: `class_folder` without split folders: held-out fraction per class.
  """
  num_frames: int = 8
  frames_per_segment: int = 2
  height: int = 128
  width: int = 128
  test_fraction: float = 0.2

  def __post_init__(self):
    self.spec  # pylint: disable=pointless-statement  # ClipSpec checks the four sizes
    if not 0 <= self.test_fraction < 1:
      raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")

  @property
  def spec(self) -> video.ClipSpec:
    return video.ClipSpec(self.num_frames, self.frames_per_segment, self.height, self.width)


_VIDEO_ABBREV = {"num_frames": "t", "frames_per_segment": "k", "height": "h", "width": "w",
                 "test_fraction": "hold"}


@dataclasses.dataclass
class PrepareOptions:
  """How (not what) to prepare: these never change the stored data."""
  workers: int = 0  # decoding processes; 0: one per CPU core
  progress: bool = True
  num_classes: int | None = None  # list_files without label_name.txt
  keep_cache: bool = False  # keep the decoded shards after writing ArrayRecord


class VideoClips(ArrayRecordBuilder, skip_registration=True):
  """Videos decoded once into fixed-size uint8 clips (one subclass per layout).

  Features: `video` uint8 [T*k, H, W, 3], `label` int64 (a plain integer: class names live in
  the metadata, as they come from the files), `index` int64. Metadata: `class_names`,
  `num_classes`, `videos` (per split, the video name of each index), `source` (the manual dir)
  and the preparation summary `report`. Splits: those the layout finds (train, val, test).
  Construct with `video_builder`; prepare with `prepare_videos`.
  """
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "PyAV decode, TSN segment sampling, resize on decode."}
  LAYOUT = ""
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the folder of the videos and list files as manual_dir."
  options = PrepareOptions()

  @property
  def config_dir(self) -> str:
    """`DATA_DIR/<name>/<config name>`: the versioned data, the report and the decode cache."""
    return os.path.join(os.fspath(self.data_dir_root), self.name, self.builder_config.name)

  @property
  def report_path(self) -> str:
    return os.path.join(self.config_dir, "prepare_report.json")

  @property
  def cache_dir(self) -> str:
    return os.path.join(self.config_dir, "decode_cache")

  def _info(self) -> tfds.core.DatasetInfo:
    p = self.params
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(shape=p.spec.shape, dtype=np.uint8),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64),
            "index": tfds.features.Tensor(shape=(), dtype=np.int64),
        }),
        supervised_keys=("video", "label"),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
        description=video.__doc__,
    )

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    p, opts = self.params, self.options
    listing = listfiles.get(self.LAYOUT).read(manual_dir, num_classes=opts.num_classes,
                                              test_fraction=p.test_fraction)
    problems, usable = list(listing.problems), {}
    for split, entries in listing.entries.items():
      failed = video_cache.decode_split(entries, split, p.spec, self.cache_dir,
                                        workers=opts.workers, progress=opts.progress)
      bad = {f.vid for f in failed}
      usable[split] = [e for e in entries if e.vid not in bad]
      problems += failed
    report = listfiles.report(self.name, manual_dir, dataclasses.asdict(p), listing, usable,
                              problems)
    workdir_lib.write_json(self.report_path, report, indent=1)
    summary = listfiles.format_report(report, self.report_path)
    if opts.progress:
      print(summary, flush=True)
    else:
      logging.info("%s", summary)
    empty = [s for s, e in usable.items() if not e]
    if empty:
      raise DataError(
          f"No usable video is left in split(s) {empty} of {self.name} from {manual_dir}, so "
          f"nothing can be prepared. Every skipped file and why is in {self.report_path}.")
    self.info.metadata.update({
        "class_names": listing.class_names, "num_classes": len(listing.class_names),
        "videos": {s: [e.vid for e in entries] for s, entries in usable.items()},
        "source": os.path.abspath(manual_dir),
        "report": {s: r for s, r in report["splits"].items()},
    })
    return {split: self._generate_examples(split=split, entries=listing.entries[split])
            for split in usable}

  def _generate_examples(self, split: str, entries):
    """The decoded clips of `entries` (the split's whole listing), dense indices in order."""
    clips = video_cache.iter_clips(entries, split, self.params.spec, self.cache_dir)
    for index, (entry, clip) in enumerate(clips):
      yield index, {"video": clip, "label": entry.label, "index": index}


class Ma52Videos(VideoClips, skip_registration=True):
  """MA-52: 52 micro-actions, list files (prepared under DATA_DIR/ma52/)."""
  name = LAYOUT = "ma52"


class Ma12Videos(VideoClips, skip_registration=True):
  """MA-12: 12 micro-actions in MA-52's layout (DATA_DIR/ma12/)."""
  name = LAYOUT = "ma12"


class ListFileVideos(VideoClips, skip_registration=True):
  """Any classes in MA-52's list-file layout (DATA_DIR/list_files/)."""
  name = LAYOUT = "list_files"


class ClassFolderVideos(VideoClips, skip_registration=True):
  """A user's videos in class folders (DATA_DIR/class_folder/)."""
  name = LAYOUT = "class_folder"


VIDEO_BUILDERS: dict[str, type[VideoClips]] = {
    cls.LAYOUT: cls for cls in (Ma52Videos, Ma12Videos, ListFileVideos, ClassFolderVideos)}


def video_builder(dataset: str, params: VideoParams, data_dir: str | os.PathLike) -> VideoClips:
  """The (possibly unprepared) builder of `dataset` with `params` under `data_dir`."""
  if dataset not in VIDEO_BUILDERS:
    raise DataError(f"Unknown video dataset {dataset!r}; choose one of {sorted(VIDEO_BUILDERS)}.")
  config = ParamsBuilderConfig(name=config_name(params, _VIDEO_ABBREV),
                               description=f"{dataset} videos prepared with {params}",
                               params=params)
  return VIDEO_BUILDERS[dataset](data_dir=os.fspath(data_dir), config=config)


def prepare_videos(dataset: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike,
                   params: VideoParams, options: PrepareOptions | None = None) -> VideoClips:
  """Decodes `manual_dir`'s videos into ArrayRecord under `data_dir` once; returns the builder.

  A re-run after an interruption skips the shards already decoded; a re-run after success is a
  no-op. Refuses a `data_dir` that already holds this dataset prepared from another folder.
  """
  manual_dir = os.path.abspath(os.fspath(manual_dir))
  layout = listfiles.get(dataset)
  if not os.path.isdir(manual_dir):
    raise DataError(f"--manual_dir={manual_dir} is not a folder. Expected "
                    f"{layout.expected_files(manual_dir)}.")
  builder = video_builder(dataset, params, data_dir)
  if is_prepared(builder):
    source = reopen(builder).info.metadata.get("source")
    if source != manual_dir:
      raise DataError(
          f"{builder.data_path} already holds {dataset} prepared from {source}, not from "
          f"{manual_dir}; prepare into another --data_dir (one per video collection).")
    return reopen(builder)
  options = options or PrepareOptions()
  builder.options = options
  builder = prepare(builder, tfds.download.DownloadConfig(manual_dir=manual_dir))
  if not options.keep_cache:
    shutil.rmtree(builder.cache_dir, ignore_errors=True)
  return builder
