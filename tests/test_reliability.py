"""Reliability in-process: divergence, the workdir lock, SIGTERM handling, skipped samples.

The kill-and-resume matrix (subprocesses) is tests/fault/test_kill_resume.py.
"""
import os
import pathlib
import signal
import subprocess
import sys
import types

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aplt_jax import data as data_lib
from aplt_jax import faults
from aplt_jax import metric_writer
from aplt_jax import preemption
from aplt_jax import train
from aplt_jax import workdir as workdir_lib
from aplt_jax.errors import ConfigError
from tiny import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Supervised warm-up only (one compiled train step, no offline phase): checkpoints after steps 2
# and 4, a metrics row (and the divergence check) after every step.
SHORT = {"total_steps": 4, "warmup_steps": 4, "checkpoint_every": 2, "log_every": 1,
         "eval.every_steps": 100}


def committed_checkpoints(workdir) -> list[int]:
  return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").iterdir()
                if p.name.isdigit())


def checkpoint_arrays(workdir, ckpt_id: int) -> list[np.ndarray]:
  path = pathlib.Path(workdir) / "checkpoints" / str(ckpt_id) / "state"
  with ocp.StandardCheckpointer() as checkpointer:
    tree = checkpointer.metadata(path).item_metadata.tree
    target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    return jax.tree.leaves(checkpointer.restore(path, target))


# ---- divergence -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fault, names", [
    ("nan:3", "non-finite loss terms: grad_norm=nan, loss=nan, loss_sup_logits=nan"),
    ("nan_grad:3", "non-finite gradients (the loss is finite): grad_norm=nan."),
])
def test_nan_stops_the_run_naming_step_round_and_term_and_keeps_the_last_good_checkpoint(
    fault, names, data_dir, tmp_path, monkeypatch):
  monkeypatch.setenv(faults.ENV, fault)
  config = tiny_config(data_dir, "supervised", **SHORT)
  with pytest.raises(FloatingPointError) as info:
    train.train_and_evaluate(config, str(tmp_path), jax.devices()[:1])
  msg = str(info.value)
  assert "Training diverged at step 3 (round 0, warmup)" in msg
  assert names in msg
  assert "the last good checkpoint (step 2)" in msg
  # Nothing was saved after the bad step, and the kept checkpoint holds finite numbers.
  assert committed_checkpoints(tmp_path) == [20]
  arrays = checkpoint_arrays(tmp_path, 20)
  assert all(np.isfinite(a).all() for a in arrays if np.issubdtype(a.dtype, np.floating))
  rows = metric_writer.read_rows(str(tmp_path))
  assert [r["step"] for r in rows] == [1, 2, 3]  # the diverged step (index 3) logs no row


def test_poison_is_a_no_op_unless_armed(monkeypatch):
  x = {"a": np.ones(3, np.float32)}
  monkeypatch.delenv(faults.ENV, raising=False)
  assert faults.poison(x, 5, "nan") is x
  monkeypatch.setenv(faults.ENV, "nan_grad:5")
  assert faults.poison(x, 5, "nan") is x
  hit = faults.poison(x, np.int32(5), "nan_grad")["a"]
  miss = faults.poison(x, np.int32(4), "nan_grad")["a"]
  assert np.isnan(hit).all() and (np.asarray(miss) == 1).all()


@pytest.mark.parametrize("bad", ["online", "online:x", "reboot:3", "online:3:HUP"])
def test_a_malformed_fault_spec_fails_loudly(bad, monkeypatch):
  monkeypatch.setenv(faults.ENV, bad)
  with pytest.raises(ValueError, match=f"APLT_FAULT={bad!r} is not a fault"):
    faults.maybe_die("online", 3)


# ---- the workdir lock -------------------------------------------------------------------------


