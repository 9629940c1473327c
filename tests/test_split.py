"""The split rules of aplt_jax/data/split.py that the video and sequence layouts share."""
import chex
import numpy as np
import pytest

from aplt_jax.data import split
from aplt_jax.errors import DataError


def _folders(root, *names):
  root.mkdir(exist_ok=True)
  for n in names:
    (root / n).mkdir()
  return str(root)


def test_split_folders(tmp_path):
  root = _folders(tmp_path, "train", "test", ".ipynb_checkpoints")  # dot-folders never count
  assert split.split_folders(root) == {"train": f"{root}/train", "test": f"{root}/test"}
  for names in (("train", "walk"), ("val", "test"), ("test", "walk", "run")):  # classes
    assert split.split_folders(_folders(tmp_path / "_".join(names), *names)) is None


def test_split_folders_beside_other_folders_are_ambiguous(tmp_path):
  with pytest.raises(DataError, match=r"split folders \['test', 'train'\] beside \['extra'\]"):
    split.split_folders(_folders(tmp_path / "r", "train", "test", "extra"))


def test_hold_out_per_class():
  labels = np.repeat([0, 1, 2], [10, 3, 1])
  held = split.hold_out(labels, 0.3, np.random.default_rng(0))
  chex.assert_shape(held, labels.shape)
  chex.assert_type(held, bool)
  # round(0.3 n) per class, never a class's last member.
  assert [int(held[labels == c].sum()) for c in range(3)] == [3, 1, 0]
  np.testing.assert_array_equal(held, split.hold_out(labels, 0.3, np.random.default_rng(0)))
  assert not split.hold_out(labels, 0.0, np.random.default_rng(0)).any()
  assert split.hold_out(np.zeros(2, int), 0.9, np.random.default_rng(0)).sum() == 1
