"""Accelerator benchmark, one command: train-step clips/s and MFU for TSM-ResNet-50 at 8x224^2
(bfloat16 compute, float32 master weights, donated state), k-means at N = 1M, d = 512, and the
end-to-end MA-52 step fed by the trainer's input pipeline.

    python bench/gpu.py            # on a machine with JAX for CUDA (or TPU); < 10 minutes
    python bench/gpu.py --smoke    # tiny shapes, any backend (what the test suite runs)

Needs no network and no files. The model and k-means inputs are generated on the device. The
end-to-end part prepares `--e2e_clips` generated clips at MA-52's stored shape (16x256x224x3
uint8, `clips.py`, in a temporary folder), then runs `configs/ma52.py`'s own online APLT step
(B = `--e2e_batch` labeled + 2B unlabeled clips, four views, bf16) fed by the trainer's own
`TrainBatches` (`--read_workers` Grain processes x `--read_threads` threads, batched ArrayRecord
reads, host-to-device): seconds per step end to end against the same step on a batch already
on the device, so the input pipeline's share shows directly. Model FLOP utilisation
(MFU) = XLA's FLOP count of one compiled train step x steps per second / the chip's peak dense
bf16 FLOP/s, looked up from `jax.devices()[0].device_kind` (override with `--peak_tflops`; on
an unknown chip MFU is left out). Step times are the median of `--steps` timed steps after two
untimed ones; k-means time per iteration is the marginal cost ((T(iters) - T(1)) / (iters - 1)).
`--json PATH` also writes the results as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top
import model_step  # noqa: E402  pylint: disable=g-import-not-at-top

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from aplt_jax import config_check  # noqa: E402
from aplt_jax import kmeans  # noqa: E402
from aplt_jax import parallel  # noqa: E402
from aplt_jax import train  # noqa: E402

# Peak dense bfloat16 TFLOP/s per chip (vendor datasheets, without sparsity), by device_kind.
PEAK_BF16_TFLOPS = {
    "H200": 989.0, "H100": 989.0, "H800": 989.0, "GH200": 989.0, "B200": 2250.0,
    "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0,
    "V100": 125.0, "RTX 4090": 165.0, "TPU v4": 275.0, "TPU v5 lite": 197.0,
    "TPU v5e": 197.0, "TPU v5p": 459.0, "TPU v6 lite": 918.0, "TPU v6e": 918.0,
}

SMOKE = dict(depth=50, width_mult=0.125, batch=2, frames=2, size=32, steps=2, kmeans_n=2048,
             kmeans_d=16, kmeans_k=4, kmeans_iters=3, e2e_batch=2, e2e_clips=24, e2e_steps=3,
             e2e_video=dict(num_frames=2, frames_per_segment=1, height=32, width=32),
             e2e_model="tsm_resnet10")  # the smallest: the trainer's four-view step compiles slowly
FULL = dict(depth=50, width_mult=1.0, batch=32, frames=8, size=224, steps=20,
            kmeans_n=1_000_000, kmeans_d=512, kmeans_k=52, kmeans_iters=20, e2e_batch=8,
            e2e_clips=256, e2e_steps=20, e2e_video=None, e2e_model=None)  # None: configs/ma52.py's
E2E_CLASSES = 8


def peak_tflops(device_kind: str) -> float | None:
  """The table's entry whose name occurs in `device_kind` (longest match), else None."""
  hits = [k for k in PEAK_BF16_TFLOPS if k.lower() in device_kind.lower()]
  return PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else None


def train_step_bench(depth, width_mult, batch, frames, size, steps, dtype) -> dict:
  t0 = time.perf_counter()
  ms = model_step.build(depth, batch=batch, frames=frames, size=size, width_mult=width_mult,
                        dtype=dtype)
  x, y = ms.batch(0)
  step, flops = model_step.compile_with_flops(ms, x, y)
  state = ms.state
  for _ in range(2):  # untimed warm steps
    state, loss = step(state, x, y)
  jax.block_until_ready(loss)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, loss = step(state, x, y)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - t)
  if not bool(jnp.isfinite(loss)):
    raise FloatingPointError(f"non-finite loss {float(loss)} in the benchmark step")
  sec = common.median(times)
  return {"model": f"tsm_resnet{depth} x{width_mult:g}", "dtype": dtype,
          "input": f"{batch}x{frames}x{size}x{size}x3", "params_M": ms.num_params / 1e6,
          "step_s": sec, "clips_per_s": batch / sec, "step_flops": flops,
          "achieved_tflops": flops / sec / 1e12, "setup_s": compile_s}


