"""Top-1 of a grid's finished prototype runs under each evaluation head, read from one model.

  python -m tools.by_head --grid=configs/grids/watch_val_folds.py --out=runs/watch_val_folds

`eval.head` changes nothing in training, so one run answers for all three heads: its saved
evaluation-split features (`features_test.npz`, EMA model, `eval.write_features`), the EMA linear
head of its newest checkpoint (`by_subject.linear_scores`, which stops unless they reproduce the
run's final.json top-1), and the prototypes saved beside the features. `linear` is h(f), `proto`
the nearest prototype by cosine, `ensemble` the mean of the two softmaxes (prototype logits s·cos,
`losses.prototype_logits`), as `steps.make_eval_step` scores them. Prints, per method and budget, each head's top-1 and its paired
difference from linear (mean ± sd, seeds won), pooling budgets that differ only in a trailing
` val<k>` (the validation subject of `watch_val_folds.py`). A report tool: it reads the split each
run was evaluated on, and chooses nothing.
"""
import argparse
import re

from absl import logging
import jax
import numpy as np

from aplt_jax import experiment_report
from aplt_jax import experiments
from aplt_jax import losses
from aplt_jax import predict
from aplt_jax import ssl
from tools import by_subject

HEADS = ("linear", "proto", "ensemble")


def head_top1(linear, features, labels, centers, scale: float) -> dict[str, float]:
  """{head: top-1} from the linear head's scores [N, C], the features [N, d] they came from,
  labels [N] and unit-norm prototypes centers [C, d]."""
  proto = np.asarray(losses.prototype_logits(features, centers, scale))
  scores = {"linear": linear, "proto": proto,
            "ensemble": 0.5 * jax.nn.softmax(linear) + 0.5 * jax.nn.softmax(proto)}
  return {h: float((np.asarray(s).argmax(1) == labels).mean()) for h, s in scores.items()}


def score_run(workdir: str, top1: float) -> dict[str, float] | None:
  """{head: top-1} of one finished run; None for a method without prototypes."""
  config = predict.read_config(workdir)
  if not ssl.get(config.method, config.ssl).uses_prototypes:
    return None
  if config.aplt.center or config.model.get("proj_dim", 0):
    raise SystemExit(f"{workdir}: aplt.center / model.proj_dim runs are not rescored here")
  linear, z = by_subject.linear_scores(workdir, top1)
  return head_top1(linear, z["features"], z["labels"], z["prototypes"], config.aplt.scale)


def pooled_markdown(records: list[dict]) -> str:
  """Records {method, budget, seed, heads: {head: top-1}} -> per (method, pooled budget) table."""
  groups: dict[tuple[str, str], list[dict]] = {}
  for r in records:
    groups.setdefault((r["method"], re.sub(r" val\d+$", "", r["budget"])), []).append(r)
  lines = ["| method | budget | runs | " + " | ".join(HEADS) + " | proto − linear | "
           "ensemble − linear |", "|---" * (5 + len(HEADS)) + "|"]
  for (method, budget), rs in sorted(groups.items()):
    top = {h: 100 * np.array([r["heads"][h] for r in rs]) for h in HEADS}
    cells = [f"{top[h].mean():.1f}" for h in HEADS]
    for h in HEADS[1:]:
      d = top[h] - top["linear"]
      sd = d.std(ddof=1) if len(d) > 1 else 0.0
      cells.append(f"{d.mean():+.1f} ± {sd:.1f} ({int((d > 0).sum())}/{len(d)})")
    lines.append(f"| {method} | {budget} | {len(rs)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--grid", required=True)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  logging.set_verbosity(logging.ERROR)  # one read-only checkpoint warning per run otherwise
  grid = experiments.load_grid(args.grid)
  records = []
  for r in experiment_report.collect(grid, experiments.cells(grid), args.out):
    heads = score_run(r["workdir"], r["top1_ema"])
    if heads is not None:
      records.append({**r, "heads": heads})
  print(pooled_markdown(records) if records else "no finished prototype runs under --out")


if __name__ == "__main__":
  main()
