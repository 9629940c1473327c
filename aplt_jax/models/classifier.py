"""A backbone plus the parametric linear head `h` (DESIGN §2)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Classifier(nn.Module):
  """Wraps any backbone `g` with `h(f) = W f + b`.

  The backbone must map `(x, train)` to features [B, d]; it is the submodule `backbone`,
  the head is `head`, so `params['backbone']` can be ported or frozen on its own.

  Attributes:
    backbone: a Linen module, `backbone(x, train) -> [B, d]`.
    num_classes: C.
  """
  backbone: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    """Returns (logits [B, C] float32, features [B, d] float32)."""
    features = self.backbone(x, train=train).astype(jnp.float32)
    logits = nn.Dense(self.num_classes, dtype=jnp.float32, param_dtype=jnp.float32,
                      name="head")(features)
    return logits, features
