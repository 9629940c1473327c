"""The jitted steps: train (every method), evaluate, and embed (offline phase E1).

Each is built once per run by a `make_*` factory that closes over the static pieces (model,
method, augmentation, loss weights) and returns a pure function of pytrees. Prototypes enter the
train step as an ordinary argument, so swapping them between rounds never retraces.

Batch layout (global arrays, rows sharded over the mesh's 'data' axis):
  batch['labeled']   = {'x': [B, ...] raw clips, 'label': [B] i32}
  batch['unlabeled'] = {'x': [muB, ...], 'index': [muB] i32 dense train index,
                        'uidx': [muB] i32 position in the unlabeled set,
                        'hidden': [muB] i32 hidden label or -1 (monitoring only)}
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from aplt_jax import faults
from aplt_jax import losses
from aplt_jax.augment import Views
from aplt_jax.ssl import SSLMethod
from aplt_jax.state import Prototypes, TrainState

PyTree = Any
# How the kept offline labels are weighted in E8 and the head term (`aplt.kept_weight`).
KEPT_WEIGHTS = ("uniform", "class_balanced")


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Static loss hyperparameters (DESIGN E5-E9) and the prototype branch's options.

  `head_weight` (gamma): the kept offline pseudo-labels also train the parametric head h on the
  unlabeled strong view, `gamma * lambda_u * masked_mean(CE(h(SA(u)), y_hat), keep)`.
  `rampup_steps`: alpha, beta and gamma grow linearly from 0 over this many steps after
  `rampup_start` (the end of the supervised warm-up); 0 applies them at full weight at once.
  `center`: the prototype branch sees `normalize(f) - prototypes.offset` (the offline phase's
  feature mean), the geometry its centres were built in.
  `online_weight`: APLT's weight on E7, FixMatch's online term (0 with `head_weight` > 0: the
  head learns from the offline labels instead of its own online ones).
  `online_agree`: E7's online pseudo-label counts only where it equals the clip's offline
  cluster (kept or not): a confident online error must also be the frozen clustering's error to
  be trained on, which breaks FixMatch's self-reinforcing loop.
  `offline_agree`: the converse check: a kept offline label trains (E8 and the head term) only
  where the current model's weak-view argmax equals it (aimed at a round's wrong clusters pulling
  the model away from what it predicts; on watch it drops few clips, as the head and the
  clustering read one embedding: docs/choosing_the_offline_phase.md).
  `class_prior` ([C] labeled class frequencies, or empty): when given, each kept offline label's
  E8 and head-term weight is `losses.class_balanced_weights` of its class, so every class's share
  of those terms follows the labeled prior instead of its cluster's size
  (`aplt.kept_weight=class_balanced`).
  """
  lambda_u: float = 1.0
  alpha: float = 1.0
  beta: float = 1.0
  scale: float = 16.0
  margin: float = 0.2
  sync: bool = False  # Ablation: E8 labels from the current online prediction, not offline.
  sync_threshold: float = 0.95
  head_weight: float = 0.0
  rampup_start: int = 0
  rampup_steps: int = 0
  center: bool = False
  online_agree: bool = False
  online_weight: float = 1.0
  offline_agree: bool = False
  class_prior: tuple[float, ...] = ()

  @classmethod
  def from_config(cls, config, class_prior=()) -> "LossWeights":
    """`class_prior`: the labeled class frequencies, used when `aplt.kept_weight=class_balanced`."""
    a = config.aplt
    if a.kept_weight == "class_balanced" and not len(class_prior):
      raise ValueError("aplt.kept_weight=class_balanced needs the labeled class frequencies")
    prior = tuple(float(p) for p in class_prior) if a.kept_weight == "class_balanced" else ()
    return cls(lambda_u=config.ssl.lambda_u, alpha=a.alpha, beta=a.beta, scale=a.scale,
               margin=a.margin, sync=a.sync, sync_threshold=config.ssl.threshold,
               head_weight=a.head_weight, rampup_start=config.warmup_steps,
               rampup_steps=a.rampup_steps, center=a.center, online_agree=a.online_agree,
               online_weight=a.online_weight, offline_agree=a.offline_agree, class_prior=prior)

  def ramp(self, step: jax.Array) -> jax.Array:
    """[] float32 factor in [0, 1] on the prototype-branch weights at global `step`."""
    if self.rampup_steps <= 0:
      return jnp.ones((), jnp.float32)
    done = (step - self.rampup_start + 1).astype(jnp.float32) / self.rampup_steps
    return jnp.clip(done, 0.0, 1.0)


