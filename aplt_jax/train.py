"""The round loop: supervised warm-up, then rounds of (offline phase, online steps).

`train_and_evaluate(config, workdir)` is the one entry point. It owns I/O, phases, checkpoints
and logging; every piece of math is a jitted function from `steps`, `offline` and friends. The
frozen Prototypes pytree is swapped between rounds as an ordinary argument of the train step.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from aplt_jax import checkpoint as ckpt_lib
from aplt_jax import config_check
from aplt_jax import data as data_lib
from aplt_jax import evaluate as evaluate_lib
from aplt_jax import faults
from aplt_jax import metric_writer
from aplt_jax import models
from aplt_jax import offline
from aplt_jax import parallel
from aplt_jax import preemption
from aplt_jax import report
from aplt_jax import ssl
from aplt_jax import steps
from aplt_jax import augment
from aplt_jax import workdir as workdir_lib
from aplt_jax.data import loader
from aplt_jax.data import split as split_lib
from aplt_jax.state import Prototypes


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Global-step layout: warm-up [0, warmup), then rounds of `per_round` steps up to `total`."""
  total: int
  warmup: int
  per_round: int

  @property
  def num_rounds(self) -> int:
    return max(0, math.ceil((self.total - self.warmup) / self.per_round))

  def span(self, r: int) -> tuple[int, int]:
    start = self.warmup + (r - 1) * self.per_round
    return start, min(start + self.per_round, self.total)


class _Progress:
  """A tqdm bar per phase (or nothing when progress is off / not process 0)."""

  def __init__(self, enabled: bool):
    self.enabled = enabled and jax.process_index() == 0

  def bar(self, total: int, desc: str):
    if not self.enabled:
      return None
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

  def say(self, msg: str) -> None:
    if jax.process_index() != 0:
      return
    if self.enabled:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      tqdm.write(msg)
    else:
      print(msg, flush=True)


