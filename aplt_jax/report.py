"""Human-facing output of a run: per-round lines, the summary table, and PNG plots."""
from __future__ import annotations

import os

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


def write_run_report(workdir: str, final: dict) -> None:
  """accuracy.png (eval accuracy over steps) and pseudo_labels.png (per round: offline kept
  pseudo-label accuracy, all-sample accuracy and kept fraction, beside the online masked
  pseudo-label accuracy and mask rate)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

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
