"""Reliability in-process: divergence, the workdir lock, SIGTERM handling, skipped samples.

The kill-and-resume matrix (subprocesses) is tests/fault/test_kill_resume.py.
"""
import json
import os
import pathlib
import shutil
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
from aplt_jax.errors import ConfigError, DataError
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


# ---- the workdir: a folder of the run's own files ---------------------------------------------


def test_a_workdir_that_is_a_file_or_under_a_file_is_refused(tmp_path, data_dir):
  (tmp_path / "notes.txt").write_text("mine")
  for workdir, cause in ((tmp_path / "notes.txt", "is a file; give a folder"),
                         (tmp_path / "notes.txt" / "run", "cannot be written (Not a directory")):
    with pytest.raises(ConfigError, match=f"--workdir={workdir} {cause}".replace("(", r"\(")):
      train.train_and_evaluate(tiny_config(data_dir), str(workdir))
  assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_workdir_that_cannot_be_written_is_refused(tmp_path, data_dir):
  (tmp_path / "ro").mkdir(mode=0o555)
  with pytest.raises(ConfigError, match=r"cannot be written \(Permission denied"):
    train.train_and_evaluate(tiny_config(data_dir), str(tmp_path / "ro" / "run"))


def test_a_folder_of_the_users_own_files_is_refused_and_left_untouched(tmp_path, data_dir):
  mine = {"config.json": '{"mine": 1}', "metrics.jsonl": "x\n", "split.json": "[]"}
  for name, text in mine.items():
    (tmp_path / name).write_text(text)
  with pytest.raises(ConfigError) as info:
    train.train_and_evaluate(tiny_config(data_dir), str(tmp_path))
  assert (f"--workdir={tmp_path} is a folder of other files (config.json, metrics.jsonl, "
          "split.json) and not an aplt_jax workdir") in str(info.value)
  assert {p.name: p.read_text() for p in tmp_path.iterdir()} == mine


# ---- the data a run started on ----------------------------------------------------------------


def fake_dataset(labels, scale=1.0):
  records = [{"video": np.full((2, 3), scale * (i % 5), np.float32)} for i in range(len(labels))]
  return types.SimpleNamespace(train=records, eval=records[:4], train_labels=np.asarray(labels),
                               eval_labels=np.asarray(labels[:4]), num_classes=3,
                               class_names=["a", "b", "c"], input_key="video")


def test_a_resume_on_other_data_is_refused_naming_both_fingerprints(tmp_path):
  cfg = tiny_config("/data/a", **{"data.name": "npz", "data.manual_dir": "/data/a.npz"}).data
  labels = [0, 1, 2] * 4
  first = workdir_lib.data_fingerprint(cfg, fake_dataset(labels))
  workdir_lib.check_data(str(tmp_path), first)
  assert json.loads((tmp_path / "data.json").read_text()) == first
  (tmp_path / "checkpoints" / "20").mkdir(parents=True)  # the run holds progress
  moved = tiny_config("/b", **{"data.name": "npz", "data.manual_dir": "/b/a.npz"}).data
  workdir_lib.check_data(str(tmp_path), workdir_lib.data_fingerprint(moved, fake_dataset(labels)))
  for other in (fake_dataset(labels[::-1]), fake_dataset(labels, scale=2.0)):  # same sizes
    second = workdir_lib.data_fingerprint(moved, other)
    with pytest.raises(DataError) as info:
      workdir_lib.check_data(str(tmp_path), second)
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path} holds a run on other data than this config gives: it "
                          "started on npz from /data/a.npz: 12 train / 4 eval samples, 3 classes, "
                          f"labels sha1 {first['labels_sha1'][:12]}, sample mean/std ")
    assert (f"this run's data is npz from /b/a.npz: 12 train / 4 eval samples, 3 classes, labels "
            f"sha1 {second['labels_sha1'][:12]}") in msg and "\n" not in msg
  assert json.loads((tmp_path / "data.json").read_text()) == first
  # Without progress the workdir takes the new data, and the old split (its indices) is redrawn.
  (tmp_path / "checkpoints" / "20").rmdir()
  (tmp_path / "split.json").write_text("{}")
  workdir_lib.check_data(str(tmp_path), second)
  assert json.loads((tmp_path / "data.json").read_text()) == second
  assert not (tmp_path / "split.json").exists()


# ---- a finished run, damaged afterwards -------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
  """A finished SHORT supervised run (checkpoints 20 and 40) and its config."""
  workdir = tmp_path_factory.mktemp("finished")
  config = tiny_config(data_dir, "supervised", **SHORT)
  final = train.train_and_evaluate(config, str(workdir), jax.devices()[:1])
  return workdir, config, final


def damage(workdir, ckpt_id: int, how: str) -> None:
  folder = pathlib.Path(workdir) / "checkpoints" / str(ckpt_id) / "state"
  if how == "emptied _METADATA":
    (folder / "_METADATA").write_text("")
  else:  # the largest array file, cut to 100 bytes
    biggest = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    os.truncate(biggest, 100)


