"""The experiment runner: methods x label budgets x seeds (+ APLT ablations), paired by seed.

  python -m aplt_jax.experiments --grid=configs/grids/synthetic.py --out=runs/grid

A grid file defines `get_grid()` returning a dict with `name`, `base` (a full config), `methods`,
`budgets` (label -> config overrides), `seeds`, and optionally `ablations` (name -> overrides on
top of method `aplt`) run at `ablation_budgets`. Every cell gets its own workdir under `--out`;
finished cells (a `final.json`) are skipped, an interrupted one resumes from its checkpoint, so
rerunning the command continues the grid. At the end (and with `--report_only`) it writes
`results.csv`, `results.md` and the figures (`aplt_jax/experiment_report.py`).

Over machines: `--shard=i/n` runs the k-th selected cell (of the grid, or of the cells `--only`
names) when k mod n = i, so n runners (one per machine, all with the same `--out` on a shared
disk and the same `--only`) split it evenly without touching each other's workdirs; once all
have finished, `--report_only` writes the tables from every shard's runs.

For a given seed every method gets the same labeled subset and the same initial parameters
(both derive from `config.seed`), so each seed is one paired comparison.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import sys
import time
import traceback
from typing import Any

from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS
flags.DEFINE_string("grid", None, "Grid file defining get_grid().")
flags.DEFINE_string("out", None, "Output folder: one workdir per run, results.* and figures.")
flags.DEFINE_bool("report_only", False, "Only (re)write the tables and figures from finished runs.")
flags.DEFINE_list("only", [], "Run only cells whose name contains one of these substrings.")
flags.DEFINE_enum("eval_split", None, ["val", "test"],
                  "Score every cell on this split: val for choosing defaults and variants, test "
                  "for the reported tables (default: the grid's own, normally test). Use a "
                  "separate --out for each.")
flags.DEFINE_string("reuse", None, "An earlier results.csv of this grid: cells with no finished "
                    "run under --out are read from it for the tables (e.g. baselines that a "
                    "change of APLT's defaults does not touch; rerun those it does).")
flags.DEFINE_string("shard", "0/1", "i/n: run the k-th selected cell (--only) when k mod n = i "
                    "(n machines, one shared --out and the same --only; then --report_only "
                    "once all are done).")


@dataclasses.dataclass(frozen=True)
class Cell:
  """One run of the grid."""
  budget: str
  method: str  # The config method, or `aplt-<ablation>` for ablations.
  seed: int
  overrides: tuple[tuple[str, Any], ...]

  @property
  def name(self) -> str:
    return f"{slug(self.budget)}/{self.method}/seed{self.seed}"


def slug(text: str) -> str:
  return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text.replace("%", "pct"))


def load_grid(path: str) -> dict:
  """Imports a grid file and returns its `get_grid()`, with defaults filled in."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if root not in sys.path:
    sys.path.insert(0, root)  # So `from configs import ...` works inside grid files.
  spec = importlib.util.spec_from_file_location("_aplt_grid", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  grid = dict(module.get_grid())
  missing = {"name", "base", "methods", "budgets", "seeds"} - set(grid)
  if missing:
    raise ValueError(f"{path}: get_grid() lacks {sorted(missing)}.")
  grid.setdefault("ablations", {})
  grid.setdefault("ablation_budgets", [])
  return grid


def cells(grid: dict) -> list[Cell]:
  """Every run of the grid, main comparison first, then the ablations."""
  out = []
  for budget, over in grid["budgets"].items():
    for seed in grid["seeds"]:
      for method in grid["methods"]:
        out.append(Cell(budget, method, seed, tuple(
            {**over, "method": method, "seed": seed}.items())))
  for budget in grid["ablation_budgets"]:
    for seed in grid["seeds"]:
      for name, over in grid["ablations"].items():
        out.append(Cell(budget, f"aplt-{name}", seed, tuple(
            {**grid["budgets"][budget], **over, "method": "aplt", "seed": seed}.items())))
  return out


def apply_overrides(config, overrides) -> Any:
  """A copy of `config` with dotted-key overrides applied (unknown keys are errors: KeyError)."""
  config = copy.deepcopy(config)
  was_locked = config.is_locked
  config.lock()  # ml_collections adds unknown leaves to an unlocked config; a locked one refuses
  config.update_from_flattened_dict(dict(overrides))
  if not was_locked:
    config.unlock()
  return config


def parse_shard(text: str) -> tuple[int, int]:
  """'i/n' -> (i, n), with 0 <= i < n."""
  try:
    i, n = (int(v) for v in text.split("/"))
  except ValueError:
    i, n = -1, 0
  if not 0 <= i < n:
    raise ValueError(f"--shard={text!r}: expected i/n with 0 <= i < n, e.g. --shard=0/2 and "
                     "--shard=1/2 on two machines sharing --out.")
  return i, n


def _is_shard(text: str) -> bool:
  try:
    parse_shard(text)
  except ValueError:
    return False
  return True


flags.register_validator("shard", _is_shard, message=(
    "--shard must be i/n with 0 <= i < n, e.g. --shard=0/2 and --shard=1/2 on two machines "
    "sharing --out."))


def select_cells(all_cells: list[Cell], only: list[str] | None,
                 shard: tuple[int, int] = (0, 1)) -> list[Cell]:
  """This runner's cells: of those whose name contains one of `only` (all where it is empty),
  the k-th belongs to shard k mod n. Sharding what `--only` selects (not the whole grid) keeps
  the shards even: with two ablations, e.g., every cell of one of them could fall on one shard
  of the whole grid."""
  i, n = shard
  chosen = [c for c in all_cells if not only or any(s in c.name for s in only)]
  return [c for k, c in enumerate(chosen) if k % n == i]


def _final(out: str, cell: Cell) -> dict | None:
  path = os.path.join(out, cell.name, "final.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def minutes_left(out: str, all_cells: list[Cell], todo: list[Cell]) -> float | None:
  """Minutes the unfinished `todo` cells should take: each at the mean run time (final.json's
  `seconds`) of finished cells of its method anywhere in the grid (any shard), else of all
  finished cells; None before any cell has finished."""
  seconds: dict[str, list[float]] = {}
  for c in all_cells:
    final = _final(out, c)
    if final is not None:
      seconds.setdefault(c.method, []).append(final["seconds"])
  if not seconds:
    return None
  overall = sum(map(sum, seconds.values())) / sum(map(len, seconds.values()))
  per_method = {m: sum(v) / len(v) for m, v in seconds.items()}
  return sum(per_method.get(c.method, overall) for c in todo
             if _final(out, c) is None) / 60


def write_hparams(config, all_cells: list[Cell], cell: Cell, workdir: str,
                  final: dict) -> None:
  """The cell's hyperparameters (every key any cell of the grid overrides, so all sessions
  share one set of columns) and final numbers, for TensorBoard's HParams dashboard."""
  from aplt_jax import metric_writer  # pylint: disable=g-import-not-at-top
  keys = sorted({k for c in all_cells for k, _ in c.overrides} - {"method", "seed"})
  hparams = {"budget": cell.budget, "method": cell.method, "seed": cell.seed}
  for key in keys:
    node = config
    for part in key.split("."):
      node = node[part]
    hparams[key] = node
  metrics = {f"hparams/{k}": final[tag][name] for k, tag, name in (
      ("top1_ema", "ema", "top1"), ("top1", "raw", "top1"),
      ("mean_class_acc", "ema", "mean_class_acc"), ("macro_f1", "ema", "macro_f1"))}
  metric_writer.write_hparams(workdir, hparams, metrics)


def run_grid(grid: dict, out: str, only: list[str] | None = None,
             shard: tuple[int, int] = (0, 1), eval_split: str | None = None) -> list[dict]:
  """Runs every unfinished cell of this shard in-process; a failing cell is recorded and the
  grid goes on. Failures go to `failures.json` (`failures.shard<i>of<n>.json` with shards).
  `eval_split` ('val' / 'test') overrides every cell's `data.eval_split`."""
  from aplt_jax import train  # pylint: disable=g-import-not-at-top
  all_cells = cells(grid)
  todo = select_cells(all_cells, only, shard)
  # Every cell's config before the first run: a mistyped override key fails now, not hours in.
  configs = [apply_overrides(grid["base"], c.overrides + (
      (("data.eval_split", eval_split),) if eval_split else ())) for c in todo]
  failures = []
  t0 = time.time()
  for i, (cell, config) in enumerate(zip(todo, configs)):
    workdir = os.path.join(out, cell.name)
    if os.path.exists(os.path.join(workdir, "final.json")):
      continue
    left = minutes_left(out, all_cells, todo[i:])
    print(f"[{i + 1}/{len(todo)}] {cell.name} ({(time.time() - t0) / 60:.1f} min so far" +
          (f", about {left:.0f} min left)" if left is not None else ")"), flush=True)
    try:
      final = train.train_and_evaluate(config, workdir)
      write_hparams(config, all_cells, cell, workdir, final)
    except Exception as e:  # pylint: disable=broad-except
      failures.append({"cell": cell.name, "error": f"{type(e).__name__}: {e}"})
      print(f"  FAILED: {type(e).__name__}: {e}", flush=True)
      logging.error(traceback.format_exc())
  name = "failures.json" if shard == (0, 1) else f"failures.shard{shard[0]}of{shard[1]}.json"
  path = os.path.join(out, name)
  if failures:
    with open(path, "w") as f:
      json.dump(failures, f, indent=1)
  elif os.path.exists(path):  # a rerun that finished everything clears the old list
    os.remove(path)
  return failures


def main(argv):
  del argv
  from aplt_jax import errors  # pylint: disable=g-import-not-at-top
  status = errors.run_cli(_main)
  if status:
    sys.exit(status)


def _main():
  from aplt_jax import experiment_report  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  grid = load_grid(FLAGS.grid)
  os.makedirs(FLAGS.out, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", os.path.join(FLAGS.out, ".jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  shard = parse_shard(FLAGS.shard)
  failures = [] if FLAGS.report_only else run_grid(grid, FLAGS.out, FLAGS.only, shard,
                                                    FLAGS.eval_split)
  if shard != (0, 1) and not FLAGS.report_only:  # the other shards may still be running
    print(f"Shard {FLAGS.shard} done" + (f"; {len(failures)} runs failed" if failures else "") +
          ". Once every shard is done: the same command with --report_only (no --shard).")
    return
  all_cells = cells(grid)
  experiment_report.write_report(grid, all_cells, FLAGS.out, grid.get("class_names"),
                                 FLAGS.reuse)
  unfinished = [c.name for c in all_cells if _final(FLAGS.out, c) is None]
  print(f"Wrote {os.path.join(FLAGS.out, 'results.md')}" +
        (f"; {len(failures)} runs failed (failures*.json)" if failures else "") +
        (f"; {len(unfinished)} of {len(all_cells)} runs not finished (e.g. {unfinished[0]})"
         if unfinished else ""))


def run():
  """`aplt-experiments` and `python -m aplt_jax.experiments` (shipped grids found anywhere)."""
  import configs  # pylint: disable=g-import-not-at-top
  main_module = sys.modules["__main__"]
  if main_module is not sys.modules[__name__]:  # a console script: --help shows this module's
    main_module.__doc__ = f"{__doc__}\n{FLAGS.module_help(__name__)}"
  sys.argv = configs.with_shipped_paths(sys.argv)
  flags.mark_flags_as_required(["grid", "out"])
  app.run(main)


if __name__ == "__main__":
  run()
