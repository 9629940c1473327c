"""The experiment runner: methods x label budgets x seeds (+ APLT ablations), paired by seed.

  python -m aplt_jax.experiments --grid=configs/grids/synthetic.py --out=runs/grid

A grid file defines `get_grid()` returning a dict with `name`, `base` (a full config), `methods`,
`budgets` (label -> config overrides), `seeds`, and optionally `ablations` (name -> overrides on
top of method `aplt`) run at `ablation_budgets`. Every cell gets its own workdir under `--out`;
finished cells (a `final.json`) are skipped, an interrupted one resumes from its checkpoint, so
rerunning the command continues the grid. At the end (and with `--report_only`) it writes
`results.csv`, `results.md` and the figures (`aplt_jax/experiment_report.py`).

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


def run_grid(grid: dict, out: str, only: list[str] | None = None,
             eval_split: str | None = None) -> list[dict]:
  """Runs every unfinished cell in-process; a failing cell is recorded and the grid goes on.

  `eval_split` ('val' / 'test') overrides every cell's `data.eval_split`.
  """
  from aplt_jax import train  # pylint: disable=g-import-not-at-top
  todo = [c for c in cells(grid) if not only or any(s in c.name for s in only)]
  failures = []
  t0 = time.time()
  for i, cell in enumerate(todo):
    workdir = os.path.join(out, cell.name)
    if os.path.exists(os.path.join(workdir, "final.json")):
      continue
    print(f"[{i + 1}/{len(todo)}] {cell.name} ({(time.time() - t0) / 60:.1f} min so far)",
          flush=True)
    config = apply_overrides(grid["base"], cell.overrides + (
        (("data.eval_split", eval_split),) if eval_split else ()))
    try:
      train.train_and_evaluate(config, workdir)
    except Exception as e:  # pylint: disable=broad-except
      failures.append({"cell": cell.name, "error": f"{type(e).__name__}: {e}"})
      print(f"  FAILED: {type(e).__name__}: {e}", flush=True)
      logging.error(traceback.format_exc())
  path = os.path.join(out, "failures.json")
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
  failures = [] if FLAGS.report_only else run_grid(grid, FLAGS.out, FLAGS.only, FLAGS.eval_split)
  experiment_report.write_report(grid, cells(grid), FLAGS.out, grid.get("class_names"))
  print(f"Wrote {os.path.join(FLAGS.out, 'results.md')}" +
        (f"; {len(failures)} runs failed (failures.json)" if failures else ""))


if __name__ == "__main__":
  flags.mark_flags_as_required(["grid", "out"])
  app.run(main)
