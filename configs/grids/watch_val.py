"""APLT's default objective against its agreement and ramp-up variants, on watch's VALIDATION split.

  python -m aplt_jax.experiments --grid=configs/grids/watch_val.py --out=runs/watch_val \
      --eval_split=val

The base is configs/watch.py's APLT without vouching (offline labels on the head, no E7; the
default these rows were chosen from, docs/choosing_the_offline_phase.md). Each ablation row
adds one mechanism aimed at the first-round drop after warm-up (a round's wrong clusters
pulling the model away from what it already predicts); `supervised_proto` is the bar the
unlabeled terms must clear.
"""
from aplt_jax.data.sequences import readers
from configs.grids import _offline_rows, watch

# The mirror as round 7 measured it (the sign spelled out; the default now takes it from the data).
MIRROR = {"augment_seq.mirror_sign": readers.WATCH_MIRROR_SIGN}
# The watch default since round 7 (gated vouching, the mirror), written against this grid's base.
MIRROR_DEFAULT = {"aplt.vouch_modes": 3, "aplt.vouch_rule": "gated", **MIRROR}
# Rounds 9-11, each a change to the mirror default (also rows of watch_val_seeds.py).
MIRROR_ROUNDS = {
    # Round 9: the paper figure's objective (E7 back on the head, offline labels on the
    # prototype branch only).
    "mirror_e7": {"aplt.online_weight": 1.0, "aplt.head_weight": 0.0},
    # Round 10: the kept fraction growing to 1 by the last round.
    "mirror_qgrow": {"aplt.threshold_q_final": 1.0},
    # Round 11: E7 back on, counted where the online label equals the clip's offline cluster
    # (the kept offline labels still train the head).
    "mirror_e7_agree": {"aplt.online_weight": 1.0, "aplt.online_agree": True},
}


def get_grid():
  grid = watch.without_mirror(watch.get_grid())  # the `mirror` rows add it
  # The default these rows were chosen from: before vouching became the default, so the
  # `aplt` row is the one their paired differences (docs/results) were measured against.
  grid["base"].aplt.vouch_modes = 0
  grid.update(
      name="watch_val",
      methods=["fixmatch", "aplt", "supervised_proto"],
      # 10% (~22 labels per class), then 4/class and 1/class were added as budgets no earlier
      # choice had seen.
      budgets={**{k: v for k, v in grid["budgets"].items() if k in ("2/class", "8/class", "10%")},
               "4/class": {"data.labels_per_class": 4, "data.labeled_ratio": None},
               "1/class": {"data.labels_per_class": 1, "data.labeled_ratio": None},
               # Every method with the arm mirror (round 7: FixMatch's and the control's cells;
               # APLT's is the `mirror` row at each budget).
               "2/class mirror": {"data.labels_per_class": 2, "data.labeled_ratio": None,
                                  **MIRROR}},
      ablations={
          "offline_agree": {"aplt.offline_agree": True},
          "margin_offline_agree": {"aplt.select": "margin", "aplt.offline_agree": True},
          "rampup": {"aplt.rampup_steps": 80},
          # The unlabeled prototype loss off (the test grid's attribution rows point at it).
          "beta0": {"aplt.beta": 0.0},
          # beta = 0 with FixMatch's online term back beside the offline labels on the head.
          "beta0_e7": {"aplt.beta": 0.0, "aplt.online_weight": 1.0},
          # The frozen prototypes from labeled points only (the kept rows still train via E8).
          "labeled_protos": {"aplt.prototypes": "labeled"},
          # The kept offline labels on E8 only, not on the linear head (beta0's counterpart).
          "head0": {"aplt.head_weight": 0.0},
          # The evaluated head (training unchanged): the frozen prototypes, or both heads' mean.
          "head_proto": {"eval.head": "proto"},
          "head_ensemble": {"eval.head": "ensemble"},
          **_offline_rows.ROWS,
          # The default (gated) with the arm mirror in every view (round 7).
          "mirror": MIRROR_DEFAULT,
          # Round 8: the mirror without vouching (the base here has none).
          "mirror_no_vouch": MIRROR,
          **{name: {**MIRROR_DEFAULT, **change} for name, change in MIRROR_ROUNDS.items()},
      },
      ablation_budgets=["2/class", "8/class", "10%", "4/class", "1/class"],
  )
  return grid