def kmeans_bench(n, d, k, iters) -> dict:
  key = jax.random.key(0)
  kx, kc = jax.random.split(key)
  means = 0.35 * jax.random.normal(kc, (k, d), jnp.float32)
  x = means[jax.random.randint(kx, (n,), 0, k)] + jax.random.normal(kx, (n, d), jnp.float32)
  init = x[:k]
  valid = jnp.ones((n,), bool)
  labels = jnp.where(jnp.arange(n) % 10 == 0, jnp.arange(n) % k, -1).astype(jnp.int32)
  out = {}
  for mode, run in (
      ("euclidean", lambda it: kmeans.jit_euclidean_kmeans(x, init, valid, max_iter=it,
                                                           tol=0.0)),
      ("spherical", lambda it: kmeans.jit_spherical_kmeans(x, labels, valid, k, max_iter=it,
                                                           tol=0.0))):
    jax.block_until_ready(run(1))
    jax.block_until_ready(run(iters))  # both shapes compiled before timing
    t1 = common.median([common.timed(lambda: jax.block_until_ready(run(1))) for _ in range(3)])
    tn = common.median([common.timed(lambda: jax.block_until_ready(run(iters)))
                        for _ in range(3)])
    out[mode] = {"run_s": tn, "s_per_iter": max(tn - t1, 0.0) / max(iters - 1, 1)}
  return {"n": n, "d": d, "k": k, "iters": iters, **out}


def e2e_config(data_dir: str, cfg: dict, threads: int, workers: int):
  """configs/ma52.py on the generated clips; the model and clips shrunk in `--smoke` only."""
  from configs import ma52  # pylint: disable=g-import-not-at-top
  c = ma52.get_config()
  c.data.data_dir, c.data.num_classes = data_dir, E2E_CLASSES
  c.data.read_threads, c.data.read_workers, c.data.prefetch = threads, workers, 2
  c.batch_size = cfg["e2e_batch"]
  c.progress = False
  if cfg["e2e_video"]:
    c.data.video.update(cfg["e2e_video"])
    c.model.name, c.model.width_mult = cfg["e2e_model"], cfg["width_mult"]
    c.model.image_size = cfg["size"]
  return c


