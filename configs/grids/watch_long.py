"""FixMatch against APLT, with supervised-only and `supervised_proto` as controls, on watch at 2
labels per class over a long schedule (test split): the setting where FixMatch's confirmation
bias shows at full strength (README, "FixMatch's failure on a long schedule").

  python -m aplt_jax.experiments --grid=configs/grids/watch_long.py --out=runs/watch_long

2,500 steps (100 warm-up + 6 rounds of 400), 5x the watch grid's; pseudo_labels.png is the
figure: FixMatch's masked count and accuracy per logged step beside APLT's kept count and
accuracy per round. 25 runs; 2-5 min a run alone on 2 CPU cores.
"""
from configs.grids import watch


def long_schedule(grid: dict) -> dict:
  """`grid`'s base on the long schedule, 2/class only."""
  base = grid["base"]
  base.total_steps, base.warmup_steps, base.steps_per_round = 2500, 100, 400
  base.eval.every_steps = 400
  base.log_every = 50
  grid["budgets"] = {"2/class": grid["budgets"]["2/class"]}
  return grid


def get_grid():
  grid = long_schedule(watch.without_mirror(watch.get_grid()))  # measured before round 7
  grid["base"].aplt.vouch_modes = 0  # measured before vouching became the default (README)
  grid.update(
      name="watch_long",
      methods=["supervised", "fixmatch", "aplt", "supervised_proto"],
      seeds=[0, 1, 2, 3, 4],
      # The default since the third validation round, on the same schedule.
      ablations={"vouched": {"aplt.vouch_modes": 3, "aplt.vouch_rule": "gated"}},
      ablation_budgets=["2/class"],
  )
  return grid