@pytest.mark.slow
@pytest.mark.parametrize("how, why", [
    ("emptied _METADATA", "40/state/_METADATA is empty."),
    ("truncated file", "ValueError: OUT_OF_RANGE: Error reading"),
])
def test_a_damaged_latest_checkpoint_falls_back_to_the_intact_older_one(how, why, finished,
                                                                        tmp_path, capsys):
  source, config, final = finished
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  (workdir / "final.json").unlink()
  damage(workdir, 40, how)
  again = train.train_and_evaluate(config, str(workdir), jax.devices()[:1])
  out = capsys.readouterr().out
  assert f"Skipped the damaged checkpoint {workdir / 'checkpoints' / '40'} (step 4): " in out
  assert why in out and out.index(why) < out.index("Resuming from step 2 (round 0)")
  assert again["ema"] == final["ema"]  # steps 3 and 4 trained again, to the same numbers
  assert committed_checkpoints(workdir) == [20, 40]
  assert (workdir / "checkpoints" / "40.corrupt" / "state").is_dir()  # kept for inspection
  untimed = lambda w: [{k: v for k, v in row.items() if k != "train/steps_per_sec"}
                       for row in metric_writer.read_rows(str(w))]
  assert untimed(workdir) == untimed(source)


@pytest.mark.slow
def test_when_no_checkpoint_restores_each_is_named_in_one_paragraph(finished, tmp_path):
  source, config, _ = finished
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  damage(workdir, 40, "truncated file")
  damage(workdir, 20, "emptied _METADATA")
  with pytest.raises(DataError) as info:
    train.train_and_evaluate(config, str(workdir), jax.devices()[:1])
  msg = str(info.value)
  ckpts = workdir / "checkpoints"
  assert msg.startswith(f"No checkpoint in {ckpts} restores: Skipped the damaged checkpoint "
                        f"{ckpts / '40'} (step 4): ValueError: OUT_OF_RANGE")
  assert f"Skipped the damaged checkpoint {ckpts / '20'} (step 2): {ckpts / '20'}/state/" \
         "_METADATA is empty." in msg and "\n" not in msg


@pytest.mark.slow
def test_predict_restores_the_newest_intact_checkpoint(finished, tmp_path, capsys):
  from aplt_jax import predict  # pylint: disable=g-import-not-at-top
  source, _, _ = finished
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  assert int(predict._restore(str(workdir))[0]["step"]) == 4  # pylint: disable=protected-access
  damage(workdir, 40, "emptied _METADATA")
  state, _ = predict._restore(str(workdir))  # pylint: disable=protected-access
  assert int(state["step"]) == 2
  assert (f"warning: Skipped the damaged checkpoint {workdir / 'checkpoints' / '40'} (step 4): "
          f"{workdir / 'checkpoints' / '40'}/state/_METADATA is empty.") in capsys.readouterr().err
  (workdir / "config.json").write_text('{"method": "sup')
  with pytest.raises(DataError, match=f"{workdir / 'config.json'} is not valid JSON"):
    predict.read_config(str(workdir))


@pytest.mark.slow
def test_a_deleted_metrics_file_on_resume_is_reported(finished, tmp_path, capsys):
  source, config, _ = finished
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  rows = len(metric_writer.read_rows(str(workdir)))
  (workdir / "metrics.jsonl").unlink()
  train.train_and_evaluate(config, str(workdir), jax.devices()[:1])
  assert (f"warning: {workdir / 'metrics.jsonl'} is missing: the checkpoint counts {rows} rows "
          "written before it, 0 are left; the lost rows cannot be rebuilt") \
      in capsys.readouterr().err


@pytest.mark.slow
def test_a_finished_run_refuses_other_data(finished, tmp_path, monkeypatch):
  source, config, final = finished
  workdir = tmp_path / "run"
  shutil.copytree(source, workdir)
  real_build = data_lib.build

  def relabeled(data_cfg):  # the same sizes and classes, other labels
    dataset = real_build(data_cfg)
    dataset.train_labels = np.roll(dataset.train_labels, 1)
    return dataset

  monkeypatch.setattr(data_lib, "build", relabeled)
  with pytest.raises(DataError, match=f"{workdir} holds a run on other data than this config"):
    train.train_and_evaluate(config, str(workdir), jax.devices()[:1])
  assert json.loads((workdir / "final.json").read_text())["ema"] == final["ema"]


# ---- the end of a round is committed before its offline phase ---------------------------------


@pytest.mark.slow
def test_the_rounds_last_checkpoint_is_committed_before_the_offline_phase(data_dir, tmp_path,
                                                                          monkeypatch):
  """A run killed during an offline phase resumes from the end of the round before it (the
  write of that checkpoint is asynchronous; the phase starts only once it has committed)."""
  seen, real = [], train.Run.offline_phase

  def offline_phase(self, state, r, step):
    seen.append((r, step, 10 * step in committed_checkpoints(tmp_path)))
    return real(self, state, r, step)

  monkeypatch.setattr(train.Run, "offline_phase", offline_phase)
  train.train_and_evaluate(tiny_config(data_dir), str(tmp_path), jax.devices()[:1])
  assert seen == [(1, 2, True), (2, 6, True)]  # warm-up end, round 1's end
