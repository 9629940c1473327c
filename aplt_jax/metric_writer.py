"""WORKDIR/metrics.jsonl and TensorBoard events: one row per log event.

Each row is `{"step", "round", "phase", <name>: value, ...}`. The number of rows written is
stored in every checkpoint; a resumed run first cuts the file back to that many rows, so the
file of a killed-and-resumed run equals the file of an uninterrupted one. TensorBoard's events
(WORKDIR/tensorboard/) are rewritten from the kept rows, so they have no duplicate points either.
A file shorter than that (deleted or cut by hand) cannot be rebuilt: the writer says how many
rows are lost.
"""
from __future__ import annotations

import glob
import json
import math
import os
import sys
from typing import Any

import jax


def _clean(v: Any) -> Any:
  v = float(v)
  return v if math.isfinite(v) else None


class MetricWriter:
  """Appends metric rows (process 0 only) and mirrors scalars to TensorBoard."""

  def __init__(self, workdir: str, keep_rows: int = 0, tensorboard: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = jax.process_index() == 0
    self.rows = keep_rows
    self._tb = None
    if not self.enabled:
      return
    lines, existed = [], os.path.exists(self.path)
    if existed:
      with open(self.path) as f:
        lines = f.read().splitlines()[:keep_rows]
    with open(self.path, "w") as f:
      f.write("".join(line + "\n" for line in lines))
    self.rows = len(lines)
    if self.rows < keep_rows:
      state = "cut short" if existed else "missing"
      print(f"warning: {self.path} is {state}: the checkpoint counts {keep_rows} rows written "
            f"before it, {len(lines)} are left; the lost rows cannot be rebuilt (the run "
            "continues and appends the new rows).", file=sys.stderr)
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      logdir = os.path.join(workdir, "tensorboard")
      for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        os.remove(path)  # a resume replays the kept rows: no point twice, none left over
      self._tb = SummaryWriter(logdir)
      for line in lines:
        self._mirror(json.loads(line))

  def write(self, step: int, round_: int, phase: str, scalars: dict[str, Any]) -> dict:
    row = {"step": int(step), "round": int(round_), "phase": phase,
           **{k: _clean(v) for k, v in scalars.items()}}
    if self.enabled:
      with open(self.path, "a") as f:
        f.write(json.dumps(row) + "\n")
      self._mirror(row)
    self.rows += 1
    return row

  def _mirror(self, row: dict) -> None:
    if self._tb is not None:
      for k, v in row.items():
        if k not in ("step", "round", "phase") and v is not None:
          self._tb.add_scalar(k, v, row["step"])

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_rows(workdir: str) -> list[dict]:
  """All rows of WORKDIR/metrics.jsonl."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_hparams(workdir: str, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
  """WORKDIR/tensorboard/hparams/: one session of TensorBoard's HParams dashboard.

  `hparams` values are bool, int, float or str (others are written as str); `metrics` are the
  final numbers (names distinct from the training scalars, e.g. `hparams/top1_ema`).
  """
  if jax.process_index() != 0:
    return
  from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  from tensorboardX.summary import hparams as hparams_summary  # pylint: disable=g-import-not-at-top
  clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()}
  logdir = os.path.join(workdir, "tensorboard", "hparams")
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    os.remove(path)  # written once per finished run; a rewrite replaces it
  with SummaryWriter(logdir) as w:
    for summary in hparams_summary(clean, metrics):
      w.file_writer.add_summary(summary)
    for k, v in metrics.items():
      w.add_scalar(k, v, 0)
