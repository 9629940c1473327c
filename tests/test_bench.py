"""The accelerator benchmark script, run end to end at tiny shapes on the CPU (`--smoke`): the
model step, k-means, and the end-to-end step fed by the trainer's input pipeline."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu  # noqa: E402  pylint: disable=g-import-not-at-top


@pytest.mark.parametrize("kind,peak", [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H200", 989.0),
                                       ("NVIDIA A100-SXM4-40GB", 312.0), ("TPU v5 lite", 197.0),
                                       ("NVIDIA L40S", 362.0), ("cpu", None)])
def test_peak_lookup(kind, peak):
  assert gpu.peak_tflops(kind) == peak


@pytest.mark.slow
def test_gpu_benchmark_smoke_runs_and_reports(tmp_path):
  out = tmp_path / "gpu.json"
  env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "").replace(
      "device_count=2", "device_count=1"), JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke",
                         "--peak_tflops=1", f"--json={out}"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "clips/s" in proc.stdout and "MFU" in proc.stdout
  res = json.loads(out.read_text())
  ts = res["train_step"]
  assert ts["dtype"] == "bfloat16" and ts["model"].startswith("tsm_resnet50")
  assert ts["clips_per_s"] > 0 and ts["step_flops"] > 0
  assert 0 < ts["mfu"] < 1  # measured against the 1 TFLOP/s peak given
  for mode in ("euclidean", "spherical"):
    assert res["kmeans"][mode]["run_s"] > 0
  e2e = res["end_to_end"]
  assert "s/step end to end" in proc.stdout
  assert e2e["config"] == "configs/ma52.py" and e2e["clip"] == "2x32x32x3"
  assert e2e["batch"] == "2+4" and e2e["clips"] == 24
  assert 0 < e2e["step_alone_s"] and 0 < e2e["e2e_step_s"]
  assert e2e["e2e_clips_per_s"] == pytest.approx(6 / e2e["e2e_step_s"])
  assert 0 <= e2e["input_bound"] < 1