def e2e_bench(cfg: dict, threads: int, workers: int) -> dict:
  """Seconds per online step fed by the trainer's pipeline, and on a batch held on the device."""
  import clips  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from aplt_jax.data import video as video_lib  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()  # Grain's worker processes read absl flags
  with tempfile.TemporaryDirectory() as root:
    c = e2e_config(os.path.join(root, "data"), cfg, threads, workers)
    params = video_lib.params_from_config(c.data)
    t = time.perf_counter()
    clips.prepare_generated(c.data.data_dir, params, num_train=cfg["e2e_clips"], num_val=8,
                            num_classes=E2E_CLASSES)
    prep_s = time.perf_counter() - t
    config_check.check_config(c)
    run = train.Run(c, os.path.join(root, "workdir"))
    batches = run.batches[run.method.uses_unlabeled]
    state, protos = run.init_state()
    n, warm = cfg["e2e_steps"], 2
    t = time.perf_counter()
    times, first = [], None
    for step, local in batches.iterate(0, warm + n):
      if step == warm:  # compiled, pipeline running: time from here
        jax.block_until_ready(metrics)
        t0 = time.perf_counter()
      b = parallel.global_batch(run.mesh, local)
      state, metrics = run.online_step(state, b, protos)
      if first is None:
        jax.block_until_ready(metrics)
        first = time.perf_counter() - t
    jax.block_until_ready(metrics)
    e2e = (time.perf_counter() - t0) / n
    for _ in range(n):  # the same step on the last batch, already on the device
      t = time.perf_counter()
      state, metrics = run.online_step(state, b, protos)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - t)
    loss = float(metrics["loss"])
  if not np.isfinite(loss):
    raise FloatingPointError(f"non-finite loss {loss} in the end-to-end step")
  step_s = common.median(times)
  per_step = c.batch_size * (1 + c.uratio)
  return {"config": "configs/ma52.py", "model": f"{c.model.name} x{c.model.width_mult:g}",
          "clip": "x".join(map(str, params.spec.shape)), "batch": f"{c.batch_size}+"
          f"{c.uratio * c.batch_size}", "read": f"{workers} workers x {threads} threads",
          "e2e_step_s": e2e, "step_alone_s": step_s, "e2e_clips_per_s": per_step / e2e,
          "input_bound": max(0.0, 1 - step_s / e2e), "first_step_s": first,
          "prepare_s": prep_s, "clips": cfg["e2e_clips"]}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--smoke", action="store_true", help="tiny shapes (CPU test of this script)")
  p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  p.add_argument("--batch", type=int)
  p.add_argument("--steps", type=int)
  p.add_argument("--kmeans_n", type=int)
  p.add_argument("--peak_tflops", type=float, help="chip peak dense TFLOP/s for the dtype")
  p.add_argument("--e2e_batch", type=int, help="end-to-end: labeled clips per step (+2x unl.)")
  p.add_argument("--e2e_clips", type=int, help="end-to-end: generated training clips")
  cores = os.cpu_count() or 1
  p.add_argument("--read_workers", type=int, default=None,
                 help="end-to-end: Grain worker processes (default: cores - 2 past 4 cores)")
  p.add_argument("--read_threads", type=int, default=2, help="end-to-end: threads per reader")
  p.add_argument("--json", help="also write the results here")
  a = p.parse_args(argv)
  cfg = dict(SMOKE if a.smoke else FULL)
  for key in ("batch", "steps", "kmeans_n", "e2e_batch", "e2e_clips"):
    if getattr(a, key) is not None:
      cfg[key] = getattr(a, key)
  common.header("Accelerator benchmark", "python bench/gpu.py " + " ".join(
      sys.argv[1:] if argv is None else argv))
  dev = jax.devices()[0]
  print(f"device: {dev.device_kind} ({dev.platform}), {jax.device_count()} device(s)\n",
        flush=True)
  t0 = time.perf_counter()
  ts = train_step_bench(cfg["depth"], cfg["width_mult"], cfg["batch"], cfg["frames"],
                        cfg["size"], cfg["steps"], a.dtype)
  peak = a.peak_tflops or peak_tflops(dev.device_kind)
  ts["peak_tflops"] = peak
  ts["mfu"] = ts["achieved_tflops"] / peak if peak else None
  print(common.table(
      ["model", "dtype", "input B x T x S^2", "params (M)", "s/step", "clips/s",
       "TFLOP/step", "TFLOP/s", "MFU"],
      [[ts["model"], ts["dtype"], ts["input"], ts["params_M"], ts["step_s"], ts["clips_per_s"],
        ts["step_flops"] / 1e12, ts["achieved_tflops"],
        f"{100 * ts['mfu']:.1f}%" if ts["mfu"] is not None else "n/a (unknown peak)"]]))
  print(flush=True)
  km = kmeans_bench(cfg["kmeans_n"], cfg["kmeans_d"], cfg["kmeans_k"], cfg["kmeans_iters"])
  print(common.table(
      ["k-means mode", "N", "d", "K", "iterations", "s/run", "s/iter"],
      [[m, km["n"], km["d"], km["k"], km["iters"], km[m]["run_s"], km[m]["s_per_iter"]]
       for m in ("euclidean", "spherical")]))
  print(flush=True)
  workers = a.read_workers if a.read_workers is not None else (
      cores - 2 if cores > 4 and not a.smoke else 0)
  e2e = e2e_bench(cfg, a.read_threads, workers)
  print(f"end to end: {e2e['clips']} generated clips prepared in {e2e['prepare_s']:.0f} s; first "
        f"step (compile) {e2e['first_step_s']:.1f} s; {cores} host cores\n")
  print(common.table(
      ["config", "model", "stored clip", "B + unlabeled", "read", "s/step end to end",
       "s/step on device batch", "clips/s end to end", "input-bound share"],
      [[e2e["config"], e2e["model"], e2e["clip"], e2e["batch"], e2e["read"], e2e["e2e_step_s"],
        e2e["step_alone_s"], e2e["e2e_clips_per_s"], f"{100 * e2e['input_bound']:.0f}%"]]))
  total = time.perf_counter() - t0
  print(f"\ntotal {total:.1f} s", flush=True)
  if a.json:
    with open(a.json, "w") as f:
      json.dump({"device": dev.device_kind, "train_step": ts, "kmeans": km, "end_to_end": e2e,
                 "total_s": total}, f, indent=1)


if __name__ == "__main__":
  main()
