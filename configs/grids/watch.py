"""The watch benchmark grid: 6 methods x 4 label budgets x 5 seeds = 120 runs (configs/watch.py).

  python -m aplt_jax.experiments --grid=configs/grids/watch.py --out=runs/watch

Real smartwatch motion (seglearn's data): 4 s windows every 2 s, subjects 8-10 held out as the
test set (never seen in training, labeled or not); the final model of every run is reported (no
model selection). Runs with the same seed share the labeled subset and the initial parameters
(paired). Cost: 120 runs, 1.2 h of training on 2 CPU cores (README, "The watch benchmark").
"""
from configs import watch


def get_grid():
  base = watch.get_config("aplt")
  base.progress = False
  base.eval.write_features = True
  return dict(
      name="watch",
      base=base,
      methods=["supervised", "fixmatch", "flexmatch", "freematch", "softmatch", "aplt",
               # Attribution control (DESIGN 2): APLT's labeled losses only, label-only prototypes.
               "supervised_proto"],
      budgets={
          "2/class": {"data.labels_per_class": 2, "data.labeled_ratio": None},
          "8/class": {"data.labels_per_class": 8, "data.labeled_ratio": None},
          "10%": {"data.labeled_ratio": 0.1, "data.labels_per_class": None},
          "50%": {"data.labeled_ratio": 0.5, "data.labels_per_class": None},
      },
      seeds=[0, 1, 2, 3, 4],
      # DESIGN §2's ablations, ready for the diagnosis step; add budgets (e.g. ["2/class"]) to
      # `ablation_budgets` to run them (5 seeds x 6 ablations = 30 more runs per budget).
      ablations={
          # Attribution controls: APLT without its unlabeled (beta) or labeled (alpha) prototype loss.
          "beta0": {"aplt.beta": 0.0},
          "alpha0": {"aplt.alpha": 0.0},
          # The paper figure's objective: FixMatch's online term E7, offline labels on the
          # prototype branch only (the default before the validation choice).
          "paper_e7": {"aplt.online_weight": 1.0, "aplt.head_weight": 0.0},
          # Without vouching (the default before the third validation round).
          "no_vouch": {"aplt.vouch_modes": 0},
          "no_threshold": {"aplt.threshold": "none"},
          "no_labeled_views": {"aplt.labeled_views": 0},
          "no_margin": {"aplt.margin": 0.0},
          "no_proto_losses": {"aplt.alpha": 0.0, "aplt.beta": 0.0},
          "offline_every2": {"aplt.offline_every": 2},
          "sync": {"aplt.sync": True},
      },
      ablation_budgets=[],
      class_names=["PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW"],
  )


def without_mirror(grid: dict) -> dict:
  """`grid` on watch's config as it was before round 7 chose the arm mirror: the grids measured
  then pin it off, so that their commands reproduce their recorded tables."""
  grid["base"].augment_seq.dataset_mirror = False
  return grid
