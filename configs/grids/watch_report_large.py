"""The watch test table at the larger label budgets, 10% and 50% of the training windows: the
supervised bar, FixMatch, the labeled-prototype control and APLT with its current default
(configs/watch.py), 5 paired seeds. Report only: no choice is read from it.

  python -m aplt_jax.experiments --grid=configs/grids/watch_report_large.py --out=runs/watch_large
"""
from configs.grids import watch


def get_grid():
  grid = watch.get_grid()
  grid.update(
      name="watch_report_large",
      methods=["supervised", "fixmatch", "supervised_proto", "aplt"],
      budgets={k: grid["budgets"][k] for k in ("10%", "50%")},
      ablations={},
      ablation_budgets=[],
  )
  return grid
