"""Graceful preemption: SIGTERM makes the run checkpoint at the next step and stop.

Schedulers (Cloud TPU maintenance, Kubernetes, SLURM with `--signal`) send SIGTERM some
seconds before killing a job. `Watcher` turns it into a flag that the train loop reads after
each step; the loop then saves a checkpoint and raises `Preempted`. Rerunning the same command
resumes from that checkpoint.

One process: a Python SIGTERM handler sets the flag (installed only from the main thread, and
the previous handler is restored on exit). Several processes: JAX's distributed runtime already
catches SIGTERM and agrees on a common step, read through
`multihost_utils.reached_preemption_sync_point`, so every host saves the same step.
"""
from __future__ import annotations

import signal
import sys
import threading

import jax


class Preempted(SystemExit):
  """The run saved a checkpoint and stopped on SIGTERM; a rerun resumes.

  A `SystemExit` with code 0: a caller that does not catch it (a script, a grid of runs) stops
  cleanly instead of treating the stop as a failed run and moving on. `message` says where the
  checkpoint is.
  """

  def __init__(self, message: str):
    super().__init__(0)
    self.message = message

  def __str__(self) -> str:
    return self.message


class Watcher:
  """Context manager: `should_stop(step)` is True once a preemption notice has arrived."""

  def __init__(self):
    self.requested = False
    self._previous = None
    self._multihost = jax.process_count() > 1

  def __enter__(self) -> "Watcher":
    if not self._multihost and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    if not self.requested:
      print("SIGTERM received: saving a checkpoint after the current step, then stopping.",
            file=sys.stderr, flush=True)
    self.requested = True

  def should_stop(self, step: int) -> bool:
    """Whether to checkpoint after global step `step` and stop (call once per step)."""
    if self._multihost:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # the preemption service is off (jax_enable_preemption_service)
        self._multihost = False
        print("Warning: JAX's preemption service is off, so SIGTERM will not save a checkpoint "
              "on this multi-host job (set jax_enable_preemption_service).", file=sys.stderr)
    return self.requested
