"""Tables and figures of a finished (or partly finished) grid: results.csv, results.md, PNGs.

Tables report the EMA model (DESIGN 4.2) as mean ± std over seeds, and, because a seed fixes
the labeled subset and the initialisation for every method, APLT's paired difference to each
baseline per seed: mean ± std and the number of seeds APLT won.
"""
from __future__ import annotations

import csv
import glob
import json
import os
from typing import Any

import numpy as np

from aplt_jax import metric_writer

CSV_FIELDS = ("dataset", "method", "budget", "seed", "top1", "top1_ema", "mean_class_acc",
              "macro_f1", "seconds", "eval_split")


def collect(grid: dict, cells, out: str) -> list[dict[str, Any]]:
  """One record per finished cell: its CSV row plus paths for the figures."""
  records = []
  for cell in cells:
    workdir = os.path.join(out, cell.name)
    path = os.path.join(workdir, "final.json")
    if not os.path.exists(path):
      continue
    with open(path) as f:
      final = json.load(f)
    records.append({
        "dataset": grid["name"], "method": cell.method, "budget": cell.budget,
        "seed": cell.seed, "top1": final["raw"]["top1"], "top1_ema": final["ema"]["top1"],
        "mean_class_acc": final["ema"]["mean_class_acc"], "macro_f1": final["ema"]["macro_f1"],
        "seconds": final["seconds"], "workdir": workdir,
        "eval_split": final.get("eval_split", "test"),
        "per_class_acc": final["ema"]["per_class_acc"],
        "by_subject": final["ema"].get("protocol", {}).get("top1_by_subject")})
  return records


def reused_records(path: str, grid: dict, cells, records) -> list[dict[str, Any]]:
  """Rows of an earlier results.csv (`path`) for the grid's cells that have no finished run here,
  e.g. baselines that a change of APLT's defaults does not touch. Every reused row must name this
  grid's dataset and a cell of it; they enter the tables only (no workdir, so no curves)."""
  done = {(r["method"], r["budget"], r["seed"]) for r in records}
  wanted = {(c.method, c.budget, c.seed) for c in cells} - done
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  alien = sorted({r["dataset"] for r in rows} - {grid["name"]})
  if alien:
    raise ValueError(f"--reuse={path} holds rows of dataset(s) {alien}, not of grid "
                     f"{grid['name']!r}.")
  numbers = ("top1", "top1_ema", "mean_class_acc", "macro_f1", "seconds")
  reused = []
  for r in rows:
    key = (r["method"], r["budget"], int(r["seed"]))
    if key in wanted:
      reused.append({**{k: float(r[k]) for k in numbers}, "dataset": r["dataset"],
                     "method": key[0], "budget": key[1], "seed": key[2], "workdir": None,
                     "eval_split": r.get("eval_split") or "test", "per_class_acc": None,
                     "by_subject": None})
  return reused


def _by(records, **match):
  return [r for r in records if all(r[k] == v for k, v in match.items())]


def _mean_std(values, num_seeds: int) -> str:
  """'mean ± std' in %, with '(n=k)' when only k of the grid's seeds have finished."""
  values = 100 * np.asarray(values, float)
  if not len(values):
    return "–"
  partial = f" (n={len(values)})" if len(values) < num_seeds else ""
  return f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.1f}{partial}"


def _paired(records, budget, a: str, b: str, key="top1_ema"):
  """Per-seed differences a - b (points) over the seeds both finished."""
  ra = {r["seed"]: r[key] for r in _by(records, budget=budget, method=a)}
  rb = {r["seed"]: r[key] for r in _by(records, budget=budget, method=b)}
  seeds = sorted(set(ra) & set(rb))
  return np.array([100 * (ra[s] - rb[s]) for s in seeds])


def _diff_cell(d: np.ndarray) -> str:
  if not len(d):
    return "–"
  sd = d.std(ddof=1) if len(d) > 1 else 0.0
  return f"{d.mean():+.1f} ± {sd:.1f} ({int((d > 0).sum())}/{len(d)} won)"


