"""Prepared real-video datasets as `Dataset`s: ma52, ma12, list_files, class_folder.

The trainer never decodes video: it opens what `python -m aplt_jax.prepare` wrote (ArrayRecord
through `builders.VideoClips`), found by `data.data_dir` and the `data.video.*` knobs that name
the prepared copy. When that copy does not exist, the error gives the exact command that makes it.
"""
from __future__ import annotations

import shlex
from typing import Callable

import numpy as np

from aplt_jax.data import Dataset, builders, default_data_dir, listfiles, sources
from aplt_jax.errors import ConfigError, DataError


def _ma52_protocol(scores: np.ndarray, labels: np.ndarray) -> dict:
  from aplt_jax import ma52  # pylint: disable=g-import-not-at-top
  return ma52.protocol_metrics(scores, labels)


# Dataset-specific evaluation protocols, added to final.json (DESIGN §4).
PROTOCOLS: dict[str, Callable[[np.ndarray, np.ndarray], dict]] = {"ma52": _ma52_protocol}


def params_from_config(data_cfg) -> builders.VideoParams:
  """The prepared copy's knobs, from `data.video` (ConfigError when one is unusable)."""
  v = data_cfg.video
  try:
    return builders.VideoParams(num_frames=v.num_frames, frames_per_segment=v.frames_per_segment,
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


def open_builder(name: str, data_cfg) -> builders.VideoClips:
  """The prepared builder `data_cfg` names, or DataError with the command that prepares it."""
  params = params_from_config(data_cfg)
  builder = builders.video_builder(name, params, default_data_dir(data_cfg))
  if not builders.is_prepared(builder):
    manual = data_cfg.manual_dir or "MANUAL_DIR"
    raise DataError(
        f"The {name} videos are not prepared with these settings (no {builder.data_path}). "
        f"Prepare them once from {listfiles.get(name).expected_files(manual)} with:\n"
        f"  {prepare_command(name, data_cfg)}\n"
        "and rerun (other data.video.* values prepare, and need, another copy).")
  return builders.reopen(builder)


def open_dataset(name: str, data_cfg) -> Dataset:
  """The train split and `data.eval_split` of a prepared video dataset."""
  builder = open_builder(name, data_cfg)
  meta = builder.info.metadata
  train = sources.open_split(builder, "train")
  ev = sources.open_split(builder, data_cfg.eval_split)
  return Dataset(
      name=name, train=train, eval=ev, train_labels=train.labels(), eval_labels=ev.labels(),
      num_classes=int(meta["num_classes"]), class_names=list(meta["class_names"]),
      modality="video", input_key="video",
      view_kwargs={"frames_per_segment": builder.params.frames_per_segment},
      evaluate_extra=PROTOCOLS.get(name))


def video_ids(builder: builders.VideoClips, split: str) -> list[str]:
  """The video name of each index of a prepared split (as its list file names it)."""
  return list(builder.info.metadata["videos"][split])
