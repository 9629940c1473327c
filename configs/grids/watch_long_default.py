"""The long schedule of `watch_long.py` with watch's current defaults (the arm mirror, gated
vouching, every validation-chosen knob of configs/watch.py): FixMatch against APLT, with
`supervised_proto` as the control, on watch at 2 labels per class (test split; a report, no
choice is made from it).

  python -m aplt_jax.experiments --grid=configs/grids/watch_long_default.py \\
      --out=runs/watch_long_default

15 runs, 1.5 h of training (6 min a run with two runs sharing 2 CPU cores).
"""
from configs.grids import watch
from configs.grids import watch_long


def get_grid():
  grid = watch_long.long_schedule(watch.get_grid())
  grid.update(name="watch_long_default", methods=["fixmatch", "aplt", "supervised_proto"],
              seeds=[0, 1, 2, 3, 4], ablations={}, ablation_budgets=[])
  return grid
