"""The kill-and-resume matrix: faults at many points, reruns, and the same final run.

For one method, one workdir goes through a chain of runs of `main.py`, each stopped by a fault
(`aplt_jax/faults.py`) at a later point: SIGKILL during the warm-up, half-way through a checkpoint
write (twice), in the middle of a round (twice) and during an offline phase, plus a SIGTERM
preemption. Each rerun resumes from the last committed checkpoint; the last one finishes. Its
final metrics, every row of metrics.jsonl and every array of the final checkpoint (params, EMA,
batch statistics, optimizer and method state, prototypes) must equal an uninterrupted run's.

Every run is a fresh process pinned to one device and single-threaded Eigen (XLA:CPU numerics
depend on both), sharing one persistent compilation cache, so only the first run compiles.
`check_matrix` is called by test_kill_resume_<method>.py, one test per method, so that
`make test` (`-n 2`, slow tests first) starts them side by side on its two workers.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from aplt_jax import metric_writer
from tiny import TINY

ROOT = pathlib.Path(__file__).resolve().parents[2]
PINNED_XLA_FLAGS = ("--xla_force_host_platform_device_count=1 --xla_cpu_multi_thread_eigen=false "
                    "--xla_backend_optimization_level=0")
# The schedule the chain below is written for (pinned here, whatever tests/tiny.py becomes):
# warm-up [0, 2), round 1 [2, 6), round 2 [6, 10); checkpoints at steps 2 (+ after the offline
# phase), 3, 6 (+ offline), 9 and 10; a metrics row after every step.
SCHEDULE = {"total_steps": 10, "warmup_steps": 2, "steps_per_round": 4, "checkpoint_every": 3,
            "log_every": 1, "eval.every_steps": 100}

KILLED, PREEMPTED, DONE = "killed", "preempted", "done"
# (APLT_FAULT, how the run ends, the step it resumes from: None = starts afresh).
CHAIN = (
    ("warmup:1", KILLED, None),  # before the first checkpoint
    ("checkpoint:3", KILLED, None),  # checkpoint 3 half-written: checkpoint 2 stays the latest
    ("online:4:TERM", PREEMPTED, 2),  # graceful stop: checkpoint at step 4, exit code 0
    ("online:5", KILLED, 4),  # mid round 1
    ("offline:2", KILLED, 4),  # in round 2's offline phase, after checkpoint 6 committed
    ("online:8", KILLED, 6),  # mid round 2, after a resumed offline phase
    ("checkpoint:9", KILLED, 6),  # checkpoint 9 half-written
    ("", DONE, 6),
)


def run_main(workdir, data_dir, method: str, fault: str = "") -> subprocess.CompletedProcess:
  """`python main.py` on the tiny config with APLT_FAULT=`fault`, pinned as the module says."""
  overrides = {**TINY, **SCHEDULE, "data.data_dir": data_dir}
  args = [sys.executable, str(ROOT / "main.py"), f"--config=configs/demo.py:{method}",
          f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in overrides.items())]
  env = dict(os.environ, XLA_FLAGS=PINNED_XLA_FLAGS,
             JAX_COMPILATION_CACHE_DIR=str(ROOT / ".jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", APLT_FAULT=fault)
  return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def final_arrays(workdir: pathlib.Path) -> dict[str, list[np.ndarray]]:
  """Every array of the latest checkpoint's state and prototypes, as numpy."""
  ckpt_dir = workdir / "checkpoints"
  latest = max(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
  out = {}
  with ocp.StandardCheckpointer() as checkpointer:
    for item in ("state", "prototypes"):
      path = ckpt_dir / str(latest) / item
      tree = checkpointer.metadata(path).item_metadata.tree
      target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
      out[item] = jax.tree.leaves(checkpointer.restore(path, target))
  return out


def untimed_rows(workdir) -> list[dict]:
  return [{k: v for k, v in row.items() if "seconds" not in k and "steps_per_sec" not in k}
          for row in metric_writer.read_rows(str(workdir))]


def describe(proc: subprocess.CompletedProcess) -> str:
  return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n" \
         f"{proc.stderr[-3000:]}"


def check_matrix(method: str, tmp_path: pathlib.Path, data_dir) -> None:
  """Runs the reference and the CHAIN for `method`; asserts every step and the final equality."""
  reference = tmp_path / "reference"
  proc = run_main(reference, data_dir, method)
  assert proc.returncode == 0, describe(proc)

  workdir = tmp_path / "faults"
  for fault, end, resumes_from in CHAIN:
    proc = run_main(workdir, data_dir, method, fault)
    out = proc.stdout + proc.stderr
    where = f"[{method}, APLT_FAULT={fault!r}] {describe(proc)}"
    if resumes_from is None:
      assert "Resuming from step" not in out, where
    else:
      assert f"Resuming from step {resumes_from} " in out, where
    assert (workdir / "checkpoints").is_dir(), where  # the run got as far as its checkpointer
    ckpts = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    if end == KILLED:
      assert proc.returncode == -9, where
      assert not (workdir / "final.json").exists(), where
      if fault.startswith("checkpoint:"):  # the write was caught half-way: arrays, no commit
        step_id = str(10 * int(fault.split(":")[1]))
        assert step_id not in ckpts, (ckpts, where)
        tmp = [n for n in ckpts if n.startswith(step_id + ".") and "tmp" in n]
        assert tmp and (workdir / "checkpoints" / tmp[0] / "state").is_dir(), (ckpts, where)
    elif end == PREEMPTED:
      assert proc.returncode == 0, where
      assert "Preempted (SIGTERM) after step 4 (round 1)" in out, where
      assert "40" in ckpts and not (workdir / "final.json").exists(), (ckpts, where)
    else:
      assert proc.returncode == 0, where
      assert not [n for n in ckpts if not n.isdigit()], ckpts  # unfinished writes cleaned up

  a = json.loads((reference / "final.json").read_text())
  b = json.loads((workdir / "final.json").read_text())
  for tag in ("raw", "ema"):
    assert a[tag] == b[tag], tag
  assert untimed_rows(reference) == untimed_rows(workdir)
  arrays_a, arrays_b = final_arrays(reference), final_arrays(workdir)
  for item in ("state", "prototypes"):
    assert len(arrays_a[item]) == len(arrays_b[item])
    for x, y in zip(arrays_a[item], arrays_b[item]):
      np.testing.assert_array_equal(x, y, err_msg=item)
