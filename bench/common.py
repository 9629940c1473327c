"""Shared pieces of the benchmarks: interleaved timing, medians, tables, machine description.

Every benchmark compares two or more implementations inside one run. The machine may be shared,
so candidates are timed round-robin (A, B, A, B, ...) and each reports its median: a load spike
then hits every candidate alike instead of whichever ran during it.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from typing import Callable, Sequence

# OpenMP peers (faiss, PyTorch, scikit-learn) spin while idle by default; on a machine shared
# with other jobs that spinning made faiss ~10x slower per k-means iteration than with
# OMP_WAIT_POLICY=PASSIVE. Passive waiting is the peers' better setting here, so it is the
# default (read when OpenMP starts: this module is imported before any peer). Override by
# setting the variable yourself. JAX (XLA:CPU) does not use OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python bench/x.py` from the repository root imports aplt_jax.
  sys.path.insert(0, ROOT)


def timed(fn: Callable[[], object]) -> float:
  """Wall seconds of one call of `fn` (which must block until its result is ready)."""
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int,
                warmup: int = 1) -> dict[str, list[float]]:
  """Times each candidate `repeats` times, round-robin, after `warmup` untimed rounds.

  Returns name -> list of wall seconds (one per round).
  """
  for _ in range(warmup):
    for fn in candidates.values():
      fn()
  out: dict[str, list[float]] = {name: [] for name in candidates}
  for _ in range(repeats):
    for name, fn in candidates.items():
      out[name].append(timed(fn))
  return out


def median(xs: Sequence[float]) -> float:
  return float(statistics.median(xs))


def spread(xs: Sequence[float]) -> str:
  """'min-max' of a list of seconds, for the tables (shows how noisy the machine was)."""
  return f"{min(xs):.3g}-{max(xs):.3g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  """A GitHub-markdown table (also readable as plain text)."""
  cells = [[str(h) for h in headers]] + [[_fmt(v) for v in r] for r in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
  line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
  sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
  return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _fmt(v: object) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return str(v)


def machine() -> str:
  """One line: date, CPU model and count, load average, Python and JAX versions."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = f"{names[0]} x{len(names)}" if names else cpu
  except OSError:
    pass
  load = "n/a"
  if hasattr(os, "getloadavg"):
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
  import jax  # pylint: disable=g-import-not-at-top
  return (f"{datetime.datetime.now().isoformat(timespec='minutes')} | {cpu} | "
          f"{os.cpu_count()} logical CPUs | load avg {load} | Python {platform.python_version()} "
          f"| jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()} device(s))")


def header(title: str, command: str) -> None:
  """Prints the benchmark's title, the command that reproduces it and the machine line."""
  print(f"## {title}\n")
  print(f"`{command}`\n")
  print(f"{machine()} | OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}\n", flush=True)
