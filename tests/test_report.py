"""Per-run pictures: confusion.png, per_class.png (and MA-52's body_confusion.png)."""
import json

import matplotlib
import numpy as np
import pytest
from PIL import Image

from aplt_jax.data.video import ma52
from aplt_jax import report

matplotlib.use("Agg")


def _final(num_classes: int, seed: int = 0, body: bool = False) -> dict:
  rng = np.random.default_rng(seed)
  cm = rng.integers(0, 5, (num_classes, num_classes)) + 20 * np.eye(num_classes, dtype=int)
  cm[1] = 0  # a class absent from the evaluation split
  recall = np.diag(cm) / np.maximum(cm.sum(1), 1)
  per_class = [None if cm[i].sum() == 0 else float(r) for i, r in enumerate(recall)]
  metrics = {"top1": 0.5, "per_class_acc": per_class, "confusion": cm.tolist()}
  final = {"method": "aplt", "eval_split": "test", "raw": dict(metrics), "ema": dict(metrics),
           "class_names": [f"micro-action {i}" for i in range(num_classes)]}
  if body:
    final["ema"]["protocol"] = {"body_confusion": np.eye(7, dtype=int).tolist()}
  return final


def _write(workdir, final):
  (workdir / "metrics.jsonl").write_text(
      json.dumps({"step": 10, "round": 0, "phase": "eval", "eval/top1": 0.5}) + "\n")
  report.write_run_report(str(workdir), final)


@pytest.mark.parametrize("num_classes", [12, 52])
def test_confusion_and_per_class_pictures(tmp_path, num_classes):
  final = _final(num_classes, body=num_classes == 52)
  _write(tmp_path, final)
  for name in ("accuracy.png", "confusion.png", "per_class.png"):
    assert (tmp_path / name).stat().st_size > 5000, name
  assert (tmp_path / "body_confusion.png").exists() == (num_classes == 52)
  # 52 class names need a bigger picture than 12 (~0.2 inch per class at 120 dpi).
  width, height = Image.open(tmp_path / "confusion.png").size
  assert height >= 0.2 * num_classes * 120


def test_the_drawn_matrix_is_final_jsons_row_normalised(tmp_path):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  final = _final(52)
  cm = np.asarray(final["ema"]["confusion"], float)
  drawn = report.plot_confusion(plt, cm, final["class_names"], "t", str(tmp_path / "c.png"))
  assert drawn["matrix"].shape == cm.shape
  assert drawn["labels"] == final["class_names"]
  assert np.isnan(drawn["matrix"][1]).all()  # the absent class is blank, not zeros
  rows = np.delete(np.arange(52), 1)
  np.testing.assert_allclose(drawn["matrix"][rows].sum(1), 1.0)
  np.testing.assert_allclose(drawn["matrix"][rows], cm[rows] / cm[rows].sum(1, keepdims=True))
  body = report.plot_confusion(plt, np.eye(7), [p[0] for p in ma52.BODY_PARTS], "b",
                               str(tmp_path / "b.png"))
  assert body["labels"][0] == "body" and body["matrix"].shape == (7, 7)
