"""APLT's default against beta = 0, head_weight = 0 and the other evaluated heads, on synthetic's
VALIDATION split (10% labels).

  python -m aplt_jax.experiments --grid=configs/grids/synthetic_val.py --out=runs/synthetic_val \
      --eval_split=val

The synthetic grid's setting (configs/grids/synthetic.py, 700 steps, 3 seeds) with only the rows
the choices of beta, head_weight and eval.head need; scored on its 600 validation clips, which
training never reads.
"""
from configs.grids import synthetic


def get_grid():
  grid = synthetic.get_grid()
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
          # Kept only where a labeled clip of the same label vouches for the row's mode.
          "vouch": {"aplt.vouch_modes": 3},
          # The same with the mode's labeled majority vouching (unanimity starved synthetic).
          "vouch_majority": {"aplt.vouch_modes": 3, "aplt.vouch_majority": True},
      },
      ablation_budgets=["10%"],
  )
  return grid
