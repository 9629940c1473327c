"""FreeMatch: self-adaptive global and class-wise thresholds plus a fairness term (USB's rule).

State (EMA with momentum m):
  tau: [] float32, global threshold, EMA of the batch mean confidence.
  p_model: [C] float32, EMA of the mean predicted distribution (local thresholds).
  label_hist: [C] float32, EMA of the histogram of hard predictions.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from aplt_jax import ssl


def init_state(num_classes: int, num_unlabeled: int) -> dict[str, jax.Array]:
  del num_unlabeled
  uniform = jnp.full((num_classes,), 1.0 / num_classes, jnp.float32)
  return {
      "tau": jnp.asarray(1.0 / num_classes, jnp.float32),
      "p_model": uniform,
      "label_hist": uniform,
  }


def update_state(state: dict[str, jax.Array], probs_w: jax.Array, *,
                 ema: float) -> dict[str, jax.Array]:
  """One EMA step of `tau`, `p_model` and `label_hist` from the batch `probs_w [B, C]`."""
  num_classes = probs_w.shape[-1]
  conf = jnp.max(probs_w, axis=-1)
  hist = jnp.mean(jax.nn.one_hot(jnp.argmax(probs_w, axis=-1), num_classes,
                                 dtype=jnp.float32), axis=0)
  return {
      "tau": ema * state["tau"] + (1.0 - ema) * jnp.mean(conf),
      "p_model": ema * state["p_model"] + (1.0 - ema) * jnp.mean(probs_w, axis=0),
      "label_hist": ema * state["label_hist"] + (1.0 - ema) * hist,
  }


def pseudo_label(probs_w: jax.Array, uidx: jax.Array, state: dict[str, jax.Array], *,
                 ema: float):
  """Updates the state, then masks with `tau * p_model[y] / max(p_model)` at `y = argmax p`.

  Returns:
    pseudo [B] int32, weights [B] float32 in {0, 1}, the updated state.
  """
  del uidx
  state = update_state(state, probs_w, ema=ema)
  pseudo = jnp.argmax(probs_w, axis=-1).astype(jnp.int32)
  p_model = state["p_model"]
  local = p_model[pseudo] / jnp.max(p_model)
  weights = (jnp.max(probs_w, axis=-1) >= state["tau"] * local).astype(jnp.float32)
  return pseudo, weights, state


def _safe_inverse(x: jax.Array) -> jax.Array:
  """1/x with 1/0 -> 0 (and a finite gradient everywhere)."""
  nonzero = x != 0
  return jnp.where(nonzero, 1.0 / jnp.where(nonzero, x, 1.0), 0.0)


def _sum_normalize(x: jax.Array) -> jax.Array:
  """x / sum(x) over the last axis; an all-zero vector stays zero."""
  total = jnp.sum(x, axis=-1, keepdims=True)
  return x / jnp.where(total != 0, total, 1.0)


def fairness(logits_s: jax.Array, weights: jax.Array,
             state: dict[str, jax.Array]) -> jax.Array:
  """Self-adaptive fairness term `sum_c a_c log(b_c + 1e-12)` (USB's sign: -H(a, b)).

  Over the selected rows (weight > 0) of the strong view: `p_s = softmax(logits_s)`,
  `hist_s` the normalised histogram of argmax p_s, `a = SumNorm(p_model / label_hist)`,
  `b = SumNorm(mean_sel(p_s) / hist_s)`. Returns 0 when nothing is selected. Gradients flow
  only through `mean_sel(p_s)`.

  Args:
    logits_s: [B, C] strong-view parametric logits.
    weights: [B] mask from `pseudo_label` (rows with weight > 0 are selected).
    state: the FreeMatch state after this step's update.

  Returns:
    [] float32, unweighted.
  """
  num_classes = logits_s.shape[-1]
  sel = (weights > 0).astype(jnp.float32)
  num_sel = jnp.sum(sel)
  denom = jnp.maximum(num_sel, 1.0)
  p_s = jax.nn.softmax(logits_s.astype(jnp.float32), axis=-1)
  mean_p = jnp.sum(sel[:, None] * p_s, axis=0) / denom
  onehot = jax.nn.one_hot(jnp.argmax(p_s, axis=-1), num_classes, dtype=jnp.float32)
  hist_s = jax.lax.stop_gradient(jnp.sum(sel[:, None] * onehot, axis=0) / denom)
  p_model = jax.lax.stop_gradient(state["p_model"])
  label_hist = jax.lax.stop_gradient(state["label_hist"])
  a = _sum_normalize(p_model * _safe_inverse(label_hist))
  b = _sum_normalize(mean_p * _safe_inverse(hist_s))
  value = jnp.sum(a * jnp.log(b + 1e-12))
  return jnp.where(num_sel > 0, value, 0.0)


def extra_loss(logits_s: jax.Array, weights: jax.Array, state: dict[str, jax.Array], *,
               ent_weight: float) -> jax.Array:
  """`ent_weight * fairness(...)`, the term added to the FreeMatch objective.

  `ent_weight` defaults to 0.001, the value in every FreeMatch config USB ships.
  """
  return ent_weight * fairness(logits_s, weights, state)


@ssl.register("freematch")
def build(ssl_cfg: Any) -> ssl.SSLMethod:
  ema = float(ssl.cfg_value(ssl_cfg, "freematch.ema"))
  ent_weight = float(ssl.cfg_value(ssl_cfg, "freematch.ent_weight"))
  return ssl.SSLMethod(
      name="freematch", uses_unlabeled=True, uses_prototypes=False,
      init_state=init_state,
      pseudo_label=functools.partial(pseudo_label, ema=ema),
      extra_loss=functools.partial(extra_loss, ent_weight=ent_weight))
