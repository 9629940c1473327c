"""The embedded default: APLT on synthetic micro-actions, sized for 2 CPU cores (<= 3 minutes cold).

`--config=configs/demo.py` trains APLT; `--config=configs/demo.py:<method>` trains the same
setting with another method (supervised, fixmatch, flexmatch, freematch, softmatch, aplt).
"""
from configs import default


def get_config(method: str = "aplt"):
  c = default.get_config()
  c.method = method or "aplt"
  c.data.labeled_ratio = 0.1
  c.batch_size = 8
  c.uratio = 2
  # The online steps are ~70% of the time (2.5 steps/s on 2 cores against 16 in warm-up); an
  # evaluation only at each round's end (eval.every_steps stays above total_steps).
  c.total_steps = 340
  c.warmup_steps = 100
  c.steps_per_round = 60  # 4 rounds.
  c.log_every = 20
  c.checkpoint_every = 100
  return c


def long_schedule(c):
  """The 700-step schedule (5 rounds of 120 online steps) the synthetic grid and the benchmarks
  were measured at; the demo itself runs the shorter one above."""
  c.total_steps, c.warmup_steps, c.steps_per_round = 700, 100, 120
  c.eval.every_steps = 120
  return c
