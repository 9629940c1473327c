"""Offline phase: its wall time as a fraction of a round, at the demo and an MA-52-like config.

    python bench/offline.py [--scales 0.0625 0.125] [--rounds 2]

Each setting trains for real (`bench/runs.py`: `train.Run` with a stopwatch per phase) through
the warm-up and `--rounds` rounds; the table shows the last round, whose functions are all
compiled. A round = offline phase (embed every clip, k-means, thresholds, prototypes) + the
online steps + the end-of-round evaluation + checkpoint saves.

MA-52-like: MA-52's split sizes and schedule (11,250 training clips, 10% labeled, four weak views
per labeled clip, B = 32, mu = 2, one pass over the unlabeled clips per round, the 5,586-clip
validation split evaluated each round) times `scale`, on the demo's CPU model. Both phases grow
linearly with the clip count, so the fraction is fitted as a line in N over the scales and
extrapolated to the full 11,250 clips; k-means is then timed on its own at MA-52's full size
(15,750 points, d = 2048 for TSM-ResNet-50, K = 52, all 100 iterations: an upper bound) and
added to the extrapolated offline time.
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from aplt_jax import config_check  # noqa: E402
from aplt_jax import kmeans  # noqa: E402

PHASES = ("offline", "steps", "eval", "checkpoint")


def measure(config, rounds: int) -> tuple[dict[str, float], dict]:
  """Trains `config` through `rounds` rounds; returns the last round's phase seconds + info."""
  config_check.check_config(config)
  with tempfile.TemporaryDirectory() as workdir:
    run = runs.TimedRun(config, workdir, rounds)
    secs = run.run_rounds()
    info = {"train": len(run.dataset.train_labels), "labeled": len(run.labeled),
            "steps": run.schedule.per_round, "eval": len(run.dataset.eval_labels)}
  return runs.round_breakdown(secs, rounds), info


def kmeans_upper_bound(n: int, d: int, k: int, labeled_frac: float, iters: int = 100) -> float:
  """Seconds of one semi-supervised spherical k-means run of exactly `iters` iterations."""
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.standard_normal((n, d), dtype=np.float32))
  labels = np.full(n, -1, np.int32)
  lab = rng.random(n) < labeled_frac
  labels[lab] = rng.integers(0, k, lab.sum())
  labels[:k] = np.arange(k)
  labels, valid = jnp.asarray(labels), jnp.ones(n, bool)
  run = lambda: jax.block_until_ready(
      kmeans.jit_spherical_kmeans(z, labels, valid, k, max_iter=iters, tol=0.0))
  run()
  return common.median([common.timed(run) for _ in range(3)])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--scales", type=float, nargs="+", default=[0.0625, 0.125])
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--data_dir", default="", help="TFDS data_dir ('' = ~/tensorflow_datasets)")
  a = p.parse_args(argv)
  common.header("Offline phase as a fraction of a round",
                "python bench/offline.py " + " ".join(sys.argv[1:] if argv is None else argv))
  settings = [("demo", 1.0)] + [("ma52", s) for s in a.scales]
  rows, fits = [], []
  for preset, scale in settings:
    parts, info = measure(runs.config_for(preset, scale, a.data_dir), a.rounds)
    frac = parts["offline"] / parts["round"]
    name = "demo" if preset == "demo" else f"MA-52-like x{scale:g}"
    rows.append([name, info["train"], info["labeled"], info["steps"], info["eval"],
                 *[parts.get(ph, 0.0) for ph in PHASES], parts["round"], f"{100 * frac:.1f}%"])
    if preset == "ma52":
      fits.append((info["train"], parts["offline"], parts["round"] - parts["offline"]))
    print(f"  measured {name}: {parts}", flush=True)
  print()
  print(common.table(["setting", "train clips", "labeled", "steps/round", "eval clips",
                      "offline s", "online steps s", "eval s", "checkpoint s", "round s",
                      "offline share (target <= 20%)"], rows))
  if len(fits) >= 2:
    n, off, rest = map(np.asarray, zip(*fits))
    off_fit, rest_fit = np.polyfit(n, off, 1), np.polyfit(n, rest, 1)
    full = runs.MA52_TRAIN
    off_full, rest_full = np.polyval(off_fit, full), np.polyval(rest_fit, full)
    km = kmeans_upper_bound(15_750, 2048, 52, labeled_frac=5 * 0.1 / 1.4)
    print("\nLinear fits in the number of training clips N (seconds = a*N + b):")
    print(common.table(
        ["part", "a (s/clip)", "b (s)", f"at N = {full}"],
        [["offline", off_fit[0], off_fit[1], off_full],
         ["rest of the round", rest_fit[0], rest_fit[1], rest_full],
         ["k-means alone, N=15,750 d=2048 K=52, 100 it", "", "", km]]))
    share = (off_full + km) / (off_full + km + rest_full)
    print(f"\nExtrapolated MA-52-like round on this CPU model, with full-size k-means added to "
          f"the offline part: offline share {100 * share:.1f}% (target <= 20%).")


if __name__ == "__main__":
  main()
