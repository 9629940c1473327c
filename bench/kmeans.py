"""k-means: aplt_jax against faiss-cpu and scikit-learn, same data, same init, same machine.

    python bench/kmeans.py [--n 10000 100000] [--d 512] [--k 52] [--iters 20] [--repeats 3]

Our k-means in its Euclidean unconstrained mode (`kmeans.jit_euclidean_kmeans`, tol 0 so it
runs every iteration) against `faiss.Kmeans` (with `max_points_per_centroid` raised to N, so it
clusters every point instead of a 256-per-centroid sample) and scikit-learn's Lloyd `KMeans`,
all started from the same K data points. Our semi-supervised spherical mode (the offline phase's
clustering, 10% of the points clamped to their class) is timed beside them, with nearest-centre
and with Sinkhorn-balanced assignment (`aplt.assign=balanced`).

Per-iteration time is the marginal cost: (time of an `iters`-iteration run - time of a
1-iteration run) / (iters - 1), so one-off costs (sklearn's input checks, faiss's index build,
the final assignment) are not spread over the iterations. Runs are interleaved round-robin;
cells use the median of `repeats` runs, and the minimum is shown beside it (on a shared
machine, load only ever adds time). The final objective (sum of squared distances to the
nearest final centre) is recomputed the same way, in float64, for every Euclidean method.
Needs `pip install -r bench/requirements.txt` (faiss-cpu).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from aplt_jax import kmeans  # noqa: E402


def make_data(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A Gaussian mixture with overlapping components (Lloyd keeps moving for many iterations).

  Returns x [n, d] float32, the component of each point [n] int32, init [k, d] (k data points).
  """
  rng = np.random.default_rng(seed)
  means = rng.standard_normal((k, d)).astype(np.float32) * 0.35
  truth = rng.integers(0, k, n).astype(np.int32)
  x = means[truth] + rng.standard_normal((n, d), dtype=np.float32)
  init = x[rng.choice(n, k, replace=False)].copy()
  return x, truth, init


def sq_objective(x: np.ndarray, centers: np.ndarray, chunk: int = 8192) -> float:
  """Sum over points of the squared distance to the nearest centre, in float64."""
  c = centers.astype(np.float64)
  cn = np.sum(c * c, axis=1)
  total = 0.0
  for i in range(0, len(x), chunk):
    xb = x[i:i + chunk].astype(np.float64)
    d = np.sum(xb * xb, axis=1, keepdims=True) - 2.0 * xb @ c.T + cn
    total += float(np.maximum(d.min(axis=1), 0.0).sum())
  return total


class Ours:
  """aplt_jax Euclidean k-means, inputs already on the device."""

  def __init__(self, x, init):
    self.x, self.init = jax.device_put(x), jax.device_put(init)
    self.valid = jnp.ones(x.shape[0], bool)

  def run(self, iters: int):
    res = kmeans.jit_euclidean_kmeans(self.x, self.init, self.valid, max_iter=iters, tol=0.0)
    jax.block_until_ready(res)
    return np.asarray(res.centers), int(res.num_iters)


class OursSpherical:
  """aplt_jax semi-supervised spherical k-means (the offline phase's mode), 10% clamped;
  `balance_scale` as in `kmeans.spherical_kmeans` (None: nearest centre)."""

  def __init__(self, x, truth, k, seed, balance_scale=None):
    rng = np.random.default_rng(seed + 1)
    labels = np.full(len(x), -1, np.int32)
    lab = rng.random(len(x)) < 0.1
    labels[lab] = truth[lab]
    self.k, self.balance_scale = k, balance_scale
    self.z, self.labels = jax.device_put(x), jax.device_put(labels)
    self.valid = jnp.ones(x.shape[0], bool)
    self.objective = float("nan")

  def run(self, iters: int):
    res = kmeans.jit_spherical_kmeans(self.z, self.labels, self.valid, self.k, max_iter=iters,
                                      tol=0.0, balance_scale=self.balance_scale)
    jax.block_until_ready(res)
    self.objective = float(res.objective)
    return np.asarray(res.centers), int(res.num_iters)