def proto_features(feats: jax.Array, prototypes: Prototypes, center: bool) -> jax.Array:
  """Features as the prototype classifier sees them: raw, or unit-norm minus the offset."""
  if not center:
    return feats
  return losses.l2_normalize(feats.astype(jnp.float32)) - jax.lax.stop_gradient(
      prototypes.offset)


def make_optimizer(optim_cfg, total_steps: int) -> optax.GradientTransformation:
  """SGD with Nesterov momentum, decoupled-from-BN weight decay and FixMatch's cosine schedule.

  Weight decay applies to kernels only (ndim > 1): biases and BatchNorm scales are exempt, as in
  USB. The schedule `lr * cos(7 pi k / 16 K)` is FixMatch's; "constant" keeps lr fixed.
  """
  lr = optim_cfg.lr
  if optim_cfg.schedule == "cosine":
    schedule = lambda k: lr * jnp.cos(7.0 * jnp.pi * k / (16.0 * max(total_steps, 1)))
  elif optim_cfg.schedule == "constant":
    schedule = optax.constant_schedule(lr)
  else:
    raise ValueError(f"optim.schedule={optim_cfg.schedule!r}: expected 'cosine' or 'constant'.")
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  parts = []
  if optim_cfg.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(optim_cfg.grad_clip))
  parts += [
      optax.add_decayed_weights(optim_cfg.weight_decay, mask=decay_mask),
      optax.sgd(schedule, momentum=optim_cfg.momentum, nesterov=optim_cfg.nesterov),
  ]
  return optax.chain(*parts)


def create_train_state(model, tx, method: SSLMethod, *, key: jax.Array, sample_x: jax.Array,
                       num_classes: int, num_unlabeled: int) -> TrainState:
  """Initialises parameters from `key` on a sample input `[b, ...]` (float, model input)."""
  init_key, rng_key = jax.random.split(key)
  variables = model.init(init_key, sample_x, train=False)
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      ema_params=params,
      opt_state=tx.init(params),
      ssl_state=method.init_state(num_classes, num_unlabeled),
      rng=jax.random.key_data(rng_key),
      apply_fn=model.apply,
      tx=tx,
      rng_impl=str(jax.random.key_impl(rng_key)),
  )


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
  """EMA decay with a warm start, min(decay, (1 + k) / (10 + k)) (choice): early EMA weights
  follow the model instead of its random initialisation, which matters for short CPU runs."""
  k = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + k) / (10.0 + k))


def step_key(state: TrainState) -> jax.Array:
  """The step's root key: the run key folded by the global step."""
  return jax.random.fold_in(state.key(), state.step)


def _accuracy_where(pred, hidden, weight):
  """Weighted accuracy of `pred` against hidden labels, ignoring unknown (-1) labels."""
  w = weight * (hidden >= 0)
  return jnp.sum(w * (pred == hidden)) / jnp.maximum(jnp.sum(w), 1e-8)


