"""The reported synthetic table (test split): configs/grids/synthetic.py at 10% labels with the
four baselines, the supervised controls, APLT and APLT without E8, 3 paired seeds.

  python -m aplt_jax.experiments --grid=configs/grids/synthetic_report.py --out=runs/synthetic

Same cells (and workdirs) as the full grid's; the 50% budget and the other ablations are left to
the full grid (about 2x the time).
"""
from configs.grids import synthetic


def get_grid():
  grid = synthetic.get_grid()
  grid.update(
      methods=["supervised", "fixmatch", "flexmatch", "freematch", "softmatch", "aplt",
               "supervised_proto"],
      budgets={"10%": grid["budgets"]["10%"]},
      ablations={"beta0": grid["ablations"]["beta0"]},
      ablation_budgets=["10%"],
  )
  return grid
