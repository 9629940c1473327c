"""Two processes on one machine train as one data-parallel job (multi-host rehearsal).

`jax.distributed` with a local coordinator, one CPU device per process and gloo collectives:
each process reads only its rows of every batch, and the job must behave like one process
driving the same two devices. A reference run (one process, two devices) runs beside it. The
checkpoints the two processes wrote together must restore in a single process, and rerunning the
2-process command on the finished workdir must restore them in both processes.
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aplt_jax import data as data_lib
from aplt_jax import metric_writer
from tiny import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 420  # Per job; a hung collective must fail the test, not stall CI.

# One training process: `python -c WORKER PROC NPROC PORT WORKDIR DATA_DIR`.
WORKER = r"""
import json, sys
proc, nproc, port, workdir, data_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], \
    sys.argv[4], sys.argv[5]
import jax
if nproc > 1:
  jax.distributed.initialize(f"127.0.0.1:{port}", nproc, proc, initialization_timeout=120)
from tiny import tiny_config
from aplt_jax import train
final = train.train_and_evaluate(tiny_config(data_dir), workdir)
with open(f"{workdir}/proc{proc}.json", "w") as f:
  json.dump({"final": final, "process_count": jax.process_count(),
             "device_count": jax.device_count(),
             "local_device_count": jax.local_device_count()}, f)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _spawn(proc: int, nproc: int, port: int, workdir, data_dir, devices: int):
  flags = os.environ.get("XLA_FLAGS", "").replace("device_count=2", f"device_count={devices}")
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
             JAX_COMPILATION_CACHE_DIR=str(ROOT / ".jax_cache"))
  args = [sys.executable, "-c", WORKER, str(proc), str(nproc), str(port), str(workdir),
          str(data_dir)]
  return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _wait_all(procs) -> list[tuple[int, str]]:
  """Waits for every process; kills them all if any runs past TIMEOUT_S."""
  out = []
  try:
    for p in procs:
      text, _ = p.communicate(timeout=TIMEOUT_S)
      out.append((p.returncode, text))
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    pytest.fail(f"a process ran past {TIMEOUT_S} s (hung collective?)")
  return out


def _two_process_job(workdir, data_dir):
  port = _free_port()
  return _wait_all([_spawn(i, 2, port, workdir, data_dir, devices=1) for i in range(2)])


def _restore_state(workdir) -> dict:
  """The latest checkpoint's train state, restored onto this (single) process's first device."""
  directory = pathlib.Path(workdir) / "checkpoints"
  latest = max(int(p.name) for p in directory.iterdir() if p.name.isdigit())
  path = directory / str(latest) / "state"
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(path).item_metadata
  one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one_device),
                        metadata)
  state = checkpointer.restore(path, target)
  checkpointer.close()
  return state


@pytest.mark.parametrize("n", [1, 2])
def test_stack_rows_keeps_shards_in_place_and_reports_the_order(n):
  from aplt_jax import parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh(jax.devices()[:n])
  assert parallel.process_slice(8, mesh) == slice(0, 8)  # one process owns every row
  host = [np.arange(b * 12, (b + 1) * 12, dtype=np.float32).reshape(4, 3) for b in range(3)]
  stacked, order = parallel.stack_rows([parallel.global_batch(mesh, h) for h in host])
  assert stacked.sharding == parallel.data_sharded(mesh)
  np.testing.assert_array_equal(np.asarray(stacked), np.concatenate(host)[order])
  for d, shard in enumerate(sorted(stacked.addressable_shards, key=lambda s: s.index[0].start)):
    assert shard.device == mesh.devices.flat[d]  # each device kept its own rows
  np.testing.assert_array_equal(
      parallel.gather_rows([parallel.global_batch(mesh, h) for h in host]), np.concatenate(host))


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, data_dir):
  """The 2-process job and the 1-process, 2-device reference, run at the same time."""
  data_lib.build(tiny_config(data_dir).data)  # Prepared once here, not raced by the workers.
  multi, single = tmp_path_factory.mktemp("multi"), tmp_path_factory.mktemp("single")
  port = _free_port()
  procs = [_spawn(i, 2, port, multi, data_dir, devices=1) for i in range(2)]
  procs.append(_spawn(0, 1, 0, single, data_dir, devices=2))
  results = _wait_all(procs)
  for rc, text in results:
    assert rc == 0, text[-4000:]
  return multi, single, results


@pytest.mark.slow
def test_two_processes_form_one_job_and_agree(jobs):
  multi, _, results = jobs
  reports = [json.loads((multi / f"proc{i}.json").read_text()) for i in range(2)]
  for r in reports:
    assert (r["process_count"], r["device_count"], r["local_device_count"]) == (2, 2, 1)
  assert "2 device(s)" in results[0][1]
  # Replicated state stays identical across processes: both evaluate to the same numbers.
  assert reports[0]["final"]["raw"] == reports[1]["final"]["raw"]
  assert reports[0]["final"]["ema"] == reports[1]["final"]["ema"]
  assert (multi / "final.json").exists() and (multi / "offline" / "round_002.npz").exists()


@pytest.mark.slow
def test_two_processes_train_like_one_process_on_two_devices(jobs):
  """Each process reads half of every global batch; together they must match one process."""
  multi, single, _ = jobs
  rows = {k: metric_writer.read_rows(str(w)) for k, w in (("multi", multi), ("single", single))}
  losses = {k: [r["train/loss"] for r in v if "train/loss" in r] for k, v in rows.items()}
  assert len(losses["multi"]) == len(losses["single"]) == 10
  np.testing.assert_allclose(losses["multi"][:4], losses["single"][:4], rtol=1e-4)
  np.testing.assert_allclose(losses["multi"], losses["single"], rtol=1e-2)
  r1 = {k: np.load(w / "offline" / "round_001.npz") for k, w in (("multi", multi),
                                                                  ("single", single))}
  np.testing.assert_array_equal(r1["multi"]["pseudo_label"], r1["single"]["pseudo_label"])
  np.testing.assert_array_equal(r1["multi"]["keep"], r1["single"]["keep"])
  np.testing.assert_allclose(r1["multi"]["centers"], r1["single"]["centers"], atol=1e-4)


@pytest.mark.slow
def test_checkpoint_written_by_two_processes_restores(jobs, data_dir):
  multi, single, results = jobs
  state, ref = _restore_state(multi), _restore_state(single)
  assert int(state["step"]) == int(ref["step"]) == 10
  flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v) for k, v in
                       jax.tree_util.tree_flatten_with_path(tree)[0]}
  a, b = flat(state["params"]), flat(ref["params"])
  assert a.keys() == b.keys() and a
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=2e-3, err_msg=k)
  # Rerunning the command restores the finished run in both processes and changes nothing.
  first = [json.loads((multi / f"proc{i}.json").read_text())["final"] for i in range(2)]
  again = _two_process_job(multi, data_dir)
  for rc, text in again:
    assert rc == 0, text[-4000:]
  assert "Resuming from step 10" in again[0][1]
  for i in range(2):
    final = json.loads((multi / f"proc{i}.json").read_text())["final"]
    assert final["ema"] == first[i]["ema"] and final["raw"] == first[i]["raw"]
  del results
