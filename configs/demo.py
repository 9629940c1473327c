"""The embedded default: APLT on synthetic micro-actions, sized for 2 CPU cores (<= 5 minutes).

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
  c.total_steps = 700
  c.warmup_steps = 100
  c.steps_per_round = 120  # 5 rounds.
  c.eval.every_steps = 120
  c.log_every = 20
  c.checkpoint_every = 100
  return c