class Run:
  """One training run: the static pieces (data, model, jitted steps) and the loop over phases."""

  def __init__(self, config, workdir: str, devices=None):
    self.config = config
    self.workdir = workdir
    self.mesh = parallel.make_mesh(devices)
    self.progress = _Progress(config.progress)
    self.preempt = preemption.Watcher()  # train_and_evaluate enters it (the SIGTERM handler)
    c = config
    config_check.check_against_mesh(c, self.mesh)  # before preparing any data
    self.dataset = data_lib.build(c.data)
    config_check.check_against_data(c, self.dataset, self.mesh)
    workdir_lib.check_data(workdir, workdir_lib.data_fingerprint(c.data, self.dataset),
                           write=jax.process_index() == 0)
    self.num_classes = self.dataset.num_classes
    labels = self.dataset.train_labels
    split_seed = c.seed if c.data.split_seed is None else c.data.split_seed
    self.labeled = split_lib.load_or_create(
        workdir, labels, self.num_classes, seed=split_seed, ratio=c.data.labeled_ratio,
        per_class=c.data.labels_per_class)
    is_labeled = np.zeros(len(labels), bool)
    is_labeled[self.labeled] = True
    self.unlabeled = np.flatnonzero(~is_labeled)
    self.method = ssl.get(c.method, c.ssl)
    if not len(self.unlabeled) and self.method.uses_unlabeled:
      raise config_check.ConfigError(
          f"The labeled budget takes all {len(labels)} training clips, leaving none unlabeled "
          f"for method={c.method!r}; lower data.labeled_ratio / data.labels_per_class or use "
          "method=supervised.")
    steps_per_round = c.steps_per_round
    if steps_per_round <= 0:
      steps_per_round = max(1, math.ceil(len(self.unlabeled) / (c.uratio * c.batch_size)))
    self.schedule = Schedule(c.total_steps, min(c.warmup_steps, c.total_steps), steps_per_round)

    self.model = models.build(c.model.name, self.num_classes, **models.kwargs_from_config(c.model))
    self.views = augment.build(self.dataset.modality, c, **self.dataset.view_kwargs)
    self.tx = steps.make_optimizer(c.optim, c.total_steps)
    rep, dat = parallel.replicated(self.mesh), parallel.data_sharded(self.mesh)
    prior = np.bincount(labels[self.labeled], minlength=self.num_classes) / len(self.labeled)
    weights = steps.LossWeights.from_config(c, class_prior=prior)
    online = steps.make_train_step(self.method, self.views, weights, c.ema_decay)
    jit_train = lambda fn: jax.jit(fn, in_shardings=(rep, dat, rep), out_shardings=(rep, rep),
                                   donate_argnums=(0,))
    self.online_step = jit_train(online)
    if self.method.uses_unlabeled or self.method.uses_prototypes:  # warm-up: labels only
      warm = steps.make_train_step(ssl.get("supervised", c.ssl), self.views, weights, c.ema_decay)
      self.warmup_step = jit_train(warm)
    else:
      self.warmup_step = self.online_step
    self.eval_step = jax.jit(steps.make_eval_step(self.views, c.eval.head, c.aplt.scale,
                                                  c.aplt.center),
                             static_argnums=(3,), out_shardings=(dat, dat))
    self.embed_step = jax.jit(steps.make_embed_step(self.views), static_argnums=(3, 4),
                              out_shardings=dat)
    self.root_key = jax.random.key(c.seed, impl=c.rng_impl)
    rows = parallel.process_slice(c.batch_size, self.mesh)
    urows = parallel.process_slice(c.uratio * c.batch_size, self.mesh)
    self.batches = {
        use_unl: loader.TrainBatches(
            self.dataset.train, self.dataset.input_key, self.labeled, self.unlabeled, labels,
            batch_size=c.batch_size, unlabeled_batch=c.uratio * c.batch_size if use_unl else 0,
            seed=c.seed, rows=(rows, urows), read_threads=c.data.read_threads,
            prefetch=c.data.prefetch, read_workers=c.data.read_workers)
        for use_unl in {False, self.method.uses_unlabeled}}

  # -- state ------------------------------------------------------------------------------------
  def init_state(self):
    c = self.config
    sample = self.dataset.train[0][self.dataset.input_key][None]
    sample_x = self.views.center(jnp.asarray(sample))
    init = jax.jit(lambda key: steps.create_train_state(
        self.model, self.tx, self.method, key=key, sample_x=sample_x,
        num_classes=self.num_classes, num_unlabeled=len(self.unlabeled)),
        out_shardings=parallel.replicated(self.mesh))
    state = init(jax.random.fold_in(self.root_key, 0))
    if c.model.pretrained:  # ImageNet backbone weights; the head stays random
      from aplt_jax.models import pretrained  # pylint: disable=g-import-not-at-top
      state = pretrained.load_into_state(state, c.model.pretrained, self.mesh)
    _, feats = jax.eval_shape(lambda s: s.apply_fn({"params": s.params,
                                                    "batch_stats": s.batch_stats},
                                                   sample_x, train=False), state)
    protos = parallel.replicate(self.mesh, Prototypes.empty(
        self.num_classes, feats.shape[-1], len(self.dataset.train_labels)))
    del c
    return state, protos

  # -- one phase of steps -----------------------------------------------------------------------
  def run_steps(self, step_fn, batches, state, protos, start: int, stop: int, round_: int,
                phase: str):
    c = self.config
    bar = self.progress.bar(stop - start, f"{phase} r{round_}" if round_ else phase)
    pending: list[tuple[int, dict]] = []
    window_start = time.time()

    def flush(step):
      nonlocal pending, window_start
      if not pending:
        return
      host = jax.device_get([m for _, m in pending])
      for (s, _), m in zip(pending, host):
        bad = [k for k, v in m.items() if k.startswith("loss") or k == "grad_norm"
               if not np.isfinite(v)]
        if bad:
          what = ("loss terms" if any(k.startswith("loss") for k in bad) else
                  "gradients (the loss is finite)")
          last = self.ckpt.latest()
          kept = (f"the last good checkpoint (step {last // 10}) in {self.ckpt.directory} is "
                  "kept" if last is not None else "no checkpoint had been written yet")
          raise FloatingPointError(
              f"Training diverged at step {s} (round {round_}, {phase}): non-finite {what}: "
              f"{', '.join(f'{k}={m[k]}' for k in bad)}. The run stops here; {kept}. Lower "
              "optim.lr or set optim.grad_clip, and check the data for extreme values.")
      mean = {f"train/{k}": float(np.mean([m[k] for m in host])) for k in host[0]}
      mean["train/steps_per_sec"] = len(pending) / max(time.time() - window_start, 1e-9)
      self.writer.write(step, round_, phase, mean)
      pending, window_start = [], time.time()

    step = start
    for s, local in batches.iterate(start, stop):
      assert s == step, (s, step)
      state, metrics = step_fn(state, parallel.global_batch(self.mesh, local), protos)
      pending.append((step, metrics))
      step += 1
      faults.maybe_die(phase, step)
      if bar is not None:
        bar.update(1)
      last = step == stop
      if step % c.log_every == 0 or last:
        flush(step)
      if step % c.eval.every_steps == 0 or last:
        flush(step)
        self.log_eval(state, protos, step, round_)
      saved = step % c.checkpoint_every == 0 or last
      if saved:
        flush(step)
        self.save(state, protos, step, round_, ckpt_lib.ONLINE)
      if self.preempt.should_stop(step):
        if not saved:
          flush(step)
          self.save(state, protos, step, round_, ckpt_lib.ONLINE)
        self.stop_preempted(step, round_)
    if bar is not None:
      bar.close()
    return state

  # -- evaluation -------------------------------------------------------------------------------
  def predict(self, state, protos, use_ema: bool):
    """Scores [n, C] and features [n, d] (numpy) over the evaluation split, in order."""
    source = self.dataset.eval
    bs = self.config.eval.batch_size
    rows = parallel.process_slice(bs, self.mesh)
    outs, valid = [], []
    for x, v in loader.fixed_batches(source, self.dataset.input_key, np.arange(len(source)), bs, rows,
                                     self.config.data.read_threads):
      # Dispatched back to back and fetched once at the end: no host round-trip per batch.
      outs.append(self.eval_step(state, parallel.global_batch(self.mesh, x), protos, use_ema))
      valid.append(v)
    valid = np.concatenate(valid)
    return tuple(parallel.gather_rows([o[i] for o in outs])[valid] for i in (0, 1))

  def log_eval(self, state, protos, step, round_):
    labels = self.dataset.eval_labels
    out = {}
    for tag, use_ema in (("", False), ("_ema", True)):
      scores, _ = self.predict(state, protos, use_ema)
      m = evaluate_lib.classification_metrics(scores, labels, self.num_classes)
      out.update({f"eval/top1{tag}": m["top1"], f"eval/mean_class_acc{tag}": m["mean_class_acc"]})
    self.writer.write(step, round_, "eval", out)
    self.last_eval = out

  # -- checkpoints ------------------------------------------------------------------------------
  def save(self, state, protos, step, round_, event):
    self.writer.flush()
    meta = {"step": step, "round": round_, "metrics_rows": self.writer.rows,
            "seconds": self.seconds()}
    self.ckpt.save(step, event, state, protos, meta)

  def stop_preempted(self, step, round_):
    """After SIGTERM: waits for the checkpoint of `step` and stops with `Preempted`."""
    self.ckpt.wait()
    msg = (f"Preempted (SIGTERM) after step {step} (round {round_}); the checkpoint is saved in "
           f"{self.ckpt.directory}. Rerun the same command to resume.")
    self.progress.say(msg)
    raise preemption.Preempted(msg)

  def seconds(self) -> float:
    return self.seconds_before + time.time() - self.t0

  # -- the whole run ----------------------------------------------------------------------------
  def run(self) -> dict:
    c, sched = self.config, self.schedule
    self.t0 = time.time()
    self.seconds_before = 0.0
    self.ckpt = ckpt_lib.Checkpointer(self.workdir, c.keep_checkpoints)
    state, protos = self.init_state()
    restored = self.ckpt.restore(state, protos)
    rows = 0
    for line in self.ckpt.skipped:
      self.progress.say(line)
    if restored is not None:
      state, protos, meta = restored
      rows = meta["metrics_rows"]
      self.seconds_before = meta["seconds"]
      self.progress.say(f"Resuming from step {meta['step']} (round {meta['round']}) in "
                        f"{self.ckpt.directory}.")
    self.writer = metric_writer.MetricWriter(self.workdir, keep_rows=rows)
    if restored is None:
      self.log_skipped()
    self.last_eval, self.last_offline = {}, {}
    step = int(state.step)
    self.progress.say(
        f"{c.method} on {c.data.name}: {len(self.labeled)} labeled / {len(self.unlabeled)} "
        f"unlabeled clips, {self.num_classes} classes, {len(self.mesh.devices.flat)} device(s); "
        f"{sched.warmup} warm-up steps + {sched.num_rounds} rounds x {sched.per_round} steps.")

    if step < sched.warmup:
      state = self.run_steps(self.warmup_step, self.batches[False], state, protos, step,
                             sched.warmup, 0, "warmup")
      step = sched.warmup
    for r in range(1, sched.num_rounds + 1):
      start, stop = sched.span(r)
      if step >= stop:
        continue
      if (len(self.unlabeled) and (r - 1) % c.aplt.offline_every == 0
          and int(protos.round) < r):
        self.ckpt.wait()  # the round's last checkpoint commits before the (long) offline phase
        protos = self.offline_phase(state, r, step)
        self.save(state, protos, step, r, ckpt_lib.OFFLINE)
        if self.preempt.requested:
          self.stop_preempted(step, r)
      state = self.run_steps(self.online_step, self.batches[self.method.uses_unlabeled], state,
                             protos, step, stop, r, "online")
      step = stop
      self.progress.say(report.round_line(r, sched.num_rounds, self.last_offline,
                                          self.last_eval))
    return self.finish(state, protos)

  def close(self) -> None:
    """Waits for the last checkpoint and releases the manager and the metric writer."""
    for resource in (getattr(self, "ckpt", None), getattr(self, "writer", None)):
      if resource is not None:
        resource.close()

  def log_skipped(self) -> None:
    """Samples the data preparation skipped: one `data` row of `data/skipped_*` and a line."""
    skipped = self.dataset.skipped
    if skipped is None:
      return
    row = {f"data/skipped_{k.replace('/', '_')}": n for k, n in skipped.items()}
    row["data/skipped_total"] = sum(skipped.values())
    self.writer.write(0, 0, "data", row)
    if row["data/skipped_total"]:
      self.progress.say(f"Data preparation skipped {row['data/skipped_total']} samples "
                        f"({', '.join(f'{k}: {n}' for k, n in skipped.items())}).")

  def offline_phase(self, state, r: int, step: int):
    c = self.config
    t = time.time()
    # Without unlabeled losses (the supervised_proto control) prototypes come from labels only.
    unlabeled = self.unlabeled if self.method.uses_unlabeled else self.unlabeled[:0]
    q = offline.kept_fraction(c.aplt.threshold_q, c.aplt.threshold_q_final, r,
                              self.schedule.num_rounds)
    protos, metrics = offline.run_offline_phase(
        self.embed_step, state, self.dataset, self.labeled, unlabeled, self.mesh,
        key=jax.random.fold_in(jax.random.fold_in(self.root_key, 1), r), round_=r,
        aplt_cfg=c.aplt, batch_size=c.eval.batch_size, use_ema=c.aplt.embed_ema,
        read_threads=c.data.read_threads, progress=self.progress, q=q)
    metrics["offline/seconds"] = time.time() - t
    metrics["offline/q"] = q
    row = self.writer.write(step, r, "offline", metrics)
    self.last_offline = row
    if jax.process_index() == 0:
      # The round's pseudo-labels, for analysis and figures (the checkpoints keep only the last).
      os.makedirs(os.path.join(self.workdir, "offline"), exist_ok=True)
      host = parallel.to_host(protos)
      np.savez_compressed(
          os.path.join(self.workdir, "offline", f"round_{r:03d}.npz"),
          unlabeled=self.unlabeled, pseudo_label=host.labels[self.unlabeled],
          keep=host.keep[self.unlabeled], hidden=self.dataset.train_labels[self.unlabeled],
          thresholds=host.thresholds, centers=host.centers)
    return protos

  def finish(self, state, protos) -> dict:
    """Final evaluation: final.json, optional features_test.npz, plots and a summary table."""
    c = self.config
    labels = self.dataset.eval_labels
    final = {"method": c.method, "dataset": c.data.name, "seed": c.seed,
             "labeled": int(len(self.labeled)), "steps": c.total_steps,
             "seconds": self.seconds(), "eval_split": c.data.eval_split,
             "class_names": list(self.dataset.class_names)}
    if self.dataset.skipped is not None:
      final["data_skipped"] = dict(self.dataset.skipped)
    feats_ema = None
    for tag, use_ema in (("raw", False), ("ema", True)):
      scores, feats = self.predict(state, protos, use_ema)
      final[tag] = evaluate_lib.classification_metrics(scores, labels, self.num_classes)
      extra = self.dataset.evaluate_extra(scores, labels) if self.dataset.evaluate_extra else {}
      if extra:  # e.g. MA-52's protocol, a sequence set's top-1 by subject
        final[tag]["protocol"] = extra
      if use_ema:
        feats_ema = feats
    if c.eval.write_features:  # every process: the class means may run a sharded embedding
      centers = np.asarray(protos.centers) if self.method.uses_prototypes else \
          self.labeled_class_means(state)
    if jax.process_index() == 0:
      if c.eval.write_features:
        np.savez_compressed(os.path.join(self.workdir, "features_test.npz"), features=feats_ema,
                            labels=labels, prototypes=centers)
      report.write_run_report(self.workdir, final)
      # Last, and whole or not at all: final.json marks the run finished (the grid skips it).
      workdir_lib.write_json(os.path.join(self.workdir, "final.json"), final, indent=1)
      self.progress.say(report.summary_table(final))
    return final

  def labeled_class_means(self, state) -> np.ndarray:
    """Unit-norm mean EMA feature of each class's labeled clips (centre view)."""
    z = offline.embed(self.embed_step, state, self.dataset, self.labeled, self.mesh,
                      key=self.root_key, weak=False, batch_size=self.config.eval.batch_size,
                      use_ema=True,
                      read_threads=self.config.data.read_threads)
    y = self.dataset.train_labels[self.labeled]
    means = np.stack([z[y == k].mean(0) for k in range(self.num_classes)])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def train_and_evaluate(config, workdir: str, devices=None) -> dict:
  """Trains `config.method` as configured, writing everything to `workdir`; returns final.json.

  Rerunning with the same arguments after an interruption continues from the last checkpoint.
  One process at a time may run in `workdir` (a lock); a different config is refused once the
  workdir holds progress. On SIGTERM the run checkpoints after the current step and raises
  `preemption.Preempted` (a SystemExit with code 0).
  """
  config_check.check_config(config)
  with workdir_lib.lock(workdir, enabled=jax.process_index() == 0):
    if jax.process_count() > 1:  # nobody writes before process 0 has checked and locked WORKDIR
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("aplt_jax: workdir checked and locked")
    config_check.write_or_compare_config(config, workdir, workdir_lib.holds_run(workdir))
    run = Run(config, workdir, devices)
    with run.preempt:
      try:
        return run.run()
      finally:  # an in-flight checkpoint completes even when the run stops on an error
        run.close()
