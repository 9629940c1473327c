"""FlexMatch: curriculum per-class thresholds from per-sample selected labels (USB's rule).

State:
  selected: [Nu] int32, the last confident prediction of each unlabeled sample (-1: never).
  classwise_acc: [C] float32, the learning effect beta(c) of each class.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from aplt_jax import ssl


def init_state(num_classes: int, num_unlabeled: int) -> dict[str, jax.Array]:
  return {
      "selected": jnp.full((num_unlabeled,), -1, jnp.int32),
      "classwise_acc": jnp.zeros((num_classes,), jnp.float32),
  }


def update_state(state: dict[str, jax.Array], probs_w: jax.Array, uidx: jax.Array, *,
                 threshold: float, thresh_warmup: bool) -> dict[str, jax.Array]:
  """Records confident predictions, then recomputes `classwise_acc` from the counts.

  `classwise_acc[c] = count[c] / max(count)`, where with warm-up the max also covers the
  count of never-selected samples (-1), so beta grows from 0 as samples get selected. It is
  left unchanged while every sample is still -1.
  """
  selected = state["selected"]
  num_unlabeled = selected.shape[0]
  num_classes = probs_w.shape[-1]
  conf = jnp.max(probs_w, axis=-1)
  pred = jnp.argmax(probs_w, axis=-1).astype(jnp.int32)
  # Unconfident rows write out of bounds and are dropped, so a duplicate uidx that is
  # unconfident cannot overwrite a confident one.
  target = jnp.where(conf >= threshold, uidx.astype(jnp.int32), num_unlabeled)
  selected = selected.at[target].set(pred, mode="drop")
  counts = jnp.bincount(selected + 1, length=num_classes + 1).astype(jnp.float32)
  unused, class_counts = counts[0], counts[1:]
  denom = jnp.max(counts) if thresh_warmup else jnp.max(class_counts)
  any_selected = unused < num_unlabeled
  acc = class_counts / jnp.maximum(denom, 1.0)
  classwise_acc = jnp.where(any_selected, acc, state["classwise_acc"])
  return {"selected": selected, "classwise_acc": classwise_acc}


def pseudo_label(probs_w: jax.Array, uidx: jax.Array, state: dict[str, jax.Array], *,
                 threshold: float, thresh_warmup: bool):
  """Masks with `tau * beta(y) / (2 - beta(y))` at `y = argmax p`, then updates the state.

  The mask uses the status before this batch (so a fresh state, beta = 0, keeps every row
  of the first batch); the batch's confident predictions count from the next call on.

  Returns:
    pseudo [B] int32, weights [B] float32 in {0, 1}, the updated state.
  """
  pseudo = jnp.argmax(probs_w, axis=-1).astype(jnp.int32)
  beta = state["classwise_acc"][pseudo]
  class_threshold = threshold * beta / (2.0 - beta)
  weights = (jnp.max(probs_w, axis=-1) >= class_threshold).astype(jnp.float32)
  state = update_state(state, probs_w, uidx, threshold=threshold,
                       thresh_warmup=thresh_warmup)
  return pseudo, weights, state


@ssl.register("flexmatch")
def build(ssl_cfg: Any) -> ssl.SSLMethod:
  threshold = float(ssl.cfg_value(ssl_cfg, "threshold"))
  warmup = bool(ssl.cfg_value(ssl_cfg, "flexmatch.thresh_warmup"))
  return ssl.SSLMethod(
      name="flexmatch", uses_unlabeled=True, uses_prototypes=False,
      init_state=init_state,
      pseudo_label=functools.partial(pseudo_label, threshold=threshold,
                                     thresh_warmup=warmup),
      extra_loss=ssl.no_extra_loss)
