"""APLT's default against beta = 0 on the synthetic VALIDATION split (10% labels).

  python -m aplt_jax.experiments --grid=configs/grids/synthetic_val.py --out=runs/synthetic_val \
      --eval_split=val

The synthetic grid's setting (configs/grids/synthetic.py, 700 steps, 3 seeds) with only the rows
the choice of beta needs; scored on its 600 validation clips, which training never reads.
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
      },
      ablation_budgets=["10%"],
  )
  return grid