def results_markdown(grid: dict, records) -> str:
  """results.md: the main table, APLT's paired differences, ablations, and the cost."""
  budgets, methods = list(grid["budgets"]), list(grid["methods"])
  splits = sorted({r["eval_split"] for r in records}) or ["test"]
  split = {"val": "validation"}.get(splits[0], splits[0]) if len(splits) == 1 else (
      "MIXED splits (" + " and ".join(splits) + "): these cells are not comparable")
  lines = [f"# Results: {grid['name']}", "",
           f"EMA model on the {split} split, % (mean ± std over seeds {grid['seeds']}). "
           "Best mean per column in bold.", ""]
  header = "| method | " + " | ".join(f"{b} top-1 | {b} mean class acc" for b in budgets) + " |"
  lines += [header, "|---" * (1 + 2 * len(budgets)) + "|"]
  best = {}
  for b in budgets:
    for key in ("top1_ema", "mean_class_acc"):
      means = [np.mean([r[key] for r in _by(records, budget=b, method=m)] or [-1])
               for m in methods]
      best[b, key] = methods[int(np.argmax(means))]
  for m in methods:
    row = [m]
    for b in budgets:
      for key in ("top1_ema", "mean_class_acc"):
        cell = _mean_std([r[key] for r in _by(records, budget=b, method=m)], len(grid["seeds"]))
        row.append(f"**{cell}**" if best[b, key] == m and cell != "–" else cell)
    lines.append("| " + " | ".join(row) + " |")
  if "aplt" in methods:
    lines += ["", "## APLT minus each baseline, paired by seed (top-1 points)", "",
              "| baseline | " + " | ".join(budgets) + " |", "|---" * (1 + len(budgets)) + "|"]
    for m in methods:
      if m != "aplt":
        lines.append(f"| {m} | " + " | ".join(
            _diff_cell(_paired(records, b, "aplt", m)) for b in budgets) + " |")
  if grid["ablations"] and grid["ablation_budgets"]:
    lines += ["", "## APLT ablations (top-1, and paired difference to full APLT)", "",
              "| variant | overrides | " + " | ".join(
                  f"{b} top-1 | {b} vs APLT" for b in grid["ablation_budgets"]) + " |",
              "|---|---" + "|---" * (2 * len(grid["ablation_budgets"])) + "|"]
    for name, over in grid["ablations"].items():
      variant = f"aplt-{name}"
      row = [variant, ", ".join(f"{k}={v}" for k, v in over.items())]
      for b in grid["ablation_budgets"]:
        row.append(_mean_std([r["top1_ema"] for r in _by(records, budget=b, method=variant)],
                             len(grid["seeds"])))
        row.append(_diff_cell(_paired(records, b, variant, "aplt")))
      lines.append("| " + " | ".join(row) + " |")
  total = sum(r["seconds"] for r in records)
  lines += ["", f"Cost: {len(records)} runs, {total / 3600:.2f} h of training in all "
            f"({total / max(len(records), 1) / 60:.1f} min per run on average)."]
  return "\n".join(lines) + "\n"


def by_subject_markdown(grid: dict, records) -> str:
  """Top-1 on each subject of the evaluated split (sequence data that names its subjects:
  `top1_by_subject` in final.json), mean ± std over seeds, with APLT's paired difference to each
  method per subject; '' when no run evaluated two subjects or more (one subject's top-1 is the
  run's)."""
  have = [r for r in records if len(r.get("by_subject") or ()) > 1]
  if not have:
    return ""
  subjects = sorted({k for r in have for k in r["by_subject"]}, key=lambda k: (len(k), k))
  names = list(grid["methods"]) + [f"aplt-{a}" for a in grid["ablations"]]
  methods = [m for m in names if _by(have, method=m)]
  lines = ["## Top-1 by subject", "",
           "EMA model, % per subject of the evaluated split (mean ± std over seeds); `aplt − m`: "
           "APLT minus m, paired by seed.", "",
           "| method | budget | " + " | ".join(f"subject {k}" for k in subjects) + " |",
           "|---|---" + "|---" * len(subjects) + "|"]
  of = {k: [{**r, "top1_ema": r["by_subject"][k]} for r in have if k in r["by_subject"]]
        for k in subjects}
  for b in grid["budgets"]:
    for m in methods:
      if _by(have, budget=b, method=m):
        lines.append(f"| {m} | {b} | " + " | ".join(_mean_std(
            [r["top1_ema"] for r in _by(of[k], budget=b, method=m)], len(grid["seeds"]))
            for k in subjects) + " |")
    if _by(have, budget=b, method="aplt"):
      for m in methods:
        if m != "aplt" and _by(have, budget=b, method=m):
          lines.append(f"| aplt − {m} | {b} | " + " | ".join(
              _diff_cell(_paired(of[k], b, "aplt", m)) for k in subjects) + " |")
  return "\n".join(lines) + "\n"