def test_a_second_run_in_a_locked_workdir_is_refused_before_any_work(tmp_path, data_dir):
  with workdir_lib.lock(str(tmp_path)):
    with pytest.raises(ConfigError, match=f"Another process is already running in {tmp_path} "
                                          f"\\(pid {os.getpid()} on "):
      with workdir_lib.lock(str(tmp_path)):
        pass
    with pytest.raises(ConfigError, match="Another process is already running"):
      train.train_and_evaluate(tiny_config(data_dir), str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == [".lock"]  # refused before writing anything
  with workdir_lib.lock(str(tmp_path)):  # released: the next run may start
    pass


_HOLD_LOCK = """
import sys
from aplt_jax import workdir
with workdir.lock(sys.argv[1]):
  print("locked", flush=True)
  sys.stdin.readline()
"""


def test_a_killed_holder_never_blocks_the_rerun(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(tmp_path)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match=f"pid {holder.pid} "):
      with workdir_lib.lock(str(tmp_path)):
        pass
  finally:
    holder.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
    holder.wait()
  assert f"pid {holder.pid} " in (tmp_path / ".lock").read_text()
  with workdir_lib.lock(str(tmp_path)):
    assert f"pid {os.getpid()} " in (tmp_path / ".lock").read_text()


def test_holds_run_counts_only_committed_checkpoints_and_final_results(tmp_path):
  assert not workdir_lib.holds_run(str(tmp_path))
  (tmp_path / "checkpoints" / "30.orbax-checkpoint-tmp").mkdir(parents=True)
  assert not workdir_lib.holds_run(str(tmp_path))  # a write killed half-way is no progress
  (tmp_path / "final.json").write_text("{}")
  assert workdir_lib.holds_run(str(tmp_path))
  (tmp_path / "final.json").unlink()
  (tmp_path / "checkpoints" / "20").mkdir()
  assert workdir_lib.holds_run(str(tmp_path))


# ---- SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_sets_the_stop_flag_and_the_old_handler_comes_back():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.Watcher() as watcher:
    assert not watcher.should_stop(0)
    os.kill(os.getpid(), signal.SIGTERM)
    assert watcher.should_stop(1)
  assert signal.getsignal(signal.SIGTERM) is before
  stop = preemption.Preempted("saved at step 1")
  assert isinstance(stop, SystemExit) and stop.code == 0 and str(stop) == "saved at step 1"


# ---- skipped samples --------------------------------------------------------------------------


def test_skipped_samples_are_logged_once_and_written_to_final_json(data_dir, tmp_path,
                                                                   monkeypatch, capsys):
  skipped = {"train/corrupt": 2, "train/empty": 1, "test/missing": 1}
  real_build = data_lib.build

  def build_with_skips(data_cfg):
    dataset = real_build(data_cfg)
    dataset.skipped = dict(skipped)
    return dataset

  monkeypatch.setattr(data_lib, "build", build_with_skips)
  config = tiny_config(data_dir, "supervised", **{**SHORT, "total_steps": 2, "warmup_steps": 2})
  final = train.train_and_evaluate(config, str(tmp_path), jax.devices()[:1])
  assert final["data_skipped"] == skipped
  assert "Data preparation skipped 4 samples (train/corrupt: 2" in capsys.readouterr().out
  rows = metric_writer.read_rows(str(tmp_path))
  assert rows[0] == {"step": 0, "round": 0, "phase": "data", "data/skipped_train_corrupt": 2,
                     "data/skipped_train_empty": 1, "data/skipped_test_missing": 1,
                     "data/skipped_total": 4}
  train.train_and_evaluate(config, str(tmp_path), jax.devices()[:1])  # a rerun resumes
  assert metric_writer.read_rows(str(tmp_path)) == rows  # and does not log the skips again


def test_skipped_counts_come_from_a_preparation_report(monkeypatch):
  report = {"train": {"usable": 9, "skipped": 3,
                      "skipped_by_reason": {"corrupt": 2, "truncated": 1}},
            "test": {"usable": 4, "skipped": 0, "skipped_by_reason": {}}}
  assert data_lib.skipped_counts(report) == {"train/corrupt": 2, "train/truncated": 1}
  assert data_lib.skipped_counts(None) is None

  class Builder:  # what a prepared video split's source carries
    class info:  # pylint: disable=invalid-name
      metadata = {"report": report}

  class Source:
    builder = Builder()

  dataset = data_lib.Dataset(name="fake", train=Source(), eval=None, train_labels=None,
                             eval_labels=None, num_classes=2, class_names=["a", "b"])
  family = types.SimpleNamespace(open_dataset=lambda name, cfg: dataset)  # a family module
  monkeypatch.setitem(data_lib.registry()._items, "fake", family)  # pylint: disable=protected-access

  class Cfg:
    name = "fake"

  assert data_lib.build(Cfg()).skipped == {"train/corrupt": 2, "train/truncated": 1}
