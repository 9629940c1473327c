"""Real trainer runs with every phase timed, for the offline and input benchmarks.

`TimedRun` is `train.Run` with a stopwatch around each phase of each round: the offline phase,
the online steps, the evaluations and the checkpoint saves, so a round's wall time splits into
its parts without changing what the trainer does. `config_for(preset, ...)` gives the configs
the benchmarks use: the demo, and an MA-52-like setting scaled down for the CPU.
"""
from __future__ import annotations

import collections
import contextlib
import time

from aplt_jax import train
from configs import demo

# MA-52's training split and the configs/ma52.py schedule (10% labels, B = 32, mu = 2, four
# weak views per labeled clip, the validation split evaluated at the end of every round).
MA52_TRAIN, MA52_VAL = 11_250, 5_586


def config_for(preset: str, scale: float = 1.0, data_dir: str = ""):
  """'demo': configs/demo.py on its 700-step schedule (docs/benchmarks.md's figures). 'ma52':
  MA-52's sizes and schedule times `scale`, on the demo's CPU model and synthetic clips (12
  classes: the synthetic set has no more)."""
  c = demo.long_schedule(demo.get_config())
  c.progress = False
  c.data.data_dir = data_dir
  if preset == "ma52":
    c.data.synthetic.num_train = int(round(MA52_TRAIN * scale))
    c.data.synthetic.num_test = int(round(MA52_VAL * scale / 8)) * 8
    c.batch_size, c.uratio = 32, 2
    c.eval.batch_size = 64
    c.steps_per_round = -1  # One pass over the unlabeled set.
    c.warmup_steps = 20
    c.total_steps = 10_000  # The benchmark stops after its rounds.
    c.eval.every_steps = 10_000
    c.checkpoint_every = 10_000
    c.log_every = 50
  elif preset != "demo":
    raise ValueError(f"unknown preset {preset!r}; use 'demo' or 'ma52'")
  return c


class _Stop(Exception):
  """Raised to end a run after the rounds a benchmark needs."""


class TimedRun(train.Run):
  """`train.Run` recording wall seconds per (round, phase); stops after `rounds` rounds."""

  def __init__(self, config, workdir: str, rounds: int):
    super().__init__(config, workdir)
    self.rounds = rounds
    self.seconds_by = collections.defaultdict(float)  # (round, phase) -> seconds
    self._round = 0

  @contextlib.contextmanager
  def _clock(self, phase: str):
    t = time.perf_counter()
    yield
    self.seconds_by[self._round, phase] += time.perf_counter() - t

  def offline_phase(self, state, r, step):
    if r > self.rounds:
      raise _Stop()
    self._round = r
    with self._clock("offline"):
      return super().offline_phase(state, r, step)

  def run_steps(self, step_fn, batches, state, protos, start, stop, round_, phase):
    if round_ > self.rounds:
      raise _Stop()
    self._round = round_
    t = time.perf_counter()
    before = sum(v for (r, p), v in self.seconds_by.items() if r == round_)
    state = super().run_steps(step_fn, batches, state, protos, start, stop, round_, phase)
    inner = sum(v for (r, p), v in self.seconds_by.items() if r == round_) - before
    self.seconds_by[round_, "steps"] += time.perf_counter() - t - inner
    return state

  def log_eval(self, state, protos, step, round_):
    with self._clock("eval"):
      return super().log_eval(state, protos, step, round_)

  def save(self, state, protos, step, round_, event):
    with self._clock("checkpoint"):
      return super().save(state, protos, step, round_, event)

  def run_rounds(self) -> dict:
    """Runs warm-up and `rounds` rounds; returns {(round, phase): seconds}."""
    try:
      self.run()
    except _Stop:
      self.ckpt.close()
      self.writer.close()
    return dict(self.seconds_by)


def round_breakdown(seconds_by: dict, r: int) -> dict[str, float]:
  """Seconds of round r by phase, plus the total."""
  parts = {p: s for (rr, p), s in seconds_by.items() if rr == r}
  parts["round"] = sum(parts.values())
  return parts
