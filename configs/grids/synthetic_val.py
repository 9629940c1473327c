"""APLT's default against beta = 0, head_weight = 0 and the other evaluated heads, on synthetic's
VALIDATION split (10% labels).

  python -m aplt_jax.experiments --grid=configs/grids/synthetic_val.py --out=runs/synthetic_val \
      --eval_split=val

The synthetic grid's setting (configs/grids/synthetic.py, 700 steps, 3 seeds) with only the rows
the choices of beta, head_weight and eval.head need; scored on its 600 validation clips, which
training never reads.
"""
from configs.grids import _offline_rows, synthetic


def get_grid():
  grid = synthetic.get_grid()
  # The default these rows were chosen from: before vouching became the default, so the
  # `aplt` row is the one their paired differences (docs/results) were measured against.
  grid["base"].aplt.vouch_modes = 0
  grid.update(
      name="synthetic_val",
      methods=["aplt"],
      budgets={"10%": grid["budgets"]["10%"]},
      ablations={
          "beta0": {"aplt.beta": 0.0},
          # The kept offline labels on E8 only, not on the linear head.
          "head0": {"aplt.head_weight": 0.0},
          # The evaluated head (training unchanged): the frozen prototypes, or both heads' mean.
          "head_proto": {"eval.head": "proto"},
          "head_ensemble": {"eval.head": "ensemble"},
          **_offline_rows.ROWS,
      },
      ablation_budgets=["10%"],
  )
  return grid
