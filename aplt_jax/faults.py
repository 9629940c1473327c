"""Fault injection for the reliability tests, armed by `APLT_FAULT=<point>:<n>[:<signal>]`.

Points:
- `warmup:<n>` / `online:<n>`: right after global step n of that phase completes (n steps done);
- `offline:<r>`: in round r's offline phase, after the embedding, before the clustering;
- `checkpoint:<n>`: half-way through writing the checkpoint of step n: its arrays are on disk
  in Orbax's temporary folder, the commit (rename) has not happened;
- `nan:<n>` / `nan_grad:<n>`: the train step that reads global batch n (its error says step n)
  multiplies the `sup_logits` loss term (hence the loss and every gradient) / only the
  gradients by NaN. The step is compared as a traced value, so the armed step compiles once.

The process is stopped with SIGKILL (default: like a preemption without notice or an OOM kill,
no cleanup runs) or with the named signal, e.g. `online:5:TERM` for the graceful path. Unset,
every hook is a no-op that adds nothing to the compiled programs. The variable is read at each
call, so a test can set it in-process; a malformed value raises instead of never firing.
"""
from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any, Callable

ENV = "APLT_FAULT"
KILL_POINTS = ("warmup", "online", "offline", "checkpoint")
POISON_POINTS = ("nan", "nan_grad")
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}


@dataclasses.dataclass(frozen=True)
class Fault:
  point: str
  n: int
  signal: int = signal.SIGKILL


def spec() -> Fault | None:
  """The armed fault, or None when APLT_FAULT is unset or empty."""
  raw = os.environ.get(ENV, "").strip()
  if not raw:
    return None
  parts = raw.split(":")
  ok = (len(parts) in (2, 3) and parts[0] in KILL_POINTS + POISON_POINTS
        and parts[1].isdigit() and (len(parts) == 2 or parts[2] in SIGNALS))
  if not ok:
    raise ValueError(
        f"{ENV}={raw!r} is not a fault: expected <point>:<n>[:<signal>] with point in "
        f"{KILL_POINTS + POISON_POINTS} and signal in {tuple(SIGNALS)}, e.g. 'online:7'.")
  sig = SIGNALS[parts[2]] if len(parts) == 3 else signal.SIGKILL
  return Fault(parts[0], int(parts[1]), sig)


def maybe_die(point: str, n: int) -> None:
  """Signals this process when the armed fault is `point:n`."""
  f = spec()
  if f is not None and f.point == point and f.n == n:
    os.kill(os.getpid(), f.signal)


def poison(tree: Any, step: Any, point: str) -> Any:
  """`tree` times NaN at the armed step when `point` (nan / nan_grad) is armed, else `tree`.

  `step` is the traced global step ([] int32). Called while tracing: unarmed, it returns its
  input untouched, so the normal program is unchanged.
  """
  f = spec()
  if f is None or f.point != point:
    return tree
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  factor = jnp.where(step == f.n, jnp.nan, 1.0)
  return jax.tree.map(lambda x: x * factor.astype(x.dtype), tree)


def temporary_path_class(step_of: Callable[[str], int]):
  """None, or (with `checkpoint:<n>` armed) an Orbax temporary-path class that signals the
  process just before committing the checkpoint of step n.

  `step_of` maps a checkpoint folder name to its training step (None for a folder that is not
  a whole checkpoint, such as an item's).
  """
  f = spec()
  if f is None or f.point != "checkpoint":
    return None
  from orbax.checkpoint.path import atomicity  # pylint: disable=g-import-not-at-top

  class DieBeforeCommit(atomicity.AtomicRenameTemporaryPath):
    """Orbax's atomic-rename commit, preceded by the armed signal."""

    async def finalize(self, *args, **kwargs):
      if step_of(self.get_final().name) == f.n:
        os.kill(os.getpid(), f.signal)
      return await super().finalize(*args, **kwargs)

  return DieBeforeCommit
