"""Fault injection for the kill-and-resume tests: `APLT_FAULT=<point>:<n>` kills the process.

Points: `warmup:<step>` / `online:<step>` (after that global step), `offline:<round>` (mid
offline phase, after embedding), `checkpoint:<step>` (while the checkpoint of that step is being
written). The process dies by SIGKILL, like a preempted or OOM-killed job: no cleanup runs.
"""
from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("APLT_FAULT", "")


def maybe_die(point: str, n: int) -> None:
  if _SPEC and _SPEC == f"{point}:{n}":
    os.kill(os.getpid(), signal.SIGKILL)