class Faiss:
  """faiss.Kmeans on every point (no subsampling), from the given centres."""

  def __init__(self, x, init):
    import faiss  # pylint: disable=g-import-not-at-top
    self.faiss, self.x, self.init = faiss, x, init
    faiss.omp_set_num_threads(os.cpu_count() or 1)

  def run(self, iters: int):
    n, d = self.x.shape
    km = self.faiss.Kmeans(d, self.init.shape[0], niter=iters, max_points_per_centroid=n,
                           min_points_per_centroid=1, seed=0, verbose=False)
    km.train(self.x, init_centroids=self.init)
    return np.asarray(km.centroids), iters


class Sklearn:
  """scikit-learn Lloyd KMeans, tol 0 (it still stops once no label changes)."""

  def __init__(self, x, init):
    from sklearn.cluster import KMeans  # pylint: disable=g-import-not-at-top
    self.cls, self.x, self.init = KMeans, x, init

  def run(self, iters: int):
    km = self.cls(self.init.shape[0], init=self.init, n_init=1, max_iter=iters, tol=0.0,
                  algorithm="lloyd").fit(self.x)
    return np.asarray(km.cluster_centers_, np.float32), int(km.n_iter_)


def bench_one(n: int, d: int, k: int, iters: int, repeats: int, seed: int):
  x, truth, init = make_data(n, d, k, seed)
  impls = {"aplt_jax (euclidean)": Ours(x, init), "faiss-cpu": Faiss(x, init),
           "scikit-learn": Sklearn(x, init),
           "aplt_jax (semi-supervised spherical)": OursSpherical(x, truth, k, seed),
           "aplt_jax (spherical, balanced)": OursSpherical(x, truth, k, seed, 16.0)}
  last, counts = {}, {}

  def runner(name, it):
    def fn():
      centers, done = impls[name].run(it)
      last[name, it] = centers
      counts[name, it] = done
    return fn

  cands = {f"{name}@{it}": runner(name, it) for name in impls for it in (1, iters)}
  times = common.interleaved(cands, repeats, warmup=1)
  rows, per_iter, per_iter_min = [], {}, {}
  for name in impls:
    t_full, t_one = times[f"{name}@{iters}"], times[f"{name}@1"]
    done = max(counts[name, iters] - counts[name, 1], 1)
    per_iter[name] = (common.median(t_full) - common.median(t_one)) / done
    per_iter_min[name] = (min(t_full) - min(t_one)) / done
    if "spherical" in name:
      obj = f"{impls[name].objective:.6g} (cosine)"
    else:
      obj = f"{sq_objective(x, last[name, iters]):.7g}"
    rows.append([n, name, counts[name, iters], per_iter[name], per_iter_min[name],
                 common.median(t_full), common.spread(t_full), obj])
  return rows, per_iter, per_iter_min


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
  p.add_argument("--d", type=int, default=512)
  p.add_argument("--k", type=int, default=52)
  p.add_argument("--iters", type=int, default=20)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  common.header("k-means", "python bench/kmeans.py " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv))
  print(f"d = {a.d}, K = {a.k}, {a.iters} iterations, median of {a.repeats} interleaved "
        "repeats; s/iter = marginal seconds per Lloyd iteration.\n")
  all_rows, ratios = [], []
  for n in a.n:
    rows, per, per_min = bench_one(n, a.d, a.k, a.iters, a.repeats, a.seed)
    all_rows += rows
    ours, ours_min = per["aplt_jax (euclidean)"], per_min["aplt_jax (euclidean)"]
    nearest = per["aplt_jax (semi-supervised spherical)"]
    ratios.append([n, ours / per["faiss-cpu"], ours_min / per_min["faiss-cpu"],
                   ours / per["scikit-learn"], nearest / ours,
                   per["aplt_jax (spherical, balanced)"] / nearest])
  print(common.table(["N", "implementation", "iters", "s/iter (median)", "s/iter (min)",
                      f"s/run ({a.iters} it)", "run min-max", "final objective"], all_rows))
  print()
  print(common.table(["N", "ours/faiss s/iter, medians (target <= 1)", "ours/faiss, minima",
                      "ours/sklearn, medians", "spherical/euclidean, medians",
                      "balanced/nearest spherical, medians"], ratios))


if __name__ == "__main__":
  main()
