"""The workdir: one process at a time (a lock), only the run's own files, only the run's data.

Two runs writing one workdir would interleave checkpoints and metrics. `lock(workdir)` takes
an exclusive `fcntl.flock` on WORKDIR/.lock without waiting; a second process gets a
`ConfigError` naming the holder (pid, host, start time, written into the file). The kernel
drops the lock when its holder exits however it exits (SIGKILL included), so a killed run never
blocks its rerun: a stale pid in the file means nothing. Only process 0 of a multi-host job takes
the lock (the other processes share its workdir). `flock` is local to one machine on network
filesystems that do not forward it.

Before the lock, `lock` refuses a workdir that is a file, cannot be written, or is a folder of
other files (every aplt_jax workdir holds `.lock`, so a non-empty folder without one is the
user's, whose files a run would overwrite). `check_data` keeps WORKDIR/data.json, the fingerprint
of the data a run started on, and refuses to resume a run on other data.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import socket
from typing import Any, Iterator

import numpy as np

from aplt_jax import files
from aplt_jax.errors import ConfigError, DataError

LOCK_NAME = ".lock"
DATA_NAME = "data.json"


def write_json(path: str, obj, **dump_kwargs) -> None:
  """Write-then-rename: a reader (or a killed writer's rerun) never sees half a file."""
  with files.write_then_rename(path) as f:
    json.dump(obj, f, **dump_kwargs)


def read_json(path: str, error=ConfigError, fix: str = "") -> Any:
  """The JSON in `path`; a file that is not JSON (truncated, edited) raises `error` naming it."""
  try:
    with open(path) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise error(f"{path} is not valid JSON ({e}): it was truncated or edited. {fix}".strip()) \
        from None


def holds_run(workdir: str) -> bool:
  """Whether WORKDIR holds a run's progress: a committed checkpoint or final results."""
  from aplt_jax import checkpoint  # pylint: disable=g-import-not-at-top  # Orbax is slow to import
  return checkpoint.has_checkpoint(workdir) or os.path.exists(os.path.join(workdir, "final.json"))


@contextlib.contextmanager
def lock(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds WORKDIR's lock for the duration of the block (creates WORKDIR if needed).

  Raises:
    ConfigError: another live process holds the lock.
  """
  if not enabled:
    os.makedirs(workdir, exist_ok=True)
    yield
    return
  _check_folder(workdir)
  path = os.path.join(workdir, LOCK_NAME)
  try:
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise ConfigError(f"--workdir={workdir} cannot be written ({e.strerror}: {e.filename}); "
                      "give a folder this user may create files in.") from None
  try:
    try:
      # Not `files.flock`: this one must not wait, and it writes its holder into the file.
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown"
      raise ConfigError(
          f"Another process is already running in {workdir} ({holder}); two runs writing one "
          "workdir would mix their checkpoints and metrics. Wait for it to finish, stop it, or "
          "use a different --workdir.") from None
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    holder = f"pid {os.getpid()} on {socket.gethostname()}, started {stamp}".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder, 0)
    try:
      yield
    finally:
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def _check_folder(workdir: str) -> None:
  """Refuses a workdir that is a file, or a non-empty folder that is not an aplt_jax workdir."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir} is a file; give a folder (new or an earlier run's) "
                      "for the checkpoints, metrics and results.")
  if os.path.isdir(workdir):
    entries = sorted(os.listdir(workdir))
    if entries and LOCK_NAME not in entries:
      shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
      raise ConfigError(
          f"--workdir={workdir} is a folder of other files ({shown}) and not an aplt_jax "
          "workdir (it has no .lock); a run would overwrite files such as config.json and "
          "metrics.jsonl there. Give a new or empty folder, or an earlier run's workdir.")


# ---- the data a run started on ----------------------------------------------------------------

_SAMPLES = 4  # records read from each split for the content fingerprint
_PATH_KEYS = ("data_dir", "manual_dir")  # shown, not compared: prepared data may move


def data_fingerprint(data_cfg, dataset) -> dict:
  """What identifies a run's data: its source, sizes, label space and a content sample.

  `labels_sha1` hashes the class names and every train and evaluation label; `sample_stats`
  holds the mean and standard deviation of `_SAMPLES` evenly spaced records of each split
  (floats, compared with a tolerance: float inputs may differ in the last bits between machines).
  """
  h = hashlib.sha1(json.dumps(list(dataset.class_names)).encode())
  for labels in (dataset.train_labels, dataset.eval_labels):
    h.update(np.asarray(labels, np.int64).tobytes())
  stats = []
  for source in (dataset.train, dataset.eval):
    picks = np.linspace(0, len(source) - 1, _SAMPLES).astype(int) if len(source) else []
    for i in np.unique(picks):
      x = np.asarray(source[int(i)][dataset.input_key], np.float64)
      stats.append([round(float(x.mean()), 6), round(float(x.std()), 6)])
  return {"name": data_cfg.name,
          "data_dir": os.path.abspath(data_cfg.data_dir) if data_cfg.data_dir else "",
          "manual_dir": os.path.abspath(data_cfg.manual_dir) if data_cfg.manual_dir else "",
          "num_train": int(len(dataset.train_labels)), "num_eval": int(len(dataset.eval_labels)),
          "num_classes": int(dataset.num_classes), "labels_sha1": h.hexdigest(),
          "sample_stats": stats}


def same_data(a: dict, b: dict) -> bool:
  """Whether two fingerprints name the same data (paths aside)."""
  keys = (set(a) | set(b)) - set(_PATH_KEYS) - {"sample_stats"}
  if any(a.get(k) != b.get(k) for k in keys):
    return False
  sa, sb = np.asarray(a.get("sample_stats", [])), np.asarray(b.get("sample_stats", []))
  return sa.shape == sb.shape and np.allclose(sa, sb, rtol=1e-4, atol=1e-6)


def _describe(fp: dict) -> str:
  where = fp.get("manual_dir") or fp.get("data_dir") or "the default data_dir"
  return (f"{fp.get('name')} from {where}: {fp.get('num_train')} train / {fp.get('num_eval')} "
          f"eval samples, {fp.get('num_classes')} classes, labels sha1 "
          f"{str(fp.get('labels_sha1'))[:12]}, sample mean/std {fp.get('sample_stats')}")


def check_data(workdir: str, fingerprint: dict, write: bool = True) -> None:
  """Writes WORKDIR/data.json at a run's first start; refuses to resume a run on other data.

  A workdir without progress (no checkpoint, no final.json) takes the new data, and its
  labeled split (split.json, indices into the old data) is redrawn. `write`: process 0 only.

  Raises:
    DataError: the workdir holds a run that started on data with another fingerprint.
  """
  path = os.path.join(workdir, DATA_NAME)
  fix = ("It fingerprints the data this run started on; restore it, or use a new --workdir.")
  saved = read_json(path, DataError, fix) if os.path.exists(path) else None
  if saved is not None and not same_data(saved, fingerprint):
    if holds_run(workdir):
      raise DataError(
          f"{workdir} holds a run on other data than this config gives: it started on "
          f"{_describe(saved)}; this run's data is {_describe(fingerprint)}. Resuming would "
          "train (or overwrite final.json) on the wrong data: point data.manual_dir / "
          "data.data_dir back at the original data, or use a new --workdir.")
    split = os.path.join(workdir, "split.json")
    if write and os.path.exists(split):
      os.remove(split)
  if write and saved != fingerprint and (saved is None or not holds_run(workdir)):
    write_json(path, fingerprint, indent=1)
