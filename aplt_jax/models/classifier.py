"""A backbone plus the parametric linear head `h` (DESIGN §2)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Classifier(nn.Module):
  """Wraps any backbone `g` with `h(f) = W f + b`, and optionally a projection head.

  The backbone must map `(x, train)` to features [B, d]; it is the submodule `backbone`,
  the head is `head`, so `params['backbone']` can be ported or frozen on its own.

  Attributes:
    backbone: a Linen module, `backbone(x, train) -> [B, d]`.
    num_classes: C.
    proj_dim: 0, or P: the returned features are then `proj(relu(proj_hidden(f)))` [B, P]
      instead of f, so the prototype branch (k-means, the CosFace losses, the proto head) works
      in a learned space of any sign while `h` still reads f (`model.proj_dim`).
  """
  backbone: nn.Module
  num_classes: int
  proj_dim: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    """Returns (logits [B, C] float32, features [B, d or P] float32)."""
    features = self.backbone(x, train=train).astype(jnp.float32)
    dense = lambda n, name: nn.Dense(n, dtype=jnp.float32, param_dtype=jnp.float32, name=name)
    logits = dense(self.num_classes, "head")(features)
    if self.proj_dim:
      features = dense(self.proj_dim, "proj")(nn.relu(dense(self.proj_dim, "proj_hidden")(
          features)))
    return logits, features
