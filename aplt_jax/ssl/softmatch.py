"""SoftMatch: truncated-Gaussian sample weights with uniform distribution alignment (USB's rule).

The pseudo-label is the argmax of the raw weak prediction; the aligned probabilities only
set the confidence `c = max p~` that is weighted (and that mu/var track).

State (EMA with momentum m):
  mu: [] float32, EMA of the batch mean confidence c, starting at 1/C.
  var: [] float32, EMA of the batch unbiased variance of c, starting at 1.
  p_model: [C] float32, the mean predicted distribution for alignment: the first batch's
    mean, then its EMA (the uniform placeholder before that is never used).
  seen: [] int32, batches seen so far, saturating (0: `p_model` is not set yet).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from aplt_jax import ssl

_EPS = 1e-6  # Added to both sides of the alignment ratio.
_MAX_SEEN = 2**30  # `seen` saturates here instead of wrapping.


def init_state(num_classes: int, num_unlabeled: int) -> dict[str, jax.Array]:
  del num_unlabeled
  return {
      "mu": jnp.asarray(1.0 / num_classes, jnp.float32),
      "var": jnp.asarray(1.0, jnp.float32),
      "p_model": jnp.full((num_classes,), 1.0 / num_classes, jnp.float32),
      "seen": jnp.zeros((), jnp.int32),
  }


def align(probs_w: jax.Array, p_model: jax.Array) -> jax.Array:
  """Uniform alignment of `probs_w [B, C]`: `SumNorm(p * (1/C + eps) / (p_model + eps))` per row."""
  num_classes = probs_w.shape[-1]
  scaled = probs_w * ((1.0 / num_classes + _EPS) / (p_model + _EPS))
  return scaled / jnp.sum(scaled, axis=-1, keepdims=True)


def pseudo_label(probs_w: jax.Array, uidx: jax.Array, state: dict[str, jax.Array], *,
                 ema: float, n_sigma: float, dist_align: bool):
  """Updates p_model and aligns (optionally), updates mu/var, then weights the rows.

  `weight = exp(-min(c - mu, 0)^2 / (2 var / n_sigma^2))` with `c = max p~` (p~ the aligned
  probabilities) and the updated mu/var; rows at or above the mean confidence get weight 1.

  Returns:
    pseudo [B] int32 (argmax of the raw `probs_w`), weights [B] float32 in (0, 1], the
    updated state.
  """
  del uidx
  p_model = state["p_model"]
  probs = probs_w
  if dist_align:
    batch_mean = jnp.mean(probs_w, axis=0)
    p_model = jnp.where(state["seen"] > 0, ema * p_model + (1.0 - ema) * batch_mean,
                        batch_mean)
    probs = align(probs_w, p_model)
  conf = jnp.max(probs, axis=-1)
  batch = conf.shape[0]
  batch_var = jnp.var(conf, ddof=1 if batch > 1 else 0)
  mu = ema * state["mu"] + (1.0 - ema) * jnp.mean(conf)
  var = ema * state["var"] + (1.0 - ema) * batch_var
  gap = jnp.minimum(conf - mu, 0.0)
  weights = jnp.exp(-jnp.square(gap) / (2.0 * jnp.maximum(var, 1e-12) / n_sigma**2))
  pseudo = jnp.argmax(probs_w, axis=-1).astype(jnp.int32)
  new_state = {"mu": mu, "var": var, "p_model": p_model.astype(jnp.float32),
               "seen": jnp.minimum(state["seen"], _MAX_SEEN) + 1}
  return pseudo, weights.astype(jnp.float32), new_state


@ssl.register("softmatch")
def build(ssl_cfg: Any) -> ssl.SSLMethod:
  ema = float(ssl.cfg_value(ssl_cfg, "softmatch.ema"))
  n_sigma = float(ssl.cfg_value(ssl_cfg, "softmatch.n_sigma"))
  dist_align = bool(ssl.cfg_value(ssl_cfg, "softmatch.dist_align"))
  return ssl.SSLMethod(
      name="softmatch", uses_unlabeled=True, uses_prototypes=False,
      init_state=init_state,
      pseudo_label=functools.partial(pseudo_label, ema=ema, n_sigma=n_sigma,
                                     dist_align=dist_align),
      extra_loss=ssl.no_extra_loss)
