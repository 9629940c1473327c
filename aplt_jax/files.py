"""File helpers shared by the workdir and the data layer: write-then-rename, an flock."""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from typing import IO, Iterator


@contextlib.contextmanager
def write_then_rename(path: str, mode: str = "w") -> Iterator[IO]:
  """Opens a temporary file beside `path` and renames it onto `path` when the block succeeds.

  A reader (or a killed writer's rerun) never sees half a file; the temporary name is unique per
  process and thread (a multi-host job's processes share a folder). A failed block removes it.
  """
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
  try:
    with open(tmp, mode) as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


@contextlib.contextmanager
def flock(path: str) -> Iterator[None]:
  """Exclusive advisory lock (flock) on the file `path`, waiting for it; local to one machine."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
