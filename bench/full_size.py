"""Full-size rehearsal: a real MA config (TSM-ResNet-50, bf16, 224 px, stored 16x256x224x3 clips)
trained end to end for a few steps on generated clips, with a small batch, on any machine.

    python bench/full_size.py [--config configs/ma52.py] [--batch 2] [--per_class 3]

Prepares `--per_class` generated clips per class in the MA-52 format (`clips.py`; `--classes`
classes, fewer than MA-52's 52 to keep it short: the model and clips are full size), then runs
the trainer (`train.Run`) for 1 supervised warm-up step and one round: the offline phase
(embedding every training clip, clustering, thresholds) and 2 online APLT steps, then the final
evaluation. Prints the first call of each step (compile + step) and the later ones, each phase's
seconds and the peak host memory (max RSS).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top  (first: puts the root on the path)
import clips  # noqa: E402  pylint: disable=g-import-not-at-top
import runs  # noqa: E402  pylint: disable=g-import-not-at-top

import jax  # noqa: E402

from aplt_jax import config_check  # noqa: E402
from aplt_jax.data import video as video_lib  # noqa: E402


def _timed(fn, log: list):
  def call(*args):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    log.append(time.perf_counter() - t)
    return out
  return call


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="configs/ma52.py")
  p.add_argument("--batch", type=int, default=1, help="labeled clips per step (mu*B unlabeled)")
  p.add_argument("--per_class", type=int, default=3)
  p.add_argument("--classes", type=int, default=8)
  p.add_argument("--data_dir", default="", help="where the generated clips are kept")
  a = p.parse_args(argv)
  common.header("Full-size rehearsal",
                "python bench/full_size.py " + " ".join(sys.argv[1:] if argv is None else argv))
  spec = importlib.util.spec_from_file_location("rehearsal_config", a.config)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config("aplt")
  v = c.data.video
  params = video_lib.VideoParams(num_frames=v.num_frames,
                                 frames_per_segment=v.frames_per_segment, height=v.height,
                                 width=v.width)
  data_dir = a.data_dir or tempfile.mkdtemp(prefix="aplt_full_size_")
  t = time.perf_counter()
  clips.prepare_generated(data_dir, params, num_train=a.per_class * a.classes,
                          num_val=a.classes, num_classes=a.classes)
  prep = time.perf_counter() - t
  c.data.data_dir = data_dir
  c.data.num_classes = a.classes
  c.data.labeled_ratio, c.data.labels_per_class = None, 1
  c.batch_size, c.eval.batch_size = a.batch, 2 * a.batch
  c.total_steps, c.warmup_steps, c.steps_per_round = 3, 1, 2
  c.eval.every_steps = c.checkpoint_every = 1000
  c.log_every = 1
  c.progress = False
  config_check.check_config(c)
  with tempfile.TemporaryDirectory() as workdir:
    run = runs.TimedRun(c, workdir, rounds=1)
    if a.classes != 52:  # MA-52's protocol metrics (body parts) need its 52 classes
      run.dataset = dataclasses.replace(run.dataset, evaluate_extra=None)
    warm, online = [], []
    run.warmup_step = _timed(run.warmup_step, warm)
    run.online_step = _timed(run.online_step, online)
    t = time.perf_counter()
    seconds = run.run_rounds()
    total = time.perf_counter() - t
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
  print(f"{a.config}: {c.model.name}, {c.model.dtype}, clips {'x'.join(map(str, params.spec.shape))}"
        f" uint8, B = {a.batch} + {c.uratio * a.batch}; {a.per_class * a.classes} training clips "
        f"({a.classes} classes), generated in {prep:.0f} s\n")
  rows = [["warm-up step, first call (compile + step)", warm[0] if warm else float("nan")],
          ["online step, first call (compile + step)", online[0] if online else float("nan")],
          ["online step, later calls (median)",
           common.median(online[1:]) if len(online) > 1 else float("nan")]]
  rows += [[f"round {r} {phase} (whole phase)", s] for (r, phase), s in sorted(seconds.items())]
  rows += [["whole run (after data)", total], ["peak host memory, GiB (max RSS)", rss]]
  print(common.table(["what", "seconds"], rows))


if __name__ == "__main__":
  main()
