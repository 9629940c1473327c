"""FixMatch's confidence mask, also APLT's parametric unlabeled rule (E7).

pseudo = argmax p, weight = 1[max p >= tau]. No state.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from aplt_jax import ssl


def confidence_mask(probs_w: jax.Array, threshold: float) -> tuple[jax.Array, jax.Array]:
  """Hard pseudo-labels and fixed-threshold mask.

  Args:
    probs_w: [B, C] weak-view class probabilities.
    threshold: confidence threshold tau.

  Returns:
    pseudo [B] int32 (argmax p) and weights [B] float32 (1 where max p >= tau).
  """
  pseudo = jnp.argmax(probs_w, axis=-1).astype(jnp.int32)
  weights = (jnp.max(probs_w, axis=-1) >= threshold).astype(jnp.float32)
  return pseudo, weights


def pseudo_label(probs_w: jax.Array, uidx: jax.Array, state: Any, *,
                 threshold: float) -> tuple[jax.Array, jax.Array, Any]:
  """FixMatch rule; `uidx` is unused and `state` passes through."""
  del uidx
  pseudo, weights = confidence_mask(probs_w, threshold)
  return pseudo, weights, state


def _build(name: str, uses_prototypes: bool, ssl_cfg: Any) -> ssl.SSLMethod:
  threshold = float(ssl.cfg_value(ssl_cfg, "threshold"))
  return ssl.SSLMethod(
      name=name, uses_unlabeled=True, uses_prototypes=uses_prototypes,
      init_state=ssl.trivial_state,
      pseudo_label=functools.partial(pseudo_label, threshold=threshold),
      extra_loss=ssl.no_extra_loss)


@ssl.register("fixmatch")
def build_fixmatch(ssl_cfg: Any) -> ssl.SSLMethod:
  return _build("fixmatch", False, ssl_cfg)


@ssl.register("aplt")
def build_aplt(ssl_cfg: Any) -> ssl.SSLMethod:
  """APLT: FixMatch's parametric rule; the prototype losses live in the train step."""
  return _build("aplt", True, ssl_cfg)


@ssl.register("supervised_proto")
def build_supervised_proto(ssl_cfg: Any) -> ssl.SSLMethod:
  """Attribution control (a grid row, not a method to pick): APLT's labeled losses only, E5 +
  alpha E6 against prototypes built from labeled points alone; no unlabeled data at all."""
  del ssl_cfg
  return ssl.SSLMethod(
      name="supervised_proto", uses_unlabeled=False, uses_prototypes=True,
      init_state=ssl.trivial_state,
      pseudo_label=ssl._supervised_pseudo_label,  # pylint: disable=protected-access
      extra_loss=ssl.no_extra_loss)
