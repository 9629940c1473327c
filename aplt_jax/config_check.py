"""Config validation before any compute, and the workdir's config.json guard.

Every error is one paragraph naming the key, the value and what to do, raised as `ConfigError`
(main.py prints it without a traceback).
"""
from __future__ import annotations

import json
import os


from aplt_jax.errors import ConfigError


# Keys that may differ between a run and its resumption (they do not change results).
RESUME_FREE = ("progress", "data.data_dir", "data.manual_dir", "data.read_threads",
               "data.prefetch", "keep_checkpoints")


def _require(cond: bool, msg: str) -> None:
  if not cond:
    raise ConfigError(msg)


def check_config(config) -> None:
  """Checks the config on its own (no data needed)."""
  from aplt_jax import models, ssl, thresholds  # pylint: disable=g-import-not-at-top
  c = config
  _require(c.method in ssl.names(),
           f"method={c.method!r} is not a known method; choose one of {ssl.names()}.")
  _require((c.data.labeled_ratio is None) != (c.data.labels_per_class is None),
           "Set exactly one of data.labeled_ratio and data.labels_per_class (got "
           f"labeled_ratio={c.data.labeled_ratio}, labels_per_class={c.data.labels_per_class}), "
           "e.g. --config.data.labeled_ratio=0.1.")
  _require(c.batch_size > 0 and c.uratio >= 1,
           f"batch_size={c.batch_size} must be positive and uratio={c.uratio} at least 1.")
  _require(c.total_steps > 0 and 0 <= c.warmup_steps <= c.total_steps,
           f"Need total_steps > 0 and 0 <= warmup_steps <= total_steps (got "
           f"total_steps={c.total_steps}, warmup_steps={c.warmup_steps}).")
  _require(c.aplt.threshold in thresholds.names(),
           f"aplt.threshold={c.aplt.threshold!r} is unknown; choose one of {thresholds.names()}.")
  _require(0.0 < c.aplt.threshold_q <= 1.0,
           f"aplt.threshold_q={c.aplt.threshold_q} must be in (0, 1].")
  _require(c.aplt.offline_every >= 1, f"aplt.offline_every={c.aplt.offline_every} must be >= 1.")
  _require(c.aplt.labeled_views >= 0,
           f"aplt.labeled_views={c.aplt.labeled_views} must be >= 0.")
  _require(c.eval.head in ("linear", "proto", "ensemble"),
           f"eval.head={c.eval.head!r}: choose 'linear', 'proto' or 'ensemble'.")
  _require(c.model.name in models.names(),
           f"model.name={c.model.name!r} is unknown; choose one of {models.names()}.")
  _require(c.optim.schedule in ("cosine", "constant"),
           f"optim.schedule={c.optim.schedule!r}: choose 'cosine' or 'constant'.")
  for key in ("log_every", "checkpoint_every"):
    _require(c[key] > 0, f"{key}={c[key]} must be positive.")
  _require(c.eval.every_steps > 0 and c.eval.batch_size > 0,
           "eval.every_steps and eval.batch_size must be positive.")


def check_against_data(config, dataset, mesh) -> None:
  """Checks that need the dataset and the device mesh."""
  c = config
  _require(c.data.num_classes == dataset.num_classes,
           f"data.num_classes={c.data.num_classes} but the {c.data.name!r} dataset has "
           f"{dataset.num_classes} classes; set --config.data.num_classes={dataset.num_classes}.")
  n = mesh.devices.size
  for key, size in (("batch_size", c.batch_size), ("batch_size*uratio", c.batch_size * c.uratio),
                    ("eval.batch_size", c.eval.batch_size)):
    _require(size % n == 0,
             f"{key}={size} is not divisible by the {n} devices of this run; every device must "
             f"get the same number of clips: choose a multiple of {n}.")


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def write_or_compare_config(config, workdir: str) -> None:
  """Writes WORKDIR/config.json, or refuses when the workdir holds a different run's config."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    a, b = _flatten(saved), _flatten(current)
    diff = sorted(k for k in set(a) | set(b) if k not in RESUME_FREE and a.get(k) != b.get(k))
    if diff:
      shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:6])
      raise ConfigError(
          f"{workdir} already holds a run with a different config ({shown}"
          f"{', ...' if len(diff) > 6 else ''}). Resuming it with this config would mix two "
          "experiments: use a new --workdir, or rerun with the original config.")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(current, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


