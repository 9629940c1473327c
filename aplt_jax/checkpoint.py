"""Orbax checkpoints of everything a run needs to continue exactly (DESIGN 3).

One checkpoint = the TrainState (params, batch stats, EMA params, optimizer state, step, RNG,
SSL method state), the current Prototypes, and JSON metadata (step, round, rows of
metrics.jsonl written so far, elapsed seconds); the phase is in the checkpoint id (below). The labeled split lives in WORKDIR/split.json, and the data
iterator position is the global step (the input pipeline is indexed by step).

Checkpoints are ordered by an id `10 * step + event` so the save after an offline phase sorts
after the end-of-round save at the same step. Orbax writes to a temporary folder and renames it
when complete, so a write killed half-way is never restored: the previous checkpoint is used;
the next run removes such unfinished folders (the workdir lock guarantees no writer is active).

A committed checkpoint damaged later (a truncated array file, an emptied `_METADATA`) is skipped:
`restore_newest_intact` falls back to the newest one that restores and says which ones it skipped
and why; training moves a skipped folder aside to `<id>.corrupt` (kept for inspection, never
read again).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from aplt_jax import faults
from aplt_jax.errors import DataError

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


def _why(folder: str, error: BaseException) -> str:
  """Why the checkpoint in `folder` did not restore: an unreadable JSON file, else the error."""
  for root, _, files in sorted(os.walk(folder)):
    for name in sorted(files):
      if name in ("_METADATA", "_CHECKPOINT_METADATA", "metadata"):
        file = os.path.join(root, name)
        try:
          with open(file) as f:
            json.load(f)
        except (OSError, ValueError):
          size = os.path.getsize(file)
          return f"{file} is {'empty' if not size else 'not valid JSON'}"
  while error.__cause__ is not None:  # the innermost cause names the file (TensorStore's)
    error = error.__cause__
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def restore_newest_intact(manager: ocp.CheckpointManager, restore: Callable[[int], Any],
                          ) -> tuple[int, Any, list[str]] | None:
  """`(id, restore(id), skipped)` for the newest checkpoint of `manager` that restores.

  `skipped` holds one line per newer checkpoint that failed, naming it and why. None when there
  is no checkpoint at all.

  Raises:
    DataError: every checkpoint failed (each one named with its reason).
  """
  skipped = []
  for ckpt in sorted(manager.all_steps(), reverse=True):
    try:
      return ckpt, restore(ckpt), skipped
    except Exception as e:  # pylint: disable=broad-except  # any damage: try the next older one
      folder = os.path.join(os.fspath(manager.directory), str(ckpt))
      skipped.append(f"Skipped the damaged checkpoint {folder} (step {ckpt // 10}): "
                     f"{_why(folder, e)}.")
  if skipped:
    raise DataError(f"No checkpoint in {manager.directory} restores: {' '.join(skipped)} Move "
                    "the checkpoints folder aside to start the run afresh.")
  return None


class Checkpointer:
  """Saves and restores (state, prototypes, meta) under WORKDIR/checkpoints."""

  def __init__(self, workdir: str, keep: int = 2):
    self.directory = directory(workdir)
    self.skipped: list[str] = []  # damaged checkpoints that `restore` passed over
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
    """The newest intact checkpoint restored into the structure and shardings of the given
    pytrees; `self.skipped` says which newer ones were damaged (moved aside to `<id>.corrupt`)."""
    abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract(state_like)),
                              prototypes=ocp.args.StandardRestore(abstract(prototypes_like)),
                              meta=ocp.args.JsonRestore())
    found = restore_newest_intact(self.manager, lambda ckpt: self.manager.restore(ckpt, args=args))
    if found is None:
      return None
    ckpt, out, self.skipped = found
    if self.skipped:
      if jax.process_index() == 0:
        for bad in [c for c in self.manager.all_steps() if c > ckpt]:
          old = os.path.join(self.directory, str(bad))
          new, n = f"{old}.corrupt", 1
          while os.path.exists(new):
            new, n = f"{old}.corrupt{n}", n + 1
          os.rename(old, new)
      if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
        multihost_utils.sync_global_devices("checkpoint_fallback")
      self.manager.reload()
    return out["state"], out["prototypes"], dict(out["meta"])

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