def _round_series(workdir: str):
  """Per-run pseudo-label series from metrics.jsonl."""
  rows = metric_writer.read_rows(workdir)
  with open(os.path.join(workdir, "split.json")) as f:
    split = json.load(f)
  num_unlabeled = split["num_train"] - len(split["labeled"])
  off = [r for r in rows if r["phase"] == "offline"]
  onl = [r for r in rows if r["phase"] == "online" and r.get("train/mask_rate") is not None]
  return {
      "off_step": [r["step"] for r in off],
      "off_acc": [r.get("offline/pl_acc_kept") for r in off],
      "off_count": [r["offline/kept_frac"] * num_unlabeled for r in off],
      "on_step": [r["step"] for r in onl],
      "on_acc": [r.get("train/pl_acc_masked") for r in onl],
      "on_count": [r["train/mask_rate"] * num_unlabeled for r in onl],
  }


def absorbed_clusters(workdir: str, share: float = 0.3) -> list[tuple[float, int, float]]:
  """Per offline round of a run, from `offline/round_*.npz` (hidden labels of the training clips):
  (kept accuracy, clusters whose kept members hold >= `share` of one other class, the fraction
  of kept errors that come from each cluster's largest intruding class); NaN where undefined."""
  rows = []
  for path in sorted(glob.glob(os.path.join(workdir, "offline", "round_*.npz"))):
    with np.load(path) as d:
      keep, c = d["keep"], len(d["centers"])
      counts = np.zeros((c, c), int)  # [hidden, pseudo]
      np.add.at(counts, (d["hidden"][keep], d["pseudo_label"][keep]), 1)
    errors = counts.sum() - np.trace(counts)
    intruder = (counts - np.diag(np.diag(counts))).max(axis=0)  # [C], per pseudo-label
    rows.append((np.trace(counts) / counts.sum() if counts.sum() else np.nan,
                 int((intruder >= share * np.maximum(counts.sum(axis=0), 1)).sum()),
                 intruder.sum() / errors if errors else np.nan))
  return rows


def absorbed_markdown(grid: dict, records) -> str:
  """Per APLT row and budget, means over seeds per round of `absorbed_clusters` ('' when no run
  has offline rounds)."""
  lines = ["## Kept offline labels by cluster (training clips' hidden labels)", "",
           "Per round: kept accuracy %, clusters whose kept clips are >= 30% one other class, "
           "share % of kept errors from each cluster's largest intruding class. Mean over seeds.",
           "", "| method | budget | kept accuracy | absorbed clusters | errors from one intruder |",
           "|---|---|---|---|---|"]
  header = len(lines)
  for m in sorted({r["method"] for r in records if r["method"].startswith("aplt")}):
    for b in grid["budgets"]:
      runs = [absorbed_clusters(r["workdir"]) for r in _by(records, budget=b, method=m)]
      runs = [x for x in runs if x]
      if not runs:
        continue
      k = min(map(len, runs))
      mean = np.nanmean(np.asarray([x[:k] for x in runs], float), axis=0)  # [rounds, 3]
      cell = lambda j, f: " ".join(f(v) for v in mean[:, j])
      lines.append(f"| {m} | {b} | {cell(0, lambda v: f'{100 * v:.0f}')} | "
                   f"{cell(1, lambda v: f'{v:.1f}')} | {cell(2, lambda v: f'{100 * v:.0f}')} |")
  return "\n".join(lines) + "\n" if len(lines) > header else ""


def _mean_curve(series, xkey, ykey):
  """Mean over runs of y at the x values all runs share."""
  if not series:
    return [], []
  xs = sorted(set.intersection(*[set(s[xkey]) for s in series]))
  ys = []
  for x in xs:
    vals = [s[ykey][s[xkey].index(x)] for s in series]
    vals = [v for v in vals if v is not None]
    ys.append(np.mean(vals) if vals else np.nan)
  return xs, ys


