"""The watch test table's core rows on five more seeds (5-9, never run on test before): FixMatch,
the labeled-prototype control and APLT's default at 2 and 8 labels per class, and the paper
figure's objective as a row. A report: it asks whether the 5-seed table's differences, and the
validation rounds' disagreement with it (docs/choosing_the_offline_phase.md, round 9), hold on
other labeled subsets and initialisations of the same test subjects.

  python -m aplt_jax.experiments --grid=configs/grids/watch_report_seeds.py --out=runs/watch_seeds
"""
from configs.grids import watch_report


def get_grid():
  grid = watch_report.get_grid()
  grid.update(
      name="watch_report_seeds",
      methods=["fixmatch", "supervised_proto", "aplt"],
      seeds=[5, 6, 7, 8, 9],
      ablations={"paper_e7": grid["ablations"]["paper_e7"]},
  )
  return grid
