"""Real videos: prepared once into ArrayRecord, then opened as `Dataset`s (DESIGN §4).

Datasets (`NAMES`, one per layout of `layouts.LAYOUTS`): ma52, ma12, list_files, class_folder.
`python -m aplt_jax.prepare` lists a layout's videos (`layouts`), decodes them in parallel into
resumable shards (`decode`, `shards`) and stores them through `VideoClips` (`prepare_videos`).
The trainer never decodes video: `open_dataset` opens what preparation wrote, found by
`data.data_dir` and the `data.video.*` knobs that name the prepared copy; when that copy does not
exist, the error gives the exact command that makes it. MA-52's evaluation protocol is `ma52`.

Adding a video dataset: a layout in `layouts.LAYOUTS` (or an existing layout under a new name),
its `VideoClips` subclass below, optionally its `EVALUATE_EXTRA` and `DEFAULT_PARAMS` entries,
and a config.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import shutil
from typing import Callable, Iterator

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from aplt_jax import workdir as workdir_lib
from aplt_jax.data import prepared
from aplt_jax.data.dataset import Dataset, default_data_dir
from aplt_jax.data.video import decode, layouts, ma52, shards
from aplt_jax.errors import ConfigError, DataError

NAMES = tuple(layouts.LAYOUTS)  # the dataset names this family opens (aplt_jax/data/__init__.py)

# A dataset's own evaluation, added to final.json beside the standard metrics (DESIGN §4).
EVALUATE_EXTRA: dict[str, Callable[[np.ndarray, np.ndarray], dict]] = {
    "ma52": ma52.protocol_metrics}

# `python -m aplt_jax.prepare` defaults that differ from `VideoParams`' (= the dataset's config).
DEFAULT_PARAMS: dict[str, dict] = {
    "ma52": {"height": 256, "width": 224},  # the portrait 1296 x 1080 clips, see configs/ma52.py
    "ma12": {"height": 256, "width": 224},
}


@dataclasses.dataclass(frozen=True)
class VideoParams:
  """What a prepared video dataset stores; every field is part of its directory name.

  Attributes:
    num_frames: T, TSN segments (frames the model sees per clip).
    frames_per_segment: k frames stored per segment, for temporal jitter (see `decode`).
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
  def spec(self) -> decode.ClipSpec:
    return decode.ClipSpec(self.num_frames, self.frames_per_segment, self.height, self.width)


_VIDEO_ABBREV = {"num_frames": "t", "frames_per_segment": "k", "height": "h", "width": "w",
                 "test_fraction": "hold"}


@dataclasses.dataclass
class PrepareOptions:
  """How (not what) to prepare: these never change the stored data."""
  workers: int = 0  # decoding processes; 0: one per CPU core
  progress: bool = True
  num_classes: int | None = None  # list_files without label_name.txt
  keep_cache: bool = False  # keep the decoded shards after writing ArrayRecord


