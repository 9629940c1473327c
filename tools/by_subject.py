"""Top-1 by subject of a grid's finished runs, including runs from before final.json stored it.

  python -m tools.by_subject --grid=configs/grids/watch_report.py --out=runs/watch \
      --grid=configs/grids/watch_report_seeds.py --out=runs/watch_seeds

Prints `experiment_report.by_subject_markdown` for the cells finished under each --out (one per
--grid; several pairs pool their seeds, e.g. a grid and its extra seeds). A run whose
final.json has no `top1_by_subject` (trained before sequences reported it) is rescored from its
saved test features (`features_test.npz`, EMA model) through the EMA linear head of its newest
checkpoint; its overall top-1 must then equal final.json's, or the tool stops. A report tool:
it reads the split each run was evaluated on and chooses nothing.
"""
import argparse
import json
import os

import numpy as np

from aplt_jax import data as data_lib
from aplt_jax import experiment_report
from aplt_jax import experiments
from aplt_jax import predict
from aplt_jax.data import sequences

_evaluators = {}


def rescored(workdir: str, top1: float) -> dict:
  """{subject: top-1} of an older run, from its features and its checkpoint's EMA head; `top1`
  is its final.json EMA top-1, which the rescored scores must reproduce."""
  config = predict.read_config(workdir)
  if config.eval.head != "linear":
    raise SystemExit(f"{workdir}: eval.head={config.eval.head!r}; only the linear head is rescored")
  key = json.dumps(config.data.to_dict(), sort_keys=True, default=str)
  if key not in _evaluators:
    _evaluators[key] = sequences.top1_by_subject(data_lib.build(config.data).eval)
  scores, z = linear_scores(workdir, top1)
  return _evaluators[key](scores, z["labels"]).get("top1_by_subject")


def linear_scores(workdir: str, top1: float):
  """(scores [N, C], the saved features' npz) of a finished run: its evaluation features
  (`features_test.npz`) through the EMA linear head of its newest checkpoint, whose top-1 must
  reproduce final.json's `top1`."""
  path = os.path.join(workdir, "features_test.npz")
  if not os.path.isfile(path):
    raise SystemExit(f"{path} is missing: the run needs eval.write_features=True")
  z = np.load(path)
  state, _ = predict._restore(workdir)  # pylint: disable=protected-access
  head = state["ema_params"]["head"]
  scores = z["features"] @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
  if not np.isclose((scores.argmax(1) == z["labels"]).mean(), top1):
    raise SystemExit(f"{workdir}: rescored top-1 differs from final.json's {top1}")
  return scores, z


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--grid", action="append", required=True)
  parser.add_argument("--out", action="append", required=True)
  args = parser.parse_args()
  if len(args.grid) != len(args.out):
    parser.error(f"{len(args.grid)} --grid for {len(args.out)} --out: give them in pairs")
  pooled = {"methods": [], "budgets": {}, "seeds": [], "ablations": {}}
  records = []
  for path, out in zip(args.grid, args.out):
    grid = experiments.load_grid(path)
    records += experiment_report.collect(grid, experiments.cells(grid), out)
    pooled["methods"] += [m for m in grid["methods"] if m not in pooled["methods"]]
    pooled["seeds"] += [s for s in grid["seeds"] if s not in pooled["seeds"]]
    pooled["budgets"].update(grid["budgets"])
    pooled["ablations"].update(grid["ablations"])
  for r in records:
    if not r["by_subject"]:
      r["by_subject"] = rescored(r["workdir"], r["top1_ema"])
  print(experiment_report.by_subject_markdown(pooled, records) or "no subjects in these runs")


if __name__ == "__main__":
  main()
