"""Unlabeled-data rules of the SSL methods (DESIGN §2, E7 and "Baselines").

Each method is an `SSLMethod`: a bundle of pure functions over an explicit state pytree
(per-sample or per-class statistics, checkpointed with the train state). The train step calls
`pseudo_label` on the weak view's probabilities and adds `extra_loss` to its objective.
Hyperparameters are read once from the config by `get` and closed over, so they are static
under `jax.jit`.

Usage:
  method = ssl.get(config.method, config.ssl)
  state = method.init_state(num_classes, num_unlabeled)
  pseudo, weights, state = method.pseudo_label(probs_w, uidx, state)
  loss_u = losses.consistency_loss(logits_s, pseudo, weights)
  loss = ... + lambda_u * loss_u + method.extra_loss(logits_s, weights, state)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from aplt_jax.registry import Registry

PyTree = Any
# (probs_w [B, C], uidx [B] int, state) -> (pseudo [B] int32, weights [B] float32, new_state)
PseudoLabelFn = Callable[[jax.Array, jax.Array, PyTree], tuple[jax.Array, jax.Array, PyTree]]
# (logits_s [B, C], weights [B], state) -> [] float, already weighted
ExtraLossFn = Callable[[jax.Array, jax.Array, PyTree], jax.Array]


@dataclasses.dataclass(frozen=True)
class SSLMethod:
  """One method's unlabeled rule.

  Attributes:
    name: registry name.
    uses_unlabeled: False only for 'supervised' (the train step may skip the unlabeled views).
    uses_prototypes: True only for 'aplt' (the train step adds the prototype losses E6, E8).
    init_state: `(num_classes, num_unlabeled) -> state`, the method's statistics at step 0.
    pseudo_label: `(probs_w [B, C], uidx [B], state) -> (pseudo [B] int32, weights [B]
      float32, new_state)`. `probs_w` is the softmax of the weak view's parametric logits
      (the caller stops its gradient); `uidx` indexes per-sample state (0..Nu-1). Batches
      are global: means over B are means over the global batch.
    extra_loss: `(logits_s [B, C], weights [B], state) -> []`, an additional loss term
      already multiplied by its weight (0 for methods that have none). It receives the
      state returned by `pseudo_label` in the same step.
  """
  name: str
  uses_unlabeled: bool
  uses_prototypes: bool
  init_state: Callable[[int, int], PyTree]
  pseudo_label: PseudoLabelFn
  extra_loss: ExtraLossFn


_REGISTRY: Registry[Callable[[Any], SSLMethod]] = Registry("SSL method")


register = _REGISTRY.register  # decorator: `builder(ssl_cfg) -> SSLMethod` under a name
names = _REGISTRY.names  # registered method names, sorted


def get(name: str, ssl_cfg: Any = None) -> SSLMethod:
  """Builds the method `name` with hyperparameters from `ssl_cfg`.

  Args:
    name: one of `names()`.
    ssl_cfg: `ml_collections.ConfigDict`, plain dict or None; missing keys take the DESIGN
      defaults (see `cfg_value`).

  Raises:
    ValueError: for an unknown name (the message lists the known ones).
  """
  return _REGISTRY.get(name)(ssl_cfg)


_DEFAULTS = {
    "threshold": 0.95,
    "flexmatch.thresh_warmup": True,
    "freematch.ema": 0.999,
    "freematch.ent_weight": 0.001,
    "softmatch.ema": 0.999,
    "softmatch.n_sigma": 2.0,
    "softmatch.dist_align": True,
}


def cfg_value(ssl_cfg: Any, dotted: str) -> Any:
  """Reads `a.b` from a ConfigDict / dict (nested), falling back to the DESIGN default."""
  node = ssl_cfg
  for part in dotted.split("."):
    if node is None or part not in node:
      return _DEFAULTS[dotted]
    node = node[part]
  return node


def trivial_state(num_classes: int, num_unlabeled: int) -> PyTree:
  """State of the stateless methods: an empty dict (no leaves)."""
  del num_classes, num_unlabeled
  return {}


def no_extra_loss(logits_s: jax.Array, weights: jax.Array, state: PyTree) -> jax.Array:
  """The zero extra loss, `[]` float32."""
  del logits_s, weights, state
  return jnp.zeros((), jnp.float32)


def _supervised_pseudo_label(probs_w, uidx, state):
  """Labels-only training: argmax labels with zero weights (the unlabeled loss vanishes)."""
  del uidx
  pseudo = jnp.argmax(probs_w, axis=-1).astype(jnp.int32)
  return pseudo, jnp.zeros(probs_w.shape[:1], jnp.float32), state


@register("supervised")
def _build_supervised(ssl_cfg: Any) -> SSLMethod:
  del ssl_cfg
  return SSLMethod(name="supervised", uses_unlabeled=False, uses_prototypes=False,
                   init_state=trivial_state, pseudo_label=_supervised_pseudo_label,
                   extra_loss=no_extra_loss)


# Importing the method modules fills the registry (they import the names defined above).
from aplt_jax.ssl import fixmatch  # noqa: E402,F401
from aplt_jax.ssl import flexmatch  # noqa: E402,F401
from aplt_jax.ssl import freematch  # noqa: E402,F401
from aplt_jax.ssl import softmatch  # noqa: E402,F401