class VideoClips(prepared.ShardedArrayRecordBuilder, skip_registration=True):
  """Videos decoded once into fixed-size uint8 clips (one subclass per layout).

  Features: `video` uint8 [T*k, H, W, 3] (stored as raw bytes), `label` int64 (a plain
  integer: class names live in the metadata, as they come from the files), `index` int64.
  Metadata: `class_names`, `num_classes`, `videos` (per split, the video name of each index),
  `source` (the manual dir) and the preparation summary `report`. Splits: those the layout
  finds (train, val, test), one ArrayRecord file per decode shard. Construct with
  `video_builder`; prepare with `prepare_videos`.
  """
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {
      "1.0.0": "PyAV decode, TSN segment sampling, resize on decode.",
      "2.0.0": "The clip stored as raw bytes (Encoding.BYTES) instead of one int64 varint per "
               "pixel: the same pixels, decoded ~40x faster (docs/benchmarks.md §7). Copies "
               "prepared at 1.0.0 are not read: prepare them again.",
  }
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
            "video": tfds.features.Tensor(shape=p.spec.shape, dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64),
            "index": tfds.features.Tensor(shape=(), dtype=np.int64),
        }),
        supervised_keys=("video", "label"),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
        description=decode.__doc__,
    )

  def _shard_iterators_per_split(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    p, opts = self.params, self.options
    listing = layouts.get(self.LAYOUT).read(manual_dir, num_classes=opts.num_classes,
                                              test_fraction=p.test_fraction)
    problems, usable = list(listing.problems), {}
    for split, entries in listing.entries.items():
      failed = shards.decode_split(entries, split, p.spec, self.cache_dir,
                                        workers=opts.workers, progress=opts.progress)
      bad = {f.vid for f in failed}
      usable[split] = [e for e in entries if e.vid not in bad]
      problems += failed
    report = layouts.report(self.name, manual_dir, dataclasses.asdict(p), listing, usable,
                              problems)
    workdir_lib.write_json(self.report_path, report, indent=1)
    summary = layouts.format_report(report, self.report_path)
    if opts.progress:
      print(summary, flush=True)
    else:
      logging.info("%s", summary)
    empty = [s for s, e in usable.items() if not e]
    if empty:
      raise DataError(
          f"No usable video is left in split(s) {empty} of {self.name} from {manual_dir}, so "
          f"nothing can be prepared. Every skipped file and why is in {self.report_path}.")
    trained = {e.label for e in usable.get("train", [])}
    lacking = [n for c, n in enumerate(listing.class_names) if c not in trained]
    # A class folder without a training clip is a class that cannot be learned; list-file
    # layouts name their classes in label_name.txt and may prepare a subset of them.
    if lacking and isinstance(layouts.get(self.LAYOUT), layouts.ClassFolderLayout):
      raise DataError(
          f"Classes {lacking} of {self.name} from {manual_dir} have no usable training video "
          "(an empty class folder, or every video skipped); add videos or remove those classes. "
          f"Every skipped file and why is in {self.report_path}.")
    self.info.metadata.update({
        "class_names": listing.class_names, "num_classes": len(listing.class_names),
        "videos": {s: [e.vid for e in entries] for s, entries in usable.items()},
        "source": os.path.abspath(manual_dir),  # the raw videos ("source": what was prepared)
        "report": {s: r for s, r in report["splits"].items()},
    })
    return {split: self._shard_generators(split, listing.entries[split]) for split in usable}

  def _shard_generators(self, split: str, entries) -> list[Callable[[], Iterator]]:
    """One generator function per decode shard of `entries` (the split's whole listing)."""
    spec = self.params.spec
    files = [(path, chunk, shards.num_decoded(path))
             for path, chunk in shards.shard_files(entries, split, spec, self.cache_dir)]
    starts = np.cumsum([0] + [n for _, _, n in files])
    return [functools.partial(self._examples, path, chunk, int(start))
            for (path, chunk, n), start in zip(files, starts) if n]

  def _examples(self, path: str, chunk, start: int):
    """The clips of one decode shard, dense indices from `start`; then deletes the shard."""
    for i, (entry, clip) in enumerate(shards.read_shard(path, chunk)):
      yield start + i, {"video": clip, "label": entry.label, "index": start + i}
    if not self.options.keep_cache:
      os.remove(path)  # its clips are in ArrayRecord now (a killed run decodes it again)


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
  config = prepared.ParamsBuilderConfig(name=prepared.config_name(params, _VIDEO_ABBREV),
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
  layout = layouts.get(dataset)
  if not os.path.isdir(manual_dir):
    raise DataError(f"--manual_dir={manual_dir} is not a folder. Expected "
                    f"{layout.expected_files(manual_dir)}.")
  if not [n for n in os.listdir(manual_dir) if not n.startswith(".")]:
    raise DataError(f"--manual_dir={manual_dir} is empty. Expected "
                    f"{layout.expected_files(manual_dir)}.")
  builder = video_builder(dataset, params, data_dir)
  if prepared.is_prepared(builder):
    source = prepared.reopen(builder).info.metadata.get("source")
    if source != manual_dir:
      raise DataError(
          f"{builder.data_path} already holds {dataset} prepared from {source}, not from "
          f"{manual_dir}; prepare into another --data_dir (one per video collection).")
    return prepared.reopen(builder)
  options = options or PrepareOptions()
  builder.options = options
  builder = prepared.prepare(builder, tfds.download.DownloadConfig(manual_dir=manual_dir))
  if not options.keep_cache:
    shutil.rmtree(builder.cache_dir, ignore_errors=True)
  return builder


def default_params(dataset: str) -> VideoParams:
  """`VideoParams` with `dataset`'s `DEFAULT_PARAMS`."""
  return dataclasses.replace(VideoParams(), **DEFAULT_PARAMS.get(dataset, {}))


def params_from_config(data_cfg) -> VideoParams:
  """The prepared copy's knobs, from `data.video` (ConfigError when one is unusable)."""
  v = data_cfg.video
  try:
    return VideoParams(num_frames=v.num_frames, frames_per_segment=v.frames_per_segment,
                                height=v.height, width=v.width,
                                test_fraction=float(v.test_fraction))
  except ValueError as e:
    raise ConfigError(f"data.video is not usable: {e}; set --config.data.video.<key> (or "
                      "the matching `python -m aplt_jax.prepare` flag).") from None


def prepare_command(name: str, data_cfg) -> str:
  """The `python -m aplt_jax.prepare ...` line that prepares what `data_cfg` asks for."""
  p = params_from_config(data_cfg)
  args = ["python", "-m", "aplt_jax.prepare", f"--dataset={name}",
          f"--manual_dir={data_cfg.manual_dir or 'MANUAL_DIR'}",
          f"--data_dir={default_data_dir(data_cfg)}", f"--num_frames={p.num_frames}",
          f"--frames_per_segment={p.frames_per_segment}", f"--height={p.height}",
          f"--width={p.width}"]
  if name == "class_folder":
    args.append(f"--test_fraction={p.test_fraction}")
  if name == "list_files":
    args.append(f"--num_classes={data_cfg.num_classes}")
  return " ".join(a if a.startswith("MANUAL_DIR") else shlex.quote(a) for a in args)


def open_builder(name: str, data_cfg) -> VideoClips:
  """The prepared builder `data_cfg` names, or DataError with the command that prepares it."""
  params = params_from_config(data_cfg)
  builder = video_builder(name, params, default_data_dir(data_cfg))
  if not prepared.is_prepared(builder):
    manual = data_cfg.manual_dir or "MANUAL_DIR"
    old = older_copies(builder)
    if old:
      raise DataError(
          f"The {name} videos in {builder.config_dir} were prepared in an older stored format "
          f"(version {', '.join(old)}); this code reads version {builder.version} only "
          f"({builder.RELEASE_NOTES[str(builder.version)]}). Prepare them again with:\n"
          f"  {prepare_command(name, data_cfg)}\n"
          f"then delete the old copy ({', '.join(os.path.join(builder.config_dir, v) for v in old)}"
          "). The videos are decoded again unless the decode cache was kept (--keep_cache).")
    raise DataError(
        f"The {name} videos are not prepared with these settings (no {builder.data_path}). "
        f"Prepare them once from {layouts.get(name).expected_files(manual)} with:\n"
        f"  {prepare_command(name, data_cfg)}\n"
        "and rerun (other data.video.* values prepare, and need, another copy).")
  return prepared.reopen(builder)


def older_copies(builder: VideoClips) -> list[str]:
  """Versions other than the builder's prepared in its config directory (e.g. ["1.0.0"])."""
  try:
    names = os.listdir(builder.config_dir)
  except OSError:
    return []
  return sorted(v for v in names
                if v != str(builder.version) and re.fullmatch(r"\d+\.\d+\.\d+", v)
                and os.path.exists(os.path.join(builder.config_dir, v, "dataset_info.json")))


def open_dataset(name: str, data_cfg) -> Dataset:
  """The train split and `data.eval_split` of a prepared video dataset."""
  builder = open_builder(name, data_cfg)
  meta = builder.info.metadata
  train = prepared.open_split(builder, "train")
  ev = prepared.open_split(builder, data_cfg.eval_split)
  return Dataset(
      name=name, train=train, eval=ev, train_labels=train.labels(), eval_labels=ev.labels(),
      num_classes=int(meta["num_classes"]), class_names=list(meta["class_names"]),
      modality="video", input_key="video",
      view_kwargs={"frames_per_segment": builder.params.frames_per_segment},
      evaluate_extra=EVALUATE_EXTRA.get(name))


def video_ids(builder: VideoClips, split: str) -> list[str]:
  """The video name of each index of a prepared split (as its list file names it)."""
  return list(builder.info.metadata["videos"][split])
