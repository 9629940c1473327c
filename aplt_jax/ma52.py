"""MA-52's test-split submission file (the protocol itself: `aplt_jax.data.video.ma52`).

`python -m aplt_jax.ma52 submit --workdir=RUN [--output=FILE]` writes the test-split CSV with
header `vid,action_pred_1,...,action_pred_5,body_pred_1,...,body_pred_5` (the test labels are
hidden); it needs the run's prepared `test` split.
"""
from __future__ import annotations

import csv
import os
import sys

import numpy as np

from aplt_jax import errors
from aplt_jax import predict
from aplt_jax.data import video
from aplt_jax.data.video.ma52 import body_scores
from aplt_jax.errors import DataError

TOP_K = 5


def _ranked(scores: np.ndarray, k: int) -> np.ndarray:
  return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def write_submission(path: str, video_ids: list[str], scores: np.ndarray) -> None:
  """The test-split CSV: per clip (`vid` as listed, e.g. test0000.mp4) its 5 best actions and
  its 5 best body parts, as indices, best first."""
  scores = np.asarray(scores)
  if len(video_ids) != len(scores):
    raise ValueError(f"{len(video_ids)} video ids but {len(scores)} score rows")
  actions = _ranked(scores, TOP_K)
  bodies = _ranked(body_scores(scores), TOP_K)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["vid"] + [f"action_pred_{i}" for i in range(1, TOP_K + 1)]
                    + [f"body_pred_{i}" for i in range(1, TOP_K + 1)])
    for vid, a, b in zip(video_ids, actions, bodies):
      writer.writerow([vid, *a.tolist(), *b.tolist()])


def submit(workdir: str, output: str | None = None, split: str = "test",
           use_ema: bool = True) -> str:
  """Runs the run's model over its prepared `split` and writes the submission CSV; its path."""
  runner = predict.Predictor.from_workdir(workdir, use_ema=use_ema)
  if runner.config.data.name != "ma52":
    raise DataError(f"{workdir} trained on data.name={runner.config.data.name!r}; the submission "
                    "file is MA-52's (52 actions, 7 body parts): use a run of configs/ma52.py.")
  builder = video.open_builder(runner.config.data.name, runner.config.data)
  scores = runner.scores_of_split(builder, split)
  output = output or os.path.join(workdir, f"submission_{split}.csv")
  write_submission(output, video.video_ids(builder, split), scores)
  return output


def main(argv: list[str] | None = None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog="python -m aplt_jax.ma52", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  s = sub.add_parser("submit", help="write the test-split submission CSV of a trained run")
  s.add_argument("--workdir", required=True, help="the run's --workdir")
  s.add_argument("--output", default=None, help="CSV path (default WORKDIR/submission_test.csv)")
  s.add_argument("--split", default="test", help="prepared split to predict (default test)")
  s.add_argument("--raw", action="store_true", help="use the raw parameters, not the EMA ones")
  args = parser.parse_args(argv)
  return errors.run_cli(lambda: print(
      f"wrote {submit(args.workdir, args.output, args.split, use_ema=not args.raw)}"))


if __name__ == "__main__":
  sys.exit(main())
