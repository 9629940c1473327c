"""Watch's kept offline labels split by arm: does the window's (class, arm) hold a labeled window?

  python -m tools.watch_arms 'runs/watch_val/2_class/aplt-gated/seed*'

Each watch exercise was recorded on both arms (seglearn's `side`), so a class has two modes
and two labeled windows per class often leave one (class, arm) pair without a label. For the
APLT workdirs matched by each glob, over every offline round (`offline/round_*.npz`, hidden
labels of the training windows), prints how many pairs the labeled windows cover, and the kept
rate and kept-label accuracy of the windows in covered and in uncovered pairs. Monitoring only:
nothing here reads a validation or test score.
"""
import glob
import json
import sys

import numpy as np

from aplt_jax.data import sequences
from configs import watch


def train_window_arms() -> tuple[np.ndarray, np.ndarray]:
  """([N] class, [N] arm) of watch's training windows, in their dense index order."""
  params, path = sequences.params_from_config("watch", watch.get_config("aplt").data)
  train = sequences.build_splits(params, path)["splits"]["train"]  # checks the file's SHA-256
  side = np.load(path, allow_pickle=True).item()["side"]  # the bytes build_splits verified
  return train.label, np.asarray(side, np.int64)[train.recording]


def summarise(pattern: str, label: np.ndarray, arm: np.ndarray) -> str:
  pair = label * 2 + arm
  num, kept, right, covered_pairs = np.zeros(2), np.zeros(2), np.zeros(2), []
  for wd in sorted(glob.glob(pattern)):
    split = json.load(open(f"{wd}/split.json"))
    if split["num_train"] != len(label):
      raise SystemExit(f"{wd}: {split['num_train']} training windows, watch has {len(label)}: "
                       "not a run of configs/watch.py's data")
    covered = np.isin(pair, pair[split["labeled"]])
    covered_pairs.append(len(np.unique(pair[split["labeled"]])))
    for f in sorted(glob.glob(f"{wd}/offline/round_*.npz")):
      z = np.load(f)
      u, keep, pl = z["unlabeled"], z["keep"].astype(bool), z["pseudo_label"]
      if not np.array_equal(z["hidden"], label[u]):
        raise SystemExit(f"{f}: hidden labels differ from watch's training windows")
      for c in (0, 1):  # 0: uncovered, 1: covered
        m = covered[u] == bool(c)
        num[c] += m.sum()
        kept[c] += (keep & m).sum()
        right[c] += (keep & m & (pl == label[u])).sum()
  if not covered_pairs:
    return f"{pattern}: no workdir"
  errors = kept - right
  pct = lambda a, b: 100 * a / max(b, 1)
  return (f"{pattern}: {len(covered_pairs)} runs, {np.mean(covered_pairs):.1f} of "
          f"{2 * (label.max() + 1)} (class, arm) pairs labeled\n"
          f"  covered pairs:   {pct(num[1], num.sum()):3.0f}% of unlabeled windows, kept "
          f"{pct(kept[1], num[1]):3.0f}%, kept labels {pct(right[1], kept[1]):3.0f}% right\n"
          f"  uncovered pairs: {pct(num[0], num.sum()):3.0f}% of unlabeled windows, kept "
          f"{pct(kept[0], num[0]):3.0f}%, kept labels {pct(right[0], kept[0]):3.0f}% right, "
          f"{pct(errors[0], errors.sum()):3.0f}% of all kept errors")


def main(patterns: list[str]) -> None:
  if not patterns:
    raise SystemExit(__doc__)
  label, arm = train_window_arms()
  for p in patterns:
    print(summarise(p, label, arm))


if __name__ == "__main__":
  main(sys.argv[1:])
