"""FixMatch killed at 6 points and preempted once, then resumed: ends like an
uninterrupted run (fault_matrix.py)."""
import pytest

from fault_matrix import check_matrix


@pytest.mark.slow
def test_killed_and_resumed_fixmatch_run_ends_like_an_uninterrupted_one(tmp_path, data_dir):
  check_matrix("fixmatch", tmp_path, data_dir)
