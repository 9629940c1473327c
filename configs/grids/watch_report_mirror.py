"""The watch test table with the arm mirror in every view (`configs/watch.py`'s `MIRROR_SIGN`):
supervised, FixMatch, the labeled-prototype control and APLT (its default) at 2 and 8 labels per
class, 5 paired seeds. A report of round 7 (docs/choosing_the_offline_phase.md), run after its
validation decision; `watch_report.py` holds the same methods without the mirror.

  python -m aplt_jax.experiments --grid=configs/grids/watch_report_mirror.py --out=runs/watch_mirror
"""
from configs import watch as watch_config
from configs.grids import watch


def get_grid():
  grid = watch.get_grid()
  grid["base"].augment_seq.mirror_sign = watch_config.MIRROR_SIGN
  grid.update(
      name="watch_report_mirror",
      methods=["supervised", "fixmatch", "supervised_proto", "aplt"],
      budgets={k: grid["budgets"][k] for k in ("2/class", "8/class")},
      ablations={},
      ablation_budgets=[],
  )
  return grid
