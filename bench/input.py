"""Input pipeline: clips per second it delivers against clips per second the train step consumes.

    python bench/input.py [--preset demo ma52] [--steps 60] [--repeats 3]

The pipeline is the trainer's own (`loader.TrainBatches`: Grain threads read the step's labeled
and unlabeled clips from ArrayRecord, stack them, and `parallel.global_batch` hands them to the
devices); augmentation runs on the device inside the train step, so it is timed with the step.
The consumer is the trainer's jitted online APLT step (four views, forward, backward, update)
fed with batches read beforehand. Both count clips as the loader delivers them
(B labeled + mu*B unlabeled per step). The two are timed alternately, `--repeats` times each;
cells are medians. Target: pipeline / step >= 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top
import runs  # noqa: E402  pylint: disable=g-import-not-at-top

import jax  # noqa: E402

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


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--preset", nargs="+", default=["demo", "ma52"])
  p.add_argument("--steps", type=int, default=60)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--data_dir", default="", help="TFDS data_dir ('' = ~/tensorflow_datasets)")
  a = p.parse_args(argv)
  common.header("Input pipeline vs train step",
                "python bench/input.py " + " ".join(sys.argv[1:] if argv is None else argv))
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
