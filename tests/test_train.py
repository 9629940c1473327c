"""The trainer end to end at tiny scale: outputs, 1 vs 2 devices, reruns.

Resume after SIGKILL / SIGTERM at many points is tests/fault/test_kill_resume.py."""
import json

import jax
import numpy as np
import pytest

from aplt_jax import metric_writer
from aplt_jax import train
from tiny import tiny_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
  """The same tiny APLT run on 1 and on 2 devices."""
  out = {}
  for n in (1, 2):
    workdir = tmp_path_factory.mktemp(f"run{n}")
    final = train.train_and_evaluate(tiny_config(data_dir), str(workdir), jax.devices()[:n])
    out[n] = (workdir, final)
  return out


def test_run_writes_every_output(runs):
  workdir, final = runs[1]
  for name in ("config.json", "split.json", "metrics.jsonl", "final.json", "accuracy.png",
               "pseudo_labels.png", "confusion.png", "per_class.png", "offline/round_001.npz", "offline/round_002.npz"):
    assert (workdir / name).exists(), name
  assert any((workdir / "tensorboard").iterdir())
  rows = metric_writer.read_rows(str(workdir))
  phases = [r["phase"] for r in rows]
  assert phases.count("offline") == 2 and "warmup" in phases and "online" in phases
  assert {"step", "round", "phase"} <= set(rows[0])
  offline = [r for r in rows if r["phase"] == "offline"]
  assert all(0 < r["offline/kept_frac"] <= 1 for r in offline)
  assert all(0 <= r["offline/pl_acc_all"] <= 1 for r in offline)
  online = [r for r in rows if r["phase"] == "online"]
  assert all(np.isfinite(r["train/loss_u_margin"]) for r in online)
  for tag in ("raw", "ema"):
    m = final[tag]
    assert 0 <= m["top1"] <= m["top5"] <= 1
    assert np.asarray(m["confusion"]).sum() == 24
  split = json.loads((workdir / "split.json").read_text())
  assert len(split["labeled"]) == 12  # 3 of each class's 12 clips.


def test_one_and_two_devices_agree(runs):
  """First train steps' losses and the first offline assignments match within tolerance."""
  rows = {n: metric_writer.read_rows(str(runs[n][0])) for n in (1, 2)}
  first = {n: [r for r in rows[n] if r["phase"] == "warmup"] for n in (1, 2)}
  for a, b in zip(first[1], first[2]):
    np.testing.assert_allclose(a["train/loss"], b["train/loss"], rtol=1e-4)
  r1 = {n: np.load(runs[n][0] / "offline" / "round_001.npz") for n in (1, 2)}
  np.testing.assert_array_equal(r1[1]["pseudo_label"], r1[2]["pseudo_label"])
  np.testing.assert_allclose(r1[1]["thresholds"], r1[2]["thresholds"], atol=1e-4)


def test_rerun_of_a_finished_run_changes_nothing(runs, data_dir):
  workdir, final = runs[1]
  again = train.train_and_evaluate(tiny_config(data_dir), str(workdir), jax.devices()[:1])
  assert again["ema"] == final["ema"]


def test_a_different_config_in_the_same_workdir_is_refused(runs, data_dir):
  from aplt_jax.errors import ConfigError
  with pytest.raises(ConfigError, match="uratio"):
    train.train_and_evaluate(tiny_config(data_dir, uratio=4), str(runs[1][0]),
                             jax.devices()[:1])