def plot_pseudo_labels(grid, records, path: str) -> None:
  """Figure 1: pseudo-label accuracy and number of pseudo-labeled clips over training, FixMatch
  (online, masked) against APLT (offline, kept), plus the offline selection run on FixMatch's
  embedding (the diagnostic that separates selection from representation)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  budgets = list(grid["budgets"])
  fig, axes = plt.subplots(2, len(budgets), figsize=(5 * len(budgets), 7), squeeze=False)
  for j, b in enumerate(budgets):
    fix = [_round_series(r["workdir"]) for r in _by(records, budget=b, method="fixmatch")]
    apl = [_round_series(r["workdir"]) for r in _by(records, budget=b, method="aplt")]
    curves = [
        (fix, "on_step", "on_acc", "on_count", "FixMatch: online, masked", "-", "tab:red"),
        (apl, "off_step", "off_acc", "off_count", "APLT: offline, kept", "o-", "tab:blue"),
        (fix, "off_step", "off_acc", "off_count",
         "offline selection on FixMatch's embedding", "s--", "tab:orange"),
    ]
    for runs, xk, acc_k, cnt_k, label, style, color in curves:
      for row, yk in ((0, acc_k), (1, cnt_k)):
        x, y = _mean_curve(runs, xk, yk)
        if x:
          axes[row, j].plot(x, 100 * np.asarray(y) if row == 0 else y, style, color=color,
                            label=label, alpha=0.9)
    axes[0, j].set(title=f"{grid['name']}, {b} labels", ylabel="pseudo-label accuracy (%)")
    axes[1, j].set(xlabel="step", ylabel="pseudo-labeled unlabeled clips")
    for a in axes[:, j]:
      a.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_per_class(grid, records, path: str, class_names=None) -> None:
  """Figure 2: per-class test accuracy, APLT against FixMatch, at each label budget."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  budgets = list(grid["budgets"])
  fig, axes = plt.subplots(len(budgets), 1, figsize=(10, 3 * len(budgets)), squeeze=False)
  for i, b in enumerate(budgets):
    ax = axes[i, 0]
    for k, (m, color) in enumerate((("fixmatch", "tab:red"), ("aplt", "tab:blue"))):
      accs = [[np.nan if v is None else v for v in r["per_class_acc"]]
              for r in _by(records, budget=b, method=m)]
      if not accs:
        continue
      mean = 100 * np.nanmean(np.asarray(accs, float), axis=0)
      x = np.arange(len(mean))
      ax.bar(x + (k - 0.5) * 0.4, mean, width=0.4, color=color, label=m)
      if class_names is not None and len(class_names) == len(mean):  # else the grid's names
        # are another dataset's (a grid pointed at other data): the ticks stay class indices
        ax.set_xticks(x, class_names, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="accuracy (%)", title=f"{b} labels")
    if ax.get_legend_handles_labels()[0]:  # a budget with no finished run has no bars
      ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_embedding(grid, records, path: str) -> None:
  """Figure 3: 2-D PCA of test features with the prototypes (FixMatch: labeled class means)
  marked, APLT against FixMatch, first budget and first seed."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  b, seed = list(grid["budgets"])[0], grid["seeds"][0]
  fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
  for ax, m in zip(axes, ("fixmatch", "aplt")):
    runs = _by(records, budget=b, method=m, seed=seed)
    npz = os.path.join(runs[0]["workdir"], "features_test.npz") if runs else None
    if not npz or not os.path.exists(npz):
      ax.set_axis_off()
      continue
    d = np.load(npz)
    z = d["features"] / np.maximum(np.linalg.norm(d["features"], axis=1, keepdims=True), 1e-12)
    mean = z.mean(0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
    p = (z - mean) @ vt[:2].T
    c = (d["prototypes"] - mean) @ vt[:2].T
    ax.scatter(p[:, 0], p[:, 1], c=d["labels"], cmap="tab20", s=6, alpha=0.7)
    ax.scatter(c[:, 0], c[:, 1], c=np.arange(len(c)), cmap="tab20", marker="*", s=260,
               edgecolors="k")
    ax.set(title=f"{m} ({'prototypes' if m == 'aplt' else 'labeled class means'}), {b}, "
           f"seed {seed}", xticks=[], yticks=[])
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(grid: dict, cells, out: str, class_names=None,
                 reuse: str | None = None) -> list[dict]:
  """Writes results.csv, results.md (with `absorbed_markdown`, `by_subject_markdown`),
  pseudo_labels.png, per_class.png, embedding.png. With `reuse` (an earlier results.csv), cells
  without a run here are read from it for the tables (`reused_records`); the figures use the
  runs here."""
  records = collect(grid, cells, out)
  reused = reused_records(reuse, grid, cells, records) if reuse else []
  with open(os.path.join(out, "results.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(records + reused)
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(results_markdown(grid, records + reused))
    if reused:
      f.write(f"\n{len(reused)} of these runs were not rerun: their rows are read from {reuse} "
              f"({', '.join(sorted({r['method'] for r in reused}))}); the section below and the "
              "figures use the runs rerun here.\n")
    for section in (absorbed_markdown(grid, records), by_subject_markdown(grid, records)):
      if section:
        f.write("\n" + section)
  if records:
    plot_pseudo_labels(grid, records, os.path.join(out, "pseudo_labels.png"))
    plot_per_class(grid, records, os.path.join(out, "per_class.png"), class_names)
    plot_embedding(grid, records, os.path.join(out, "embedding.png"))
  return records
