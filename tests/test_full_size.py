"""The full-size rehearsal (bench/full_size.py) end to end in CI: configs/ma52.py as it is
(TSM-ResNet-50, bfloat16, 224 px, stored 16x256x224x3 clips) on generated clips, warm-up, one
offline phase, 2 online steps and the final evaluation, on the CPU. configs/ma12.py is
configs/ma52.py with another label budget, so this run covers its model, clips and steps too.

Small data (2 classes x 2 clips), full-size model and clips: a few minutes and ~9 GiB of host
memory at B = 1 (docs/benchmarks.md §9).
"""
from __future__ import annotations

import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_full_size_rehearsal_runs_end_to_end(tmp_path):
  env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "").replace(
      "device_count=2", "device_count=1"), JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, str(ROOT / "bench" / "full_size.py"), "--config=configs/ma52.py",
       "--classes=2", "--per_class=2", "--batch=1", f"--data_dir={tmp_path / 'clips'}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  assert "tsm_resnet50, bfloat16, clips 16x256x224x3 uint8" in out, out
  rows = dict(re.findall(r"^\|?\s*([a-z][^|\n]*?)\s*\|\s*([0-9.]+|nan)\s*\|?\s*$", out, re.M))
  for row in ("warm-up step, first call (compile + step)",
              "online step, first call (compile + step)", "round 1 offline (whole phase)",
              "round 1 steps (whole phase)", "whole run (after data)",
              "peak host memory, GiB (max RSS)"):
    assert row in rows, (row, out)
    assert math.isfinite(float(rows[row])) and float(rows[row]) > 0, (row, out)
  # The offline phase and both online steps ran inside the whole run.
  assert float(rows["whole run (after data)"]) >= float(rows["round 1 offline (whole phase)"])
