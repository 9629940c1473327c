"""The JAX side of the train-step benchmarks: a TSM-ResNet supervised step, as the trainer jits it.

`build(...)` returns a `ModelStep`: the state (float32 master weights, optional bfloat16
compute), one jitted step `(state, x, y) -> (state, loss)` that runs forward, backward and the
project's optimizer (SGD with Nesterov momentum and weight decay, `steps.make_optimizer`) and
updates BatchNorm statistics, with the state donated (as `train.Run` does), and a batch maker.
The project's full train step adds on-device augmentation and the SSL losses around exactly
this; the benchmarks compare the model part against PyTorch.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aplt_jax import losses
from aplt_jax import models
from aplt_jax import ssl
from aplt_jax import steps


@dataclasses.dataclass
class ModelStep:
  state: Any
  step: Callable  # jitted (state, x, y) -> (state, loss); donates state
  batch: Callable[[int], tuple[jax.Array, jax.Array]]  # seed -> (x [B,T,S,S,3] f32, y [B] i32)
  num_params: int


def optimizer_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(lr=0.01, momentum=0.9, nesterov=True,
                                        weight_decay=5e-4, schedule="constant", grad_clip=0.0))


def build(depth: int, *, batch: int, frames: int, size: int, num_classes: int = 52,
          width_mult: float = 1.0, dtype: str = "float32", stem: str = "imagenet",
          seed: int = 0) -> ModelStep:
  """A jitted supervised TSM-ResNet-`depth` train step on `[batch, frames, size, size, 3]`."""
  model = models.build(f"tsm_resnet{depth}", num_classes, width_mult=width_mult, stem=stem,
                       input_mode="rgb", dtype=dtype)
  tx = steps.make_optimizer(optimizer_config(), total_steps=1000)
  sample = jnp.zeros((1, frames, size, size, 3), jnp.float32)
  init = jax.jit(lambda key: steps.create_train_state(
      model, tx, ssl.get("supervised"), key=key,
      sample_x=sample, num_classes=num_classes, num_unlabeled=0))
  state = init(jax.random.key(seed, impl="rbg"))

  def step(state, x, y):
    def loss_fn(params):
      (logits, _), upd = state.apply_fn({"params": params, "batch_stats": state.batch_stats},
                                        x, train=True, mutable=["batch_stats"])
      return jnp.mean(losses.cross_entropy(logits, y)), upd["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, batch_stats=stats,
                         opt_state=opt_state), loss

  def make_batch(s: int):
    rng = np.random.default_rng(s)
    x = rng.random((batch, frames, size, size, 3), dtype=np.float32)
    y = rng.integers(0, num_classes, batch).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)

  n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  return ModelStep(state, jax.jit(step, donate_argnums=(0,)), make_batch, n)


def compile_with_flops(ms: ModelStep, x, y) -> tuple[Callable, float]:
  """The step compiled ahead of time (donation kept) and XLA's count of its floating-point
  operations (0.0 where the backend reports none). Call the returned function, not `ms.step`,
  to avoid a second compilation."""
  compiled = ms.step.lower(ms.state, x, y).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return compiled, float((cost or {}).get("flops", 0.0))
