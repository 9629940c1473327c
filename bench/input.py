"""Input pipeline: clips per second it delivers against clips per second the train step consumes.

    python bench/input.py [--preset demo ma52] [--steps 60] [--repeats 3]
    python bench/input.py --preset ma52_full [--clips 192] [--step_time 0.1] [--encoding bytes]

The pipeline is the trainer's own (`loader.TrainBatches`: Grain threads read the step's labeled
and unlabeled clips from ArrayRecord, stack them, and `parallel.global_batch` hands them to the
devices); augmentation runs on the device inside the train step, so it is timed with the step.
The consumer is the trainer's jitted online APLT step (four views, forward, backward, update)
fed with batches read beforehand. Both count clips as the loader delivers them
(B labeled + mu*B unlabeled per step). The two are timed alternately, `--repeats` times each;
cells are medians. Target: pipeline / step >= 2.

`ma52_full` measures the pipeline alone at MA-52's real stored shape (16x256x224x3 uint8, from
configs/ma52.py) on generated clips prepared in MA-52's format (`clips.py`): clips/s and MB/s
with 1, 2 and all read threads, each also per CPU-second the process used (user + sys: the
per-core rate, meaningful on a shared machine too), against the rate an accelerator needs
(clips per step / `--step_time`). Then the cost per clip of each stage on one thread: ArrayRecord
read (with decompression; decompression alone = compressed - uncompressed read of the same
records), decoding the stored record to numpy, stacking the batch, host-to-device copy.
`--encoding` compares stored formats of the clip ("bytes": as `prepare` stores it; "varint": as
builder version 1.0.0 did, one int64 per pixel).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top
import runs  # noqa: E402  pylint: disable=g-import-not-at-top

import jax  # noqa: E402
import numpy as np  # noqa: E402

from aplt_jax import config_check  # noqa: E402
from aplt_jax import parallel  # noqa: E402
from aplt_jax import train  # noqa: E402


def measure(config, steps: int, repeats: int) -> dict:
  config_check.check_config(config)
  with tempfile.TemporaryDirectory() as workdir:
    run = train.Run(config, workdir)
    batches = run.batches[run.method.uses_unlabeled]
    clips_per_step = config.batch_size * (1 + config.uratio)
    state, protos = run.init_state()
    held = [parallel.global_batch(run.mesh, b) for _, b in batches.iterate(0, steps)]
    box = {"state": state, "start": 0}

    def read():
      start = box["start"] = box["start"] + steps  # fresh steps: nothing cached
      for _, local in batches.iterate(start, start + steps):
        jax.block_until_ready(parallel.global_batch(run.mesh, local))

    def compute():
      for b in held:
        box["state"], metrics = run.online_step(box["state"], b, protos)
      jax.block_until_ready(metrics)

    compute()  # compile
    times = common.interleaved({"input": read, "step": compute}, repeats, warmup=0)
  return {k: steps * clips_per_step / common.median(v) for k, v in times.items()} | {
      "spread": {k: common.spread(v) for k, v in times.items()}, "clips_per_step": clips_per_step,
      "threads": config.data.read_threads}


def _cpu_seconds() -> float:
  """User + sys seconds of this process (all its threads)."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


GENERATED_CLASSES = 8  # few, so a few hundred clips give every class labeled clips


def full_size_config(data_dir: str, threads: int):
  from configs import ma52  # pylint: disable=g-import-not-at-top
  c = ma52.get_config()
  c.data.data_dir = data_dir
  c.data.num_classes = GENERATED_CLASSES
  c.data.read_threads = threads
  c.data.prefetch = max(2, threads)
  c.progress = False
  return c


def measure_full(builder, threads: int, steps: int, workers: int = 0) -> dict:
  """Wall and CPU seconds of the trainer's TrainBatches over `steps` fresh steps.

  The trainer opens MA-52 through `video_lib.VIDEO_BUILDERS['ma52']`; that entry is the
  generated builder meanwhile, so a stored format other than the builder's own reads back too.
  """
  from aplt_jax.data import video as video_lib  # pylint: disable=g-import-not-at-top
  c = full_size_config(os.fspath(builder.data_dir_root), threads)
  c.data.read_workers = workers
  config_check.check_config(c)
  own = video_lib.VIDEO_BUILDERS["ma52"]
  video_lib.VIDEO_BUILDERS["ma52"] = type(builder)
  try:
    with tempfile.TemporaryDirectory() as workdir:
      return _measure_run(train.Run(c, workdir), steps)
  finally:
    video_lib.VIDEO_BUILDERS["ma52"] = own


