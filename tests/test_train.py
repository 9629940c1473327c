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


def test_offline_options_and_the_supervised_proto_control_end_to_end(data_dir, tmp_path):
  """Every offline-phase knob at once runs to the end; the control builds label-only prototypes."""
  knobs = {"aplt.select": "margin", "aplt.center": True, "aplt.head_weight": 1.0,
           "aplt.rampup_steps": 3, "aplt.threshold_q_final": 1.0,
           "aplt.kept_weight": "class_balanced"}
  final = train.train_and_evaluate(tiny_config(data_dir, **knobs), str(tmp_path / "knobs"),
                                   jax.devices()[:1])
  assert 0 <= final["ema"]["top1"] <= 1
  rows = metric_writer.read_rows(str(tmp_path / "knobs"))
  offline = [r for r in rows if r["phase"] == "offline"]
  assert [r["offline/q"] for r in offline] == [0.3, 1.0]
  assert offline[1]["offline/kept_frac"] == 1.0
  ramp = [r["train/proto_ramp"] for r in rows if r["phase"] == "online"]
  assert ramp[0] == pytest.approx(1 / 3) and ramp[-1] == 1.0
  assert any(r["train/loss_u_head"] > 0 for r in rows if r["phase"] == "online")
  last = np.load(tmp_path / "knobs" / "offline" / "round_002.npz")
  assert np.linalg.norm(last["centers"], axis=1) == pytest.approx(1.0, rel=1e-5)

  train.train_and_evaluate(tiny_config(data_dir, method="supervised_proto"),
                           str(tmp_path / "control"), jax.devices()[:1])
  rows = metric_writer.read_rows(str(tmp_path / "control"))
  offline = [r for r in rows if r["phase"] == "offline"]
  assert len(offline) == 2 and all(r["offline/kept_frac"] == 0 for r in offline)
  online = [r for r in rows if r["phase"] == "online"]
  assert all(r["train/loss_sup_margin"] > 0 and r["train/loss_u_logits"] == 0 for r in online)
  assert all(r["train/loss_sup_margin"] == 0 for r in rows if r["phase"] == "warmup")
