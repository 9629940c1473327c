"""The MA-52 evaluation protocol (DESIGN §4) and its test-split submission file.

MA-52's 52 actions group into 7 body parts, contiguous index ranges of `label_name.txt`
(`BODY_PARTS`). On the validation split the protocol reports action top-1/top-5, body-part
top-1, macro and micro F1 of actions and of body parts, and `f1_mean`, the mean of those four
F1 scores. The model has one action head; its body-part score is the summed probability of the
part's actions (the marginal), which ranks body parts for both the metrics and the submission.

`python -m aplt_jax.ma52 submit --workdir=RUN [--output=FILE]` writes the test-split CSV with
header `vid,action_pred_1,...,action_pred_5,body_pred_1,...,body_pred_5` (the test labels are
hidden); it needs the run's prepared `test` split.
"""
from __future__ import annotations

import csv
import os
import sys

import numpy as np

from aplt_jax import evaluate
from aplt_jax.errors import DataError

NUM_ACTIONS = 52
# (name, first action index, last action index), inclusive, in label_name.txt order.
BODY_PARTS = (
    ("body", 0, 4),
    ("head", 5, 10),
    ("upper limb", 11, 23),
    ("lower limb", 24, 31),
    ("body-hand", 32, 37),
    ("head-hand", 38, 47),
    ("leg-hand", 48, 51),
)
ACTION_TO_BODY = np.concatenate(
    [np.full(last - first + 1, part, np.int64) for part, (_, first, last) in enumerate(BODY_PARTS)])
TOP_K = 5


def _softmax(scores: np.ndarray) -> np.ndarray:
  z = scores - scores.max(axis=1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=1, keepdims=True)


def body_scores(scores: np.ndarray) -> np.ndarray:
  """[N, 52] action logits -> [N, 7] body-part probabilities (sums of the actions' softmax)."""
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 2 or scores.shape[1] != NUM_ACTIONS:
    raise ValueError(f"MA-52 scores must be [N, {NUM_ACTIONS}], got shape {scores.shape}")
  probs = _softmax(scores)
  out = np.zeros((len(scores), len(BODY_PARTS)))
  np.add.at(out.T, ACTION_TO_BODY, probs.T)
  return out


def protocol_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
  """The MA-52 protocol on labeled clips (scores [N, 52] logits, labels [N] action indices)."""
  labels = np.asarray(labels, np.int64)
  action = evaluate.classification_metrics(scores, labels, NUM_ACTIONS)
  body = evaluate.classification_metrics(body_scores(scores), ACTION_TO_BODY[labels],
                                         len(BODY_PARTS))
  f1 = {"action_macro_f1": action["macro_f1"], "action_micro_f1": action["micro_f1"],
        "body_macro_f1": body["macro_f1"], "body_micro_f1": body["micro_f1"]}
  return {"action_top1": action["top1"], "action_top5": action["top5"],
          "body_top1": body["top1"], **f1, "f1_mean": float(np.mean(list(f1.values()))),
          "body_confusion": body["confusion"]}  # [7, 7] counts, rows = true body part


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
  from aplt_jax import predict  # pylint: disable=g-import-not-at-top
  from aplt_jax.data import videos  # pylint: disable=g-import-not-at-top
  runner = predict.Predictor.from_workdir(workdir, use_ema=use_ema)
  if runner.config.data.name != "ma52":
    raise DataError(f"{workdir} trained on data.name={runner.config.data.name!r}; the submission "
                    "file is MA-52's (52 actions, 7 body parts): use a run of configs/ma52.py.")
  builder = videos.open_builder(runner.config.data.name, runner.config.data)
  scores = runner.scores_of_split(builder, split)
  output = output or os.path.join(workdir, f"submission_{split}.csv")
  write_submission(output, videos.video_ids(builder, split), scores)
  return output


def main(argv: list[str] | None = None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  from aplt_jax import errors  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog="python -m aplt_jax.ma52", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  s = sub.add_parser("submit", help="write the test-split submission CSV of a trained run")
  s.add_argument("--workdir", required=True, help="the run's --workdir")
  s.add_argument("--output", default=None, help="CSV path (default WORKDIR/submission_test.csv)")
  s.add_argument("--split", default="test", help="prepared split to predict (default test)")
  s.add_argument("--raw", action="store_true", help="use the raw parameters, not the EMA ones")
  args = parser.parse_args(argv)
  try:
    path = submit(args.workdir, args.output, args.split, use_ema=not args.raw)
  except errors.USER_ERRORS as e:
    print(f"\nerror: {e}", file=sys.stderr)
    return 2
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
