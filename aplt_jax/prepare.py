"""Prepares real videos once for training: decode, sample, resize, store as ArrayRecord.

  python -m aplt_jax.prepare --dataset=ma52 --manual_dir=MA52_DIR --data_dir=PREPARED_DIR

`--dataset`: `ma52` / `ma12` (the MA-52 list-file layout, 52 / 12 classes), `list_files` (the
same layout with any classes: label_name.txt or --num_classes) or `class_folder` (your own
videos, MANUAL_DIR/<class name>/*.mp4). See `aplt_jax/data/video/layouts.py` for the layouts.

Every video is decoded once with PyAV, on every core (`--workers`), into `--num_frames` TSN
segments of `--frames_per_segment` frames at `--height` x `--width` (defaults: those of
configs/<dataset>.py, so `python main.py --config=configs/ma52.py
--config.data.data_dir=PREPARED_DIR` finds the result). Unreadable, empty, truncated or
frame-less videos, bad or out-of-range labels, missing files and duplicate entries are skipped
and listed in a summary, printed and written to
PREPARED_DIR/<dataset>/<settings>/prepare_report.json; preparation fails only when a split has
no usable video left. An interrupted preparation resumes where it stopped (decoded shards of 16
videos are kept); a finished one is not redone.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from aplt_jax.data import video
from aplt_jax.errors import ConfigError, run_cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m aplt_jax.prepare", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", required=True, choices=sorted(video.NAMES))
  parser.add_argument("--manual_dir", required=True, help="the videos and list files")
  parser.add_argument("--data_dir", default=os.path.join(os.path.expanduser("~"),
                                                         "tensorflow_datasets"),
                      help="where prepared datasets go (= --config.data.data_dir)")
  for field in dataclasses.fields(video.VideoParams):
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    parser.add_argument(f"--{field.name}", type={"int": int, "float": float}[kind], default=None,
                        help=f"default: the dataset's (data.video.{field.name} of its config)")
  parser.add_argument("--num_classes", type=int, default=None,
                      help="list_files without label_name.txt: the number of classes")
  parser.add_argument("--workers", type=int, default=0, help="decoding processes (0: one per core)")
  parser.add_argument("--no_progress", action="store_true", help="no progress bars")
  parser.add_argument("--keep_cache", action="store_true",
                      help="keep the decoded (compressed) shards after writing ArrayRecord: about "
                      "twice the disk while preparing; preparing again then decodes nothing")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  return run_cli(_main, parse_args(argv))


def _main(args: argparse.Namespace) -> int:
  try:
    params = dataclasses.replace(video.default_params(args.dataset), **{
        f.name: getattr(args, f.name) for f in dataclasses.fields(video.VideoParams)
        if getattr(args, f.name) is not None})
  except ValueError as e:  # e.g. --height=0 or --test_fraction=1
    raise ConfigError(str(e)) from None
  options = video.PrepareOptions(workers=args.workers, progress=not args.no_progress,
                                 num_classes=args.num_classes, keep_cache=args.keep_cache)
  builder = video.prepare_videos(args.dataset, args.manual_dir, args.data_dir, params, options)
  splits = ", ".join(f"{s} {info.num_examples}" for s, info in builder.info.splits.items())
  flags = [f"--config.data.data_dir={args.data_dir}"]
  if args.dataset not in video.DEFAULT_PARAMS:  # the generic layouts have no config file of their own
    flags += [f"--config.data.name={args.dataset}",
              f"--config.data.num_classes={builder.info.metadata['num_classes']}"]
  default = video.default_params(args.dataset)
  flags += [f"--config.data.video.{f.name}={getattr(params, f.name)}"
            for f in dataclasses.fields(params) if getattr(params, f.name) != getattr(default,
                                                                                      f.name)]
  print(f"Prepared {args.dataset} ({splits} clips of {params.spec.shape}) in "
        f"{builder.data_path}.\nTrain with: {' '.join(flags)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