def _measure_run(run, steps: int) -> dict:
  batches = run.batches[run.method.uses_unlabeled]
  it = batches.iterate(0, 1 + steps)
  next(it)  # open files, start workers, warm caches: not timed
  t, cpu = time.perf_counter(), _cpu_seconds()
  n = 0
  for _, b in it:
    n += len(b["labeled"]["x"]) + len(b["unlabeled"]["x"])
  wall = time.perf_counter() - t
  # Worker processes' CPU time is only known once they exit, and then includes their start-up.
  return {"clips": n, "wall": wall,
          "cpu": float("nan") if batches.workers else _cpu_seconds() - cpu}


def stage_costs(builder, batch: int, repeats: int) -> dict:
  """CPU seconds per clip of each stage on one thread, medians of `repeats` batches of `batch`.

  CPU time (the process's, so helper threads count) rather than wall time: a stage's cost per
  core, unaffected by other jobs on a shared machine.
  """
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  raw = builder.as_data_source("train").data_source  # the ArrayRecord source (bytes)
  features = builder.info.features
  n = len(raw)
  # The same records uncompressed, to split read from decompression.
  tmp = tempfile.mkdtemp()
  path = os.path.join(tmp, "uncompressed.array_record")
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1,uncompressed")
  for i in range(n):
    writer.write(raw[i])
  writer.close()
  plain = array_record_data_source.ArrayRecordDataSource([path])
  gen = np.random.default_rng(0)
  batches = [gen.choice(n, batch).tolist() for _ in range(repeats)]
  out = {k: [] for k in ("read", "read_uncompressed", "decode", "stack", "to_device")}
  for idx in batches:
    t = time.process_time()
    recs = [raw[i] for i in idx]
    out["read"].append(time.process_time() - t)
    t = time.process_time()
    _ = [plain[i] for i in idx]
    out["read_uncompressed"].append(time.process_time() - t)
    t = time.process_time()
    clips = [features.deserialize_example_np(r)["video"] for r in recs]
    out["decode"].append(time.process_time() - t)
    t = time.process_time()
    x = np.stack(clips)
    out["stack"].append(time.process_time() - t)
    t = time.process_time()
    jax.block_until_ready(jax.device_put(x))
    out["to_device"].append(time.process_time() - t)
  os.remove(path)
  os.rmdir(tmp)
  per = {k: common.median(v) / batch for k, v in out.items()}
  per["decompress"] = max(0.0, per["read"] - per["read_uncompressed"])
  per["stored_mb"] = sum(len(raw[i]) for i in range(min(n, 8))) / min(n, 8) / 1e6
  return per


