"""tools/by_head.py: every evaluation head's top-1 from one run's features, by hand."""
import numpy as np

from tools import by_head

# The linear head swaps the two classes; the prototypes are the axes.
FEATURES = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
LABELS = np.array([0, 1, 0])
KERNEL, BIAS, CENTERS = np.array([[0.0, 1.0], [1.0, 0.0]]), np.zeros(2), np.eye(2)


def test_heads_by_hand():
  # Linear: all three wrong. Proto: all right. Ensemble at s = 16: the sharp prototype softmax
  # outvotes the linear one (row 0: [.27, .73] and [1, 0] -> [.63, .37]); at s = 0.5 it does not
  # (row 0: [.27, .73] and [.62, .38] -> [.45, .55]; row 2: [.12, .88] and [.58, .42]).
  linear = FEATURES @ KERNEL + BIAS
  sharp = by_head.head_top1(linear, FEATURES, LABELS, CENTERS, 16.0)
  assert sharp == {"linear": 0.0, "proto": 1.0, "ensemble": 1.0}
  soft = by_head.head_top1(linear, FEATURES, LABELS, CENTERS, 0.5)
  assert soft == {"linear": 0.0, "proto": 1.0, "ensemble": 0.0}


def test_pooled_over_validation_subjects_by_hand():
  rec = lambda budget, seed, lin, pro, ens: {"method": "aplt", "budget": budget, "seed": seed,
                                             "heads": {"linear": lin, "proto": pro,
                                                       "ensemble": ens}}
  md = by_head.pooled_markdown([rec("2/class val1", 0, .5, .6, .5),
                                rec("2/class val2", 0, .7, .6, .8),
                                rec("8/class val1", 0, .9, .9, .9)])
  assert "| aplt | 2/class | 2 | 60.0 | 60.0 | 65.0 | +0.0 ± 14.1 (1/2) | +5.0 ± 7.1 (1/2) |" in md
  assert "| aplt | 8/class | 1 | 90.0 | 90.0 | 90.0 | +0.0 ± 0.0 (0/1) | +0.0 ± 0.0 (0/1) |" in md
