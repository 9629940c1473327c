"""Classification metrics on the host (numpy), as plain Python values for JSON."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def _check_labels(name: str, values: np.ndarray, num_classes: int) -> np.ndarray:
  values = np.asarray(values)
  if values.ndim != 1:
    raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
  if values.size and not np.issubdtype(values.dtype, np.integer):
    raise ValueError(f"{name} must be integers, got dtype {values.dtype}")
  values = values.astype(np.int64)
  if values.size and (values.min() < 0 or values.max() >= num_classes):
    raise ValueError(f"{name} must lie in [0, {num_classes}), got range "
                     f"[{values.min()}, {values.max()}]")
  return values


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """[C, C] int64 counts; row = true label, column = prediction."""
  pred = _check_labels("pred", pred, num_classes)
  labels = _check_labels("labels", labels, num_classes)
  if pred.shape != labels.shape:
    raise ValueError(f"pred {pred.shape} and labels {labels.shape} differ in shape")
  flat = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
  return flat.reshape(num_classes, num_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """num / den elementwise, 0 where den == 0 (zero_division = 0)."""
  num = np.asarray(num, np.float64)
  den = np.asarray(den, np.float64)
  return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def classification_metrics(scores: np.ndarray, labels: np.ndarray,
                           num_classes: int) -> dict[str, Any]:
  """Top-1/top-k, mean class accuracy, macro/micro F1, per-class accuracy, confusion.

  Ties in `scores` go to the lower class index (as `argmax`), for top-1 and top-k alike.

  Args:
    scores: [N, C] logits or probabilities (any monotone score), C = num_classes.
    labels: [N] int true labels in [0, C).
    num_classes: C.

  Returns:
    dict of plain Python values:
      top1, top5: fractions; top5 uses k = min(5, C).
      mean_class_acc: mean recall over the classes present in `labels` (balanced accuracy).
      macro_f1: mean over all C classes of F1 (0 where undefined: a class absent from `labels`
        counts as 0, with a warning); micro_f1 likewise pooled.
      per_class_acc: [C] recall per class, None for classes absent from `labels`.
      confusion: [C, C] nested list of ints, rows = true labels.
  """
  scores = np.asarray(scores)
  if scores.ndim != 2 or scores.shape[1] != num_classes:
    raise ValueError(f"scores must be [N, {num_classes}], got shape {scores.shape}")
  labels = _check_labels("labels", labels, num_classes)
  if labels.shape[0] != scores.shape[0]:
    raise ValueError(f"{scores.shape[0]} score rows but {labels.shape[0]} labels")
  if labels.size == 0:
    raise ValueError("cannot compute metrics on zero samples")

  k = min(5, num_classes)
  ranked = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # [N, k], best first
  pred = ranked[:, 0]
  top1 = float(np.mean(pred == labels))
  topk = float(np.mean(np.any(ranked == labels[:, None], axis=1)))

  cm = confusion_matrix(pred, labels, num_classes)
  tp = np.diag(cm).astype(np.float64)
  support = cm.sum(axis=1)  # true count per class
  predicted = cm.sum(axis=0)  # predicted count per class
  fp = predicted - tp
  fn = support - tp
  present = support > 0
  recall = _safe_div(tp, support)
  f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
  if not present.all():
    warnings.warn(f"Classes {np.flatnonzero(~present).tolist()} have no sample in the "
                  f"evaluated labels ({labels.size} samples): macro_f1 counts their F1 as 0, "
                  "which lowers it; mean_class_acc averages over the present classes only.",
                  stacklevel=2)
  micro_f1 = float(_safe_div(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()))

  return {
      "top1": top1,
      "top5": topk,
      "mean_class_acc": float(recall[present].mean()),
      "macro_f1": float(f1.mean()),
      "micro_f1": micro_f1,
      "per_class_acc": [float(r) if p else None for r, p in zip(recall, present)],
      "confusion": cm.astype(int).tolist(),
  }