def make_train_step(method: SSLMethod, views: Views, weights: LossWeights, ema_decay: float):
  """Returns `train_step(state, batch, prototypes) -> (state, metrics)` for `method`.

  One forward pass over the concatenation [labeled WA, labeled SA, unlabeled WA, unlabeled SA],
  keeping only the views the method uses (labeled SA feeds only the prototype loss E6; methods
  without unlabeled data skip the unlabeled views). BatchNorm statistics are those of the whole
  concatenation. Loss: E9, `L_sup + alpha L_sup^margin + lambda_u (L_u + beta L_u^margin)` plus
  the method's extra term (FreeMatch's fairness), with the prototype terms zero for non-APLT
  methods. Prototypes enter under `stop_gradient`.
  """
  protos_used = method.uses_prototypes
  unlabeled_used = method.uses_unlabeled

  def train_step(state: TrainState, batch: PyTree, prototypes: Prototypes):
    k_lw, k_ls, k_uw, k_us = jax.random.split(step_key(state), 4)
    lab = batch["labeled"]
    y = lab["label"]
    parts = [views.weak(k_lw, lab["x"])]
    if protos_used:
      parts.append(views.strong(k_ls, lab["x"]))
    if unlabeled_used:
      unl = batch["unlabeled"]
      parts += [views.weak(k_uw, unl["x"]), views.strong(k_us, unl["x"])]
    sizes = [p.shape[0] for p in parts]
    x = jnp.concatenate(parts, axis=0)
    centers = jax.lax.stop_gradient(prototypes.centers)
    ramp = weights.ramp(state.step)

    def loss_fn(params):
      (logits, feats), updates = state.apply_fn(
          {"params": params, "batch_stats": state.batch_stats}, x, train=True,
          mutable=["batch_stats"])
      offsets = [0]
      for s in sizes:
        offsets.append(offsets[-1] + s)
      chunk = lambda a, i: a[offsets[i]:offsets[i + 1]]
      terms, aux = {}, {}
      terms["sup_logits"] = jnp.mean(losses.cross_entropy(chunk(logits, 0), y))
      terms["sup_logits"] = faults.poison(terms["sup_logits"], state.step, "nan")  # tests only
      zero = jnp.zeros((), jnp.float32)
      terms["sup_margin"] = zero
      terms["u_logits"] = zero
      terms["u_margin"] = zero
      terms["u_head"] = zero
      extra = zero
      new_ssl = state.ssl_state
      if protos_used:
        pfeats = proto_features(feats, prototypes, weights.center)
        terms["sup_margin"] = jnp.mean(losses.cosface_loss(
            chunk(pfeats, 1), centers, y, scale=weights.scale, margin=weights.margin))
      if unlabeled_used:
        iw, is_ = (2, 3) if protos_used else (1, 2)
        logits_w, logits_s = chunk(logits, iw), chunk(logits, is_)
        probs_w = jax.nn.softmax(jax.lax.stop_gradient(logits_w).astype(jnp.float32))
        pseudo, w, new_ssl = method.pseudo_label(probs_w, unl["uidx"], state.ssl_state)
        if protos_used and weights.online_agree:  # the offline cluster checks the online label
          w = w * (pseudo == prototypes.labels[unl["index"]]).astype(w.dtype)
        terms["u_logits"] = losses.consistency_loss(logits_s, pseudo, w)
        extra = method.extra_loss(logits_s, w, new_ssl)
        hidden = unl["hidden"]
        aux["mask_rate"] = jnp.mean(w)
        aux["pl_acc_masked"] = _accuracy_where(pseudo, hidden, w)
        aux["pl_acc_all"] = _accuracy_where(jnp.argmax(probs_w, -1), hidden, jnp.ones_like(w))
        if protos_used:
          if weights.sync:
            yhat = jnp.argmax(probs_w, -1)
            keep = (jnp.max(probs_w, -1) >= weights.sync_threshold).astype(jnp.float32)
            weight = keep
          else:
            yhat = prototypes.labels[unl["index"]]
            keep = prototypes.keep[unl["index"]].astype(jnp.float32)
            if weights.offline_agree:  # the online prediction checks the offline label
              keep = keep * (jnp.argmax(probs_w, -1) == yhat).astype(jnp.float32)
            weight = keep
            if weights.class_prior:  # each class's share follows the labeled prior
              per_class = losses.class_balanced_weights(prototypes.labels, prototypes.keep,
                                                        jnp.asarray(weights.class_prior))
              weight = keep * per_class[yhat]
          e8 = losses.cosface_loss(chunk(pfeats, is_), centers, yhat, scale=weights.scale,
                                   margin=weights.margin)
          terms["u_margin"] = losses.masked_mean(e8, weight)
          if weights.head_weight:
            terms["u_head"] = losses.consistency_loss(logits_s, yhat, weight)
          aux["proto_keep_rate"] = jnp.mean(keep)
          aux["proto_pl_acc_kept"] = _accuracy_where(yhat, hidden, keep)
        aux["loss_extra"] = extra  # The method's own term (FreeMatch's fairness), else 0.
      online = weights.online_weight * terms["u_logits"] if protos_used else terms["u_logits"]
      total = losses.aplt_total(terms["sup_logits"], terms["sup_margin"], online,
                                terms["u_margin"], alpha=weights.alpha * ramp,
                                beta=weights.beta * ramp, lambda_u=weights.lambda_u) + extra
      total += weights.lambda_u * weights.head_weight * ramp * terms["u_head"]
      return total, (terms, aux, updates["batch_stats"], new_ssl)

    (loss, (terms, aux, batch_stats, new_ssl)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    grads = faults.poison(grads, state.step, "nan_grad")  # tests only; unarmed, a no-op
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    d = ema_decay_at(state.step, ema_decay)
    ema_params = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, state.ema_params, params)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              ema_params=ema_params, opt_state=opt_state, ssl_state=new_ssl)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "proto_ramp": ramp,
               **{f"loss_{k}": v for k, v in terms.items()}, **aux}
    return new_state, metrics

  return train_step


