"""One process per workdir: an advisory lock held for the whole run.

Two runs writing one workdir would interleave checkpoints and metrics. `lock(workdir)` takes
an exclusive `fcntl.flock` on WORKDIR/.lock without waiting; a second process gets a
`ConfigError` naming the holder (pid, host, start time, written into the file). The kernel
drops the lock when its holder exits however it exits (SIGKILL included), so a killed run never
blocks its rerun: a stale pid in the file means nothing. Only process 0 of a multi-host job takes
the lock (the other processes share its workdir). `flock` is local to one machine on network
filesystems that do not forward it.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from typing import Iterator

from aplt_jax import files
from aplt_jax.errors import ConfigError

LOCK_NAME = ".lock"


def write_json(path: str, obj, **dump_kwargs) -> None:
  """Write-then-rename: a reader (or a killed writer's rerun) never sees half a file."""
  with files.write_then_rename(path) as f:
    json.dump(obj, f, **dump_kwargs)


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
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
