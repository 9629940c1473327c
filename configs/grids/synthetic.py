"""The paper's comparison on synthetic micro-actions: 6 methods x {10%, 50%} labels x 3 seeds,
plus APLT's ablations at 10%. Each run is configs/demo.py on its 700-step schedule
(`demo.long_schedule`; ~3 min on 2 CPU cores).

  python -m aplt_jax.experiments --grid=configs/grids/synthetic.py --out=runs/grid_synthetic

Cost: 36 comparison runs + 15 ablation runs = 51 runs; about 3.0 min a run alone on 2 CPU
cores (1.3 min supervised-only), 2.4 h in all (README, "Experiments").
"""
from aplt_jax.data.synthetic import CLASS_NAMES
from configs import demo


def get_grid():
  base = demo.long_schedule(demo.get_config("aplt"))
  base.progress = False
  base.eval.write_features = True
  base.data.synthetic.num_val = 600  # For --eval_split=val (choosing); never trained on.
  return dict(
      name="synthetic",
      base=base,
      methods=["supervised", "fixmatch", "flexmatch", "freematch", "softmatch", "aplt",
               # Attribution control (DESIGN 2): APLT's labeled losses only, label-only prototypes.
               "supervised_proto"],
      budgets={"10%": {"data.labeled_ratio": 0.1}, "50%": {"data.labeled_ratio": 0.5}},
      seeds=[0, 1, 2],
      ablations={
          # Attribution controls: APLT without its unlabeled (beta) or labeled (alpha) prototype loss.
          "beta0": {"aplt.beta": 0.0},
          "alpha0": {"aplt.alpha": 0.0},
          # The paper figure's objective: FixMatch's online term E7, offline labels on the
          # prototype branch only (the default before the validation choice).
          "paper_e7": {"aplt.online_weight": 1.0, "aplt.head_weight": 0.0},
          "no_threshold": {"aplt.threshold": "none"},
          "no_labeled_views": {"aplt.labeled_views": 0},
          "no_margin": {"aplt.margin": 0.0},
          "offline_every2": {"aplt.offline_every": 2},
          "sync": {"aplt.sync": True},
      },
      ablation_budgets=["10%"],
      class_names=list(CLASS_NAMES),
  )
