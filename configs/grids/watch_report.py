"""The reported watch table (test split): configs/grids/watch.py's methods at 2 and 8 labels per
class, with the attribution controls, the paper figure's objective, the default without vouching
and the default without the arm mirror (the table before round 7's choice) as rows.

  python -m aplt_jax.experiments --grid=configs/grids/watch_report.py --out=runs/watch
"""
from configs.grids import watch


def get_grid():
  grid = watch.get_grid()
  grid["budgets"] = {k: grid["budgets"][k] for k in ("2/class", "8/class")}
  grid["ablation_budgets"] = ["2/class", "8/class"]
  grid["ablations"] = {k: grid["ablations"][k]
                       for k in ("paper_e7", "beta0", "alpha0", "no_vouch")}
  # APLT on watch's config before round 7 (the arm mirror); the baselines gain from it too.
  grid["ablations"]["no_mirror"] = {"augment_seq.dataset_mirror": False}
  return grid
