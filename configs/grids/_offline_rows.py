"""The offline-phase rows both validation grids score (watch_val.py, synthetic_val.py).

Each is an ablation of the pre-vouching default those grids pin in their base, so its paired
difference is against that `aplt` row; `gated` is today's default (configs/default.py).
"""

ROWS = {
    # Kept only where a labeled clip of the same label vouches for the row's mode.
    "vouch": {"aplt.vouch_modes": 3, "aplt.vouch_rule": "unanimous"},
    # The same with the mode's labeled majority vouching (unanimity starved synthetic).
    "vouch_majority": {"aplt.vouch_modes": 3, "aplt.vouch_rule": "majority"},
    # Dropped only where the mode's labeled clips all say another class.
    "veto": {"aplt.vouch_modes": 3, "aplt.vouch_rule": "veto"},
    # Judged only by modes whose labeled clips agree on one label (mixed modes pass).
    "decisive": {"aplt.vouch_modes": 3, "aplt.vouch_rule": "decisive"},
    # Unanimous only in rounds where no mode mixes labeled clips of two labels.
    "gated": {"aplt.vouch_modes": 3, "aplt.vouch_rule": "gated"},
    # gated, with the k-means' cluster sizes held to the labeled class frequencies.
    "balanced": {"aplt.vouch_modes": 3, "aplt.vouch_rule": "gated", "aplt.assign": "balanced"},
    # gated, with each class's kept labels weighted to the labeled class frequencies.
    "kept_balance": {"aplt.vouch_modes": 3, "aplt.vouch_rule": "gated",
                     "aplt.kept_weight": "class_balanced"},
    # gated, over twice as many unconstrained modes (6 per class), so that a class mode no
    # labeled clip reaches can get a mode of its own instead of sharing a labeled neighbour's.
    "vouch6": {"aplt.vouch_modes": 6, "aplt.vouch_rule": "gated"},
}