def _variables(state: TrainState, use_ema: bool) -> dict:
  return {"params": state.ema_params if use_ema else state.params,
          "batch_stats": state.batch_stats}


def make_eval_step(views: Views, head: str = "linear", scale: float = 16.0,
                   center: bool = False):
  """Returns `eval_step(state, x, prototypes, use_ema) -> (scores [B, C], features [B, d])`.

  `head`: 'linear' (parametric head h), 'proto' (prototype classifier p(z)), or 'ensemble'
  (mean of the two softmaxes). `use_ema` is static (two compilations at most). Padding rows are
  dropped on the host by the caller, so every example counts once.
  """
  if head not in ("linear", "proto", "ensemble"):
    raise ValueError(f"eval.head={head!r}: expected 'linear', 'proto' or 'ensemble'.")

  def eval_step(state, x, prototypes, use_ema):
    logits, feats = state.apply_fn(_variables(state, use_ema), views.center(x), train=False)
    if head == "linear":
      scores = logits
    else:
      proto = losses.prototype_logits(proto_features(feats, prototypes, center),
                                      prototypes.centers, scale)
      if head == "proto":
        scores = proto
      else:
        scores = jnp.log(0.5 * jax.nn.softmax(logits) + 0.5 * jax.nn.softmax(proto))
    return scores.astype(jnp.float32), feats.astype(jnp.float32)

  return eval_step


def make_embed_step(views: Views):
  """Returns `embed_step(state, x, key, weak, use_ema) -> z [B, d]` unit-norm features (E1).

  Parameters frozen, BatchNorm in inference mode; `weak` (static) picks a random weak view
  (labeled augmentation) instead of the centre view.
  """

  def embed_step(state, x, key, weak, use_ema):
    inputs = views.weak(key, x) if weak else views.center(x)
    _, feats = state.apply_fn(_variables(state, use_ema), inputs, train=False)
    feats = feats.astype(jnp.float32)
    return feats / jnp.maximum(jnp.linalg.norm(feats, axis=-1, keepdims=True), 1e-12)

  return embed_step
