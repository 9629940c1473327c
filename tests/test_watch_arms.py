"""tools/watch_arms.py: kept offline labels split by whether a window's (class, arm) is labeled."""
import json

import numpy as np
import pytest

from tools import watch_arms


def _workdir(root, labeled, rounds):
  root.mkdir()
  (root / "split.json").write_text(json.dumps({"num_train": 6, "labeled": labeled}))
  (root / "offline").mkdir()
  for i, r in enumerate(rounds, 1):
    np.savez(root / "offline" / f"round_{i:03d}.npz", **r)


def test_summary_splits_kept_labels_by_covered_pair_hand_values(tmp_path):
  label = np.array([0, 0, 1, 1, 0, 1])
  arm = np.array([0, 1, 0, 1, 0, 0])  # pairs 0 1 2 3 0 2; labeled windows 0, 2 cover pairs 0, 2
  u = np.array([1, 3, 4, 5])  # pairs 1, 3 uncovered; 0, 2 covered
  _workdir(tmp_path / "seed0", [0, 2], [dict(
      unlabeled=u, hidden=label[u], keep=np.array([1, 1, 1, 0], bool),
      pseudo_label=np.array([0, 0, 1, 1]))])
  out = watch_arms.summarise(str(tmp_path / "seed*"), label, arm)
  assert "1 runs, 2.0 of 4 (class, arm) pairs labeled" in out
  covered, uncovered = out.splitlines()[1:]
  assert "50% of unlabeled windows, kept  50%, kept labels   0% right" in covered
  assert "50% of unlabeled windows, kept 100%, kept labels  50% right,  50% of all kept errors" \
      in uncovered


def test_summary_refuses_runs_of_other_data(tmp_path):
  label, arm = np.array([0, 0, 1, 1, 0, 1]), np.zeros(6, np.int64)
  u = np.array([1, 3])
  _workdir(tmp_path / "seed0", [0], [dict(unlabeled=u, hidden=np.array([1, 1]),
                                            keep=np.ones(2, bool), pseudo_label=np.zeros(2))])
  with pytest.raises(SystemExit, match="hidden labels differ"):
    watch_arms.summarise(str(tmp_path / "seed*"), label, arm)
  assert watch_arms.summarise(str(tmp_path / "none*"), label, arm).endswith("no workdir")
