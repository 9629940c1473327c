"""The MA-52 evaluation protocol (DESIGN §4): body parts, body-part scores, protocol metrics.

MA-52's 52 actions group into 7 body parts, contiguous index ranges of `label_name.txt`
(`BODY_PARTS`). On the validation split the protocol reports action top-1/top-5, body-part
top-1, macro and micro F1 of actions and of body parts, and `f1_mean`, the mean of those four
F1 scores. The model has one action head; its body-part score is the summed probability of the
part's actions (the marginal), which ranks body parts for both the metrics and the submission
(`aplt_jax.ma52`).
"""
from __future__ import annotations

import numpy as np
from scipy import special

from aplt_jax import evaluate

NUM_ACTIONS = 52
# (name, first action index, last action index), inclusive, in label_name.txt order.
BODY_PARTS = (
    ("body", 0, 4),
    ("head", 5, 10),
    ("upper limb", 11, 23),
    ("lower limb", 24, 31),
    ("body-hand", 32, 37),
    ("head-hand", 38, 47),
    ("leg-hand", 48, 51),
)
ACTION_TO_BODY = np.concatenate(
    [np.full(last - first + 1, part, np.int64) for part, (_, first, last) in enumerate(BODY_PARTS)])


def body_scores(scores: np.ndarray) -> np.ndarray:
  """[N, 52] action logits -> [N, 7] body-part probabilities (sums of the actions' softmax)."""
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 2 or scores.shape[1] != NUM_ACTIONS:
    raise ValueError(f"MA-52 scores must be [N, {NUM_ACTIONS}], got shape {scores.shape}")
  probs = special.softmax(scores, axis=1)  # float64, as jax.nn.softmax is float32 without x64
  out = np.zeros((len(scores), len(BODY_PARTS)))
  np.add.at(out.T, ACTION_TO_BODY, probs.T)
  return out


def protocol_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
  """The MA-52 protocol on labeled clips (scores [N, 52] logits, labels [N] action indices)."""
  labels = np.asarray(labels, np.int64)
  action = evaluate.classification_metrics(scores, labels, NUM_ACTIONS)
  body = evaluate.classification_metrics(body_scores(scores), ACTION_TO_BODY[labels],
                                         len(BODY_PARTS))
  f1 = {"action_macro_f1": action["macro_f1"], "action_micro_f1": action["micro_f1"],
        "body_macro_f1": body["macro_f1"], "body_micro_f1": body["micro_f1"]}
  return {"action_top1": action["top1"], "action_top5": action["top5"],
          "body_top1": body["top1"], **f1, "f1_mean": float(np.mean(list(f1.values()))),
          "body_confusion": body["confusion"]}  # [7, 7] counts, rows = true body part
