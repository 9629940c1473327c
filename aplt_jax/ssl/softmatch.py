"""SoftMatch: truncated-Gaussian sample weights with uniform distribution alignment (USB's rule).

State (EMA with momentum m):
  mu: [] float32, EMA of the batch mean confidence (of the aligned probabilities).
  var: [] float32, EMA of the batch unbiased variance of that confidence.
  p_model: [C] float32, EMA of the mean predicted distribution, for uniform alignment.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from aplt_jax import ssl


def init_state(num_classes: int, num_unlabeled: int) -> dict[str, jax.Array]:
  del num_unlabeled
  return {
      "mu": jnp.asarray(1.0 / num_classes, jnp.float32),
      "var": jnp.asarray(1.0, jnp.float32),
      "p_model": jnp.full((num_classes,), 1.0 / num_classes, jnp.float32),
  }


def align(probs_w: jax.Array, p_model: jax.Array) -> jax.Array:
  """Uniform alignment: `SumNorm(p * (1/C) / p_model)` per row of `probs_w [B, C]`."""
  num_classes = probs_w.shape[-1]
  scaled = probs_w * ((1.0 / num_classes) / jnp.maximum(p_model, 1e-12))
  return scaled / jnp.sum(scaled, axis=-1, keepdims=True)


def pseudo_label(probs_w: jax.Array, uidx: jax.Array, state: dict[str, jax.Array], *,
                 ema: float, n_sigma: float, dist_align: bool):
  """Aligns (optionally), updates mu/var, then weights by a Gaussian below the mean.

  `weight = exp(-min(c - mu, 0)^2 / (2 var / n_sigma^2))` with `c = max p~`; samples at or
  above the running mean confidence get weight 1.

  Returns:
    pseudo [B] int32 (argmax of the aligned probabilities), weights [B] float32 in (0, 1],
    the updated state.
  """
  del uidx
  p_model = state["p_model"]
  probs = probs_w
  if dist_align:
    p_model = ema * p_model + (1.0 - ema) * jnp.mean(probs_w, axis=0)
    probs = align(probs_w, p_model)
  conf = jnp.max(probs, axis=-1)
  batch = conf.shape[0]
  batch_var = jnp.var(conf, ddof=1 if batch > 1 else 0)
  mu = ema * state["mu"] + (1.0 - ema) * jnp.mean(conf)
  var = ema * state["var"] + (1.0 - ema) * batch_var
  gap = jnp.minimum(conf - mu, 0.0)
  weights = jnp.exp(-jnp.square(gap) / (2.0 * jnp.maximum(var, 1e-12) / n_sigma**2))
  pseudo = jnp.argmax(probs, axis=-1).astype(jnp.int32)
  new_state = {"mu": mu, "var": var, "p_model": p_model}
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
