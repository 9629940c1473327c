"""Human-facing output of a run: per-round lines, the summary table, and PNG plots."""
from __future__ import annotations

import os

import numpy as np

from aplt_jax import metric_writer


def _fmt(v, pct=True) -> str:
  if v is None:
    return "  -  "
  return f"{100 * v:5.1f}" if pct else f"{v:.3g}"


def round_line(r: int, num_rounds: int, offline: dict, evaluation: dict) -> str:
  """One line per round: kept fraction, offline pseudo-label accuracy, eval accuracy."""
  return (f"round {r}/{num_rounds} | kept {_fmt(offline.get('offline/kept_frac'))}% | "
          f"pl acc kept {_fmt(offline.get('offline/pl_acc_kept'))}% "
          f"all {_fmt(offline.get('offline/pl_acc_all'))}% | "
          f"eval top1 {_fmt(evaluation.get('eval/top1'))}% "
          f"(ema {_fmt(evaluation.get('eval/top1_ema'))}%)")


def summary_table(final: dict) -> str:
  """The end-of-run table: raw and EMA model on the evaluation split."""
  keys = ("top1", "top5", "mean_class_acc", "macro_f1", "micro_f1")
  lines = [f"{final['method']} on {final['dataset']} ({final['eval_split']} split, "
           f"{final['labeled']} labeled clips, {final['steps']} steps, "
           f"{final['seconds'] / 60:.1f} min)",
           f"{'model':<6}" + "".join(f"{k:>16}" for k in keys)]
  for tag in ("raw", "ema"):
    lines.append(f"{tag:<6}" + "".join(f"{100 * final[tag][k]:>15.2f}%" for k in keys))
  return "\n".join(lines)


def row_normalised(confusion) -> np.ndarray:
  """[C, C] counts (rows: true class) -> rows summing to 1; NaN rows for absent classes."""
  cm = np.asarray(confusion, np.float64)
  totals = cm.sum(axis=1, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(totals > 0, cm / totals, np.nan)


def plot_confusion(plt, confusion, names, title: str, path: str) -> dict:
  """Row-normalised confusion matrix with class names; sized so 52 classes stay readable.

  Returns what was drawn: `matrix` [C, C] and the axis `labels`.
  """
  cm = row_normalised(confusion)
  c = len(cm)
  side = max(4.5, 0.2 * c + 2.5)
  font = 8 if c <= 20 else 6
  fig, ax = plt.subplots(figsize=(side + 1.0, side))
  im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
  ax.set_xticks(range(c), names, rotation=90, fontsize=font)
  ax.set_yticks(range(c), names, fontsize=font)
  ax.set(xlabel="predicted", ylabel="true", title=title)
  if c <= 15:
    for i, j in zip(*np.nonzero(np.nan_to_num(cm) >= 0.005)):
      ax.text(j, i, f"{100 * cm[i, j]:.0f}", ha="center", va="center", fontsize=7,
              color="white" if cm[i, j] > 0.5 else "black")
  fig.colorbar(im, ax=ax, fraction=0.04, label="fraction of the true class")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  drawn = {"matrix": np.ma.filled(im.get_array(), np.nan),
           "labels": [t.get_text() for t in ax.get_yticklabels()]}
  plt.close(fig)
  return drawn


def plot_per_class(plt, final: dict, names, path: str) -> None:
  """Per-class accuracy (recall) of the raw and the EMA model, one row per class."""
  c = len(names)
  y = np.arange(c)
  fig, ax = plt.subplots(figsize=(6, max(3.0, 0.18 * c + 1.5)))
  for k, (tag, label) in enumerate((("raw", "raw"), ("ema", "EMA"))):
    acc = [np.nan if v is None else v for v in final[tag]["per_class_acc"]]
    ax.barh(y + (k - 0.5) * 0.4, acc, height=0.4, label=f"{label} ({100 * final[tag]['top1']:.1f}%"
            " top-1)")
  ax.set_yticks(y, names, fontsize=8 if c <= 20 else 6)
  ax.invert_yaxis()
  ax.set(xlim=(0, 1), xlabel=f"accuracy on {final['eval_split']}",
         title=f"{final['method']}: per-class accuracy")
  ax.grid(axis="x", alpha=0.3)
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_run_report(workdir: str, final: dict) -> None:
  """accuracy.png (eval accuracy over steps), confusion.png (EMA model, rows normalised),
  per_class.png (per-class accuracy, raw and EMA), body_confusion.png (MA-52's body parts,
  when final.json has them) and pseudo_labels.png (per round: offline kept pseudo-label
  accuracy, all-sample accuracy and kept fraction, beside the online masked pseudo-label
  accuracy and mask rate)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = final.get("class_names") or [str(i) for i in range(len(final["ema"]["confusion"]))]
  plot_confusion(plt, final["ema"]["confusion"], names,
                 f"{final['method']}: confusion on {final['eval_split']} (EMA)",
                 os.path.join(workdir, "confusion.png"))
  plot_per_class(plt, final, names, os.path.join(workdir, "per_class.png"))
  body = final["ema"].get("protocol", {}).get("body_confusion")
  if body is not None:
    from aplt_jax.data.video import ma52  # pylint: disable=g-import-not-at-top
    plot_confusion(plt, body, [p[0] for p in ma52.BODY_PARTS],
                   f"{final['method']}: body parts on {final['eval_split']} (EMA)",
                   os.path.join(workdir, "body_confusion.png"))

  rows = metric_writer.read_rows(workdir)
  ev = [r for r in rows if r["phase"] == "eval"]
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for key, label in (("eval/top1", "raw"), ("eval/top1_ema", "EMA")):
    ax.plot([r["step"] for r in ev], [r.get(key) for r in ev], marker=".", label=label)
  ax.set(xlabel="step", ylabel=f"top-1 on {final['eval_split']}", title=final["method"])
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "accuracy.png"), dpi=120)
  plt.close(fig)

  off = [r for r in rows if r["phase"] == "offline"]
  onl = [r for r in rows if r["phase"] == "online" and r.get("train/mask_rate") is not None]
  if not off and not onl:
    return
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
  if off:
    steps = [r["step"] for r in off]
    a1.plot(steps, [r.get("offline/pl_acc_kept") for r in off], "o-", label="offline, kept")
    a1.plot(steps, [r.get("offline/pl_acc_all") for r in off], "s--", label="offline, all")
    a2.plot(steps, [r.get("offline/kept_frac") for r in off], "o-", label="offline kept fraction")
  if onl:
    steps = [r["step"] for r in onl]
    a1.plot(steps, [r.get("train/pl_acc_masked") for r in onl], "-", alpha=0.7,
            label="online, masked")
    a2.plot(steps, [r.get("train/mask_rate") for r in onl], "-", alpha=0.7,
            label="online mask rate")
  a1.set(xlabel="step", ylabel="pseudo-label accuracy")
  a2.set(xlabel="step", ylabel="fraction of unlabeled clips")
  for a in (a1, a2):
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
  fig.suptitle(f"{final['method']}: pseudo-label quality")
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "pseudo_labels.png"), dpi=120)
  plt.close(fig)
