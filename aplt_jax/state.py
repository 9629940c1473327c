"""Explicit pytrees that carry everything a run needs between steps and phases.

`TrainState` is what the online train step updates; `Prototypes` is the frozen output of the
offline phase (DESIGN E4), passed to the train step as an ordinary argument so that swapping it
between rounds never recompiles.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class Prototypes:
  """Offline pseudo-labels and the memory-based prototype classifier.

  Rows of `labels` and `keep` are indexed by the dense index of every training clip
  (N = labeled + unlabeled). Labeled rows carry their true label and `keep=False`.

  Attributes:
    centers: [C, d] float32, unit-norm class prototypes `M`.
    labels: [N] int32, offline pseudo-label (cluster) of each clip.
    keep: [N] bool, unlabeled clips that passed the self-adaptive threshold.
    thresholds: [C] float32, per-class cosine-distance thresholds tau_t(c).
    round: [] int32, the round that produced them (0: none yet).
    offset: [d] float32, mean unit-norm feature subtracted before normalising when the offline
      phase centres its features (`aplt.center`); zeros otherwise.
  """
  centers: jax.Array
  labels: jax.Array
  keep: jax.Array
  thresholds: jax.Array
  round: jax.Array
  offset: jax.Array

  @classmethod
  def empty(cls, num_classes: int, feature_dim: int, num_train: int) -> "Prototypes":
    return cls(
        centers=jnp.zeros((num_classes, feature_dim), jnp.float32),
        labels=jnp.zeros((num_train,), jnp.int32),
        keep=jnp.zeros((num_train,), bool),
        thresholds=jnp.zeros((num_classes,), jnp.float32),
        round=jnp.zeros((), jnp.int32),
        offset=jnp.zeros((feature_dim,), jnp.float32),
    )


@flax.struct.dataclass
class TrainState:
  """Everything the online phase updates, one pytree.

  `rng` holds raw key data (uint32) so it checkpoints like any array, and `rng_impl` names its
  PRNG implementation; the step key is `fold_in(key, step)`, so a resumed run draws the same
  augmentations.
  `ssl_state` is the method's explicit statistics (FlexMatch's per-sample labels,
  FreeMatch's EMA thresholds, ...), checkpointed with the rest.
  """
  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  ema_params: PyTree
  opt_state: optax.OptState
  ssl_state: PyTree
  rng: jax.Array
  apply_fn: Callable[..., Any] = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  rng_impl: str = flax.struct.field(pytree_node=False, default="threefry2x32")

  def key(self) -> jax.Array:
    """The run's typed PRNG key."""
    return jax.random.wrap_key_data(self.rng, impl=self.rng_impl)
