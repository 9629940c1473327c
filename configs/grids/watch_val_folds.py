"""The watch default against its bars on other validation subjects: a report, no choice.

  python -m aplt_jax.experiments --grid=configs/grids/watch_val_folds.py \
      --out=runs/watch_val_folds --eval_split=val

Every watch choice so far was read on one validation subject (7), and twice a lead there did
not carry to the test subjects (docs/choosing_the_offline_phase.md, rounds 7 and 9). Here
subject 5 or 6 is the validation split in its place (subject 7 then trains, like subjects 1-6
less the one held out; the test subjects 8-10 are untouched and unread): does APLT's lead over
FixMatch and `supervised_proto` on subject 7 hold on other subjects of the training side?
The `val7` budgets are the usual split, spelled out (the cells of `watch_val.py` with the same
config were copied in, not rerun: `2/class mirror`'s FixMatch and `supervised_proto`, the
`mirror` row's APLT at 2 and 8/class; one rerun matched its copy to the digit).

Subjects 1-4 complete the training side (every subject but the test ones held out in turn;
`--only=val1/,val2/,val3/,val4/`, seeds 0-2 first and 3-4 later), so that APLT's
lead per held-out subject can be set beside the test subjects' (docs/choosing_the_offline_phase.md,
"Which subjects APLT gains on"). Round 12's `margin` row was judged (and run) on subjects 5-7
only, round 13's `proj` on all seven with seeds 0-2, round 14's `spread` on all seven with
seeds 0-4 (subjects 1-4's seeds 3-4 then run for the three bars too).

Round 15 asks whether the 500-step schedule is too short for any method: the `... 1000 steps`
budgets train every method for 1,000 steps (100 warm-up + 5 rounds of 180, the same five offline
rounds, each 2.25 times longer), 2/class, seeds 0-2 (`--only=1000_steps/fixmatch/seed0,...`):
no method was better for it (docs/choosing_the_offline_phase.md, "Round 15"). Rows `beta0` and
`gamma0` (2/class, seeds 0-2) attribute APLT's lead over `supervised_proto` to its two
pseudo-label terms on validation (a report; the record's "Attribution on seven validation
subjects").
"""
from configs.grids import watch


SUBJECTS = (1, 2, 3, 4, 5, 6, 7)  # watch's training side; 8-10 are the test subjects


def get_grid():
  grid = watch.get_grid()
  budgets = {f"{n}/class val{s}": {"data.labels_per_class": n, "data.labeled_ratio": None,
                                   "data.sequence.val_subjects": (s,)}
             for n in (2, 8) for s in SUBJECTS}
  longer = {f"2/class val{s} 1000 steps": {**budgets[f"2/class val{s}"], "total_steps": 1000,
                                           "steps_per_round": 180}
            for s in SUBJECTS}
  grid.update(
      name="watch_val_folds",
      methods=["fixmatch", "supervised_proto", "aplt"],
      budgets={**budgets, **longer},
      # Round 12 (docs/choosing_the_offline_phase.md): the first choice judged on all three.
      # Round 13: a projection head for the prototype branch, judged on all seven subjects
      # (seeds 0-2). `margin` was run on subjects 5-7 only. Round 14: each class's kept
      # threshold from its labeled rows' spread, judged on all seven subjects (seeds 0-4).
      # Round 15's schedule is not an APLT ablation: every method runs it (`longer`).
      ablations={"margin": {"aplt.select": "margin"}, "proj": {"model.proj_dim": 64},
                 "spread": {"aplt.threshold": "labeled_spread"},
                 # Attribution on validation (a report, 2/class, seeds 0-2): the kept labels
                 # without E8 (beta0) or without the head term (gamma0).
                 "beta0": {"aplt.beta": 0.0}, "gamma0": {"aplt.head_weight": 0.0}},
      ablation_budgets=list(budgets),
  )
  return grid
