"""Choosing APLT's offline-phase knobs on the watch VALIDATION split (subject 7, never trained on).

  python -m aplt_jax.experiments --grid=configs/grids/watch_offline.py --out=runs/watch_offline \
      --eval_split=val

Each ablation row changes one knob of configs/watch.py's APLT (DESIGN §2, "Open: the offline
phase's strength"); FixMatch and APLT as they are give the reference rows. The first round of
docs/choosing_the_offline_phase.md reads the paired differences from this grid's results.md.
"""
from configs.grids import watch


def get_grid():
  grid = watch.without_mirror(watch.get_grid())  # measured before round 7
  # The objective these choices started from (the paper figure's: E7 on, offline labels on the
  # prototype branch only); each ablation row changes it as its overrides say.
  grid["base"].aplt.online_weight = 1.0
  grid["base"].aplt.head_weight = 0.0
  grid["base"].aplt.vouch_modes = 0  # vouching came later (README, "Vouching")
  grid.update(
      name="watch_offline",
      methods=["fixmatch", "aplt", "supervised_proto"],
      budgets={k: v for k, v in grid["budgets"].items() if k in ("2/class", "8/class")},
      ablations={
          "rampup": {"aplt.rampup_steps": 80},
          "head": {"aplt.head_weight": 1.0},
          "center": {"aplt.center": True},
          "margin": {"aplt.select": "margin"},
          "prob": {"aplt.select": "prob"},
          "q_grow": {"aplt.threshold_q_final": 1.0},
          "ensemble": {"eval.head": "ensemble"},
          # Pairs with the margin score (the single knob that raised kept accuracy in round 1).
          "margin_head": {"aplt.select": "margin", "aplt.head_weight": 1.0},
          "margin_rampup": {"aplt.select": "margin", "aplt.rampup_steps": 80},
          "agree": {"aplt.online_agree": True},
          "margin_agree": {"aplt.select": "margin", "aplt.online_agree": True},
          # Offline labels in place of online ones on the parametric head (no E7).
          "offline_only": {"aplt.online_weight": 0.0, "aplt.head_weight": 1.0},
      },
      ablation_budgets=["2/class", "8/class"],
  )
  return grid