def main_full(a) -> None:
  import clips  # noqa: E402  pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()  # Grain's worker processes read absl flags
  from aplt_jax.data import video as video_lib  # pylint: disable=g-import-not-at-top
  c = full_size_config("", 1)
  v = c.data.video
  params = video_lib.VideoParams(num_frames=v.num_frames,
                                 frames_per_segment=v.frames_per_segment, height=v.height,
                                 width=v.width)
  shape = params.spec.shape
  clip_mb = int(np.prod(shape)) / 1e6
  per_step = c.batch_size * (1 + c.uratio)
  need = per_step / a.step_time
  cores = os.cpu_count() or 1
  print(f"configs/ma52.py: {per_step} stored clips per step ({c.batch_size} labeled + "
        f"{c.batch_size * c.uratio} unlabeled), clip {'x'.join(map(str, shape))} uint8 = "
        f"{clip_mb:.2f} MB. At {a.step_time} s per step the accelerator needs {need:.0f} clips/s "
        f"({need * clip_mb:.0f} MB/s): {need / 16:.0f} clips/s per core on a 16-core host, "
        f"{2 * need / 16:.0f} with 2x margin (the target).\n")
  threads = sorted({1, 2, cores} if cores > 1 else {1})
  rows, stage_rows = [], []
  root = a.data_dir or tempfile.mkdtemp(prefix="aplt_full_input_")
  for enc in a.encoding:
    data_dir = os.path.join(root, f"enc_{enc}")
    t = time.perf_counter()
    builder = clips.prepare_generated(data_dir, params, num_train=a.clips, num_val=8,
                                      num_classes=GENERATED_CLASSES, encoding=enc)
    print(f"[{enc}] {a.clips} generated clips ready in {time.perf_counter() - t:.0f} s "
          f"({data_dir})", flush=True)
    for n, w in [(n, 0) for n in threads] + [(1, w) for w in a.workers]:
      r = measure_full(builder, n, a.steps, w)
      rows.append([enc, f"{w} x {n}" if w else n, r["clips"], r["clips"] / r["wall"], r["clips"] * clip_mb / r["wall"],
                   r["clips"] / r["cpu"], r["clips"] * clip_mb / r["cpu"],
                   r["clips"] / r["cpu"] / (2 * need / 16)])
      print(f"  workers={w} threads={n}: {r['clips'] / r['wall']:.1f} clips/s wall, "
            f"{r['clips'] / r['cpu']:.1f} clips per CPU-second", flush=True)
    s = stage_costs(builder, a.stage_batch, a.repeats)
    total = s["read"] + s["decode"] + s["stack"]
    stage_rows.append([enc, s["stored_mb"], 1e3 * s["read_uncompressed"], 1e3 * s["decompress"],
                       1e3 * s["decode"], 1e3 * s["stack"], 1e3 * total, 1 / total,
                       1e3 * s["to_device"]])
  print()
  print(common.table(["stored as", "threads (or workers x threads)", "clips", "clips/s (wall)", "MB/s (wall)",
                      "clips per CPU-s (per core)", "MB per CPU-s",
                      f"per core / target {2 * need / 16:.0f}"], rows))
  print(f"\nCPU ms per clip, one thread, median of {a.repeats} batches of {a.stage_batch}:\n")
  print(common.table(["stored as", "stored MB/clip", "read (uncompressed)", "decompress",
                      "decode to numpy", "stack", "host total", "host clips/s per core",
                      "host-to-device"], stage_rows))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--preset", nargs="+", default=["demo", "ma52"])
  p.add_argument("--steps", type=int, default=60)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--data_dir", default="", help="TFDS data_dir ('' = ~/tensorflow_datasets; "
                 "ma52_full: where the generated clips are kept, '' = a temporary folder)")
  p.add_argument("--clips", type=int, default=128, help="ma52_full: generated training clips")
  p.add_argument("--step_time", type=float, default=0.1,
                 help="ma52_full: accelerator seconds per step (0.1: an H200 at ~40%% MFU)")
  p.add_argument("--encoding", nargs="+", default=["bytes"], choices=["bytes", "varint"],
                 help="ma52_full: stored formats of the clip to compare")
  p.add_argument("--stage_batch", type=int, default=16)
  p.add_argument("--workers", type=int, nargs="*", default=[],
                 help="ma52_full: also Grain worker-process counts to measure (1 thread each)")
  a = p.parse_args(argv)
  common.header("Input pipeline vs train step",
                "python bench/input.py " + " ".join(sys.argv[1:] if argv is None else argv))
  if a.preset == ["ma52_full"]:
    return main_full(a)
  rows = []
  for preset in a.preset:
    c = runs.config_for(preset, 0.125 if preset == "ma52" else 1.0, a.data_dir)
    r = measure(c, a.steps, a.repeats)
    s = c.data.synthetic
    rows.append([preset, f"{c.batch_size}+{c.batch_size * c.uratio}",
                 f"{s.num_frames}x{s.size}x{s.size}", r["threads"], r["input"],
                 r["spread"]["input"], r["step"], r["spread"]["step"], r["input"] / r["step"]])
  print(f"{a.steps} steps per timing, median of {a.repeats}; clips/s counts labeled + "
        "unlabeled clips read per step.\n")
  print(common.table(["config", "clips/step", "clip", "read threads", "input clips/s",
                      "input s min-max", "step clips/s", "step s min-max",
                      "input/step (target >= 2)"], rows))


if __name__ == "__main__":
  main()
