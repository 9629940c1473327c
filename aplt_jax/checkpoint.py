"""Orbax checkpoints of everything a run needs to continue exactly (DESIGN 3).

One checkpoint = the TrainState (params, batch stats, EMA params, optimizer state, step, RNG,
SSL method state), the current Prototypes, and JSON metadata (step, round, rows of
metrics.jsonl written so far, elapsed seconds); the phase is in the checkpoint id (below). The labeled split lives in WORKDIR/split.json, and the data
iterator position is the global step (the input pipeline is indexed by step).

Checkpoints are ordered by an id `10 * step + event` so the save after an offline phase sorts
after the end-of-round save at the same step. Orbax writes to a temporary folder and renames it
when complete, so a write killed half-way is never restored: the previous checkpoint is used;
the next run removes such unfinished folders (the workdir lock guarantees no writer is active).
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from aplt_jax import faults

ONLINE, OFFLINE = 0, 1


def directory(workdir: str) -> str:
  """WORKDIR/checkpoints."""
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def has_checkpoint(workdir: str) -> bool:
  """Whether WORKDIR holds a committed checkpoint (a run that can be resumed).

  Committed checkpoints are the folders named by their integer id; unfinished writes live in
  Orbax's temporary folders, whose names are not integers.
  """
  path = directory(workdir)
  return os.path.isdir(path) and any(name.isdigit() for name in os.listdir(path))


def _step_of(name: str) -> int | None:
  """The training step of a checkpoint folder `10 * step + event` (None for item folders)."""
  return int(name) // 10 if name.isdigit() else None


class Checkpointer:
  """Saves and restores (state, prototypes, meta) under WORKDIR/checkpoints."""

  def __init__(self, workdir: str, keep: int = 2):
    self.directory = directory(workdir)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True,
            temporary_path_class=faults.temporary_path_class(_step_of)))

  def latest(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, event: int, state: Any, prototypes: Any, meta: dict) -> None:
    self.manager.save(
        10 * step + event,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                prototypes=ocp.args.StandardSave(prototypes),
                                meta=ocp.args.JsonSave(meta)),
        force=True)

  def restore(self, state_like: Any, prototypes_like: Any) -> tuple[Any, Any, dict] | None:
    """The latest checkpoint restored into the structure and shardings of the given pytrees."""
    ckpt = self.latest()
    if ckpt is None:
      return None
    abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
    out = self.manager.restore(
        ckpt,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract(state_like)),
                                prototypes=ocp.args.StandardRestore(abstract(prototypes_like)),
                                meta=ocp.args.JsonRestore()))
    return out["state"], out["prototypes"], dict(out["meta"])

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
