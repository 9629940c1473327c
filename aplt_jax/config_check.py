"""Config validation before any compute, and the workdir's config.json guard.

Every error is one paragraph naming the key, the value and what to do, raised as `ConfigError`
(main.py prints it without a traceback). The order of the checks: `check_config` (the config on
its own), `check_against_mesh` (device counts), `check_against_data` (the dataset), all before
the first compiled step; `explain_flag_error` turns command-line mistakes (an unknown
`--config.key`, a value of the wrong type) into the same kind of paragraph.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from typing import Any, Callable, Sequence

from aplt_jax import workdir as workdir_lib
from aplt_jax.errors import ConfigError


# Keys that may differ between a run and its resumption (they do not change results).
RESUME_FREE = ("progress", "data.data_dir", "data.manual_dir", "data.read_threads",
               "data.prefetch", "data.read_workers", "keep_checkpoints")
# Keys added after runs existed, with the value that reproduces those runs: a saved config.json
# without the key resumes when the current config holds that value (any other value is a diff).
ADDED_LATER = {"aplt.assign": "nearest", "aplt.kept_weight": "uniform",
               "augment_seq.mirror_sign": [], "augment_seq.mirror_joints": [],
               "augment_seq.dataset_mirror": False, "model.proj_dim": 0}


def _require(cond: bool, msg: str) -> None:
  if not cond:
    raise ConfigError(msg)


def check_config(config) -> None:
  """Checks the config on its own (no data needed)."""
  from aplt_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from aplt_jax import models, ssl, thresholds  # pylint: disable=g-import-not-at-top
  c = config
  _require(c.method in ssl.names(),
           f"method={c.method!r} is not a known method; choose one of {ssl.names()}.")
  _require((c.data.labeled_ratio is None) != (c.data.labels_per_class is None),
           "Set exactly one of data.labeled_ratio and data.labels_per_class (got "
           f"labeled_ratio={c.data.labeled_ratio}, labels_per_class={c.data.labels_per_class}), "
           "e.g. --config.data.labeled_ratio=0.1.")
  ratio, per_class = c.data.labeled_ratio, c.data.labels_per_class
  _require(ratio is None or 0.0 < ratio <= 1.0,
           f"data.labeled_ratio={ratio} must be in (0, 1]: it is the fraction of each class's "
           "training clips that keep their label (at least one per class).")
  _require(per_class is None or per_class >= 1,
           f"data.labels_per_class={per_class} leaves classes with no labeled clip, and every "
           "class needs one to seed its cluster; use 1 or more.")
  _require(c.data.name in data_lib.names(),
           f"data.name={c.data.name!r} is not a known dataset; choose one of "
           f"{data_lib.names()}.")
  _require(c.data.num_classes >= 2,
           f"data.num_classes={c.data.num_classes}: classification needs at least 2 classes.")
  _require(c.batch_size > 0 and c.uratio >= 1,
           f"batch_size={c.batch_size} must be positive and uratio={c.uratio} at least 1.")
  _require(c.seed >= 0 and (c.data.split_seed is None or c.data.split_seed >= 0),
           f"seed={c.seed} / data.split_seed={c.data.split_seed}: seeds must be integers >= 0 "
           "(they seed NumPy's generators and JAX's keys).")
  _require(c.steps_per_round == -1 or c.steps_per_round >= 1,
           f"steps_per_round={c.steps_per_round}: use -1 (one pass over the unlabeled set per "
           "round) or a number of online steps >= 1.")
  _require(0.0 <= c.ema_decay < 1.0,
           f"ema_decay={c.ema_decay} must be in [0, 1): the EMA is decay * ema + (1 - decay) * "
           "params (0 copies the parameters; 1 or more would never follow them).")
  _require(c.keep_checkpoints >= 1,
           f"keep_checkpoints={c.keep_checkpoints} would keep no checkpoint, so a killed run "
           "could not resume; keep at least 1 (default 2).")
  _require(not c.data.data_dir or not os.path.exists(c.data.data_dir)
           or os.path.isdir(c.data.data_dir),
           f"data.data_dir={c.data.data_dir!r} is a file; it must be a folder (where prepared "
           "datasets are written), or '' for ~/tensorflow_datasets.")
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
  from aplt_jax import offline, steps  # pylint: disable=g-import-not-at-top
  _require(c.aplt.select in offline.SELECTION_SCORES,
           f"aplt.select={c.aplt.select!r} is unknown; choose one of {offline.SELECTION_SCORES}.")
  _require(c.aplt.prototypes in offline.PROTOTYPE_SOURCES,
           f"aplt.prototypes={c.aplt.prototypes!r} is unknown; choose one of "
           f"{offline.PROTOTYPE_SOURCES}.")
  _require(c.aplt.vouch_modes >= 0, f"aplt.vouch_modes={c.aplt.vouch_modes} must be >= 0.")
  _require(c.aplt.vouch_rule in offline.VOUCH_RULES,
           f"aplt.vouch_rule={c.aplt.vouch_rule!r} is unknown; choose one of "
           f"{offline.VOUCH_RULES}.")
  _require(c.aplt.assign in offline.ASSIGNMENTS,
           f"aplt.assign={c.aplt.assign!r} is unknown; choose one of {offline.ASSIGNMENTS}.")
  _require(c.aplt.kept_weight in steps.KEPT_WEIGHTS,
           f"aplt.kept_weight={c.aplt.kept_weight!r} is unknown; choose one of "
           f"{steps.KEPT_WEIGHTS}.")
  _require(c.aplt.threshold_q_final is None or 0.0 < c.aplt.threshold_q_final <= 1.0,
           f"aplt.threshold_q_final={c.aplt.threshold_q_final} must be None or in (0, 1].")
  _require(c.aplt.head_weight >= 0 and c.aplt.rampup_steps >= 0 and c.aplt.online_weight >= 0,
           f"aplt.head_weight={c.aplt.head_weight}, aplt.online_weight={c.aplt.online_weight} "
           f"and aplt.rampup_steps={c.aplt.rampup_steps} must be >= 0.")
  _require(0.0 <= c.data.val_fraction < 1.0,
           f"data.val_fraction={c.data.val_fraction} must be in [0, 1).")
  _require(c.eval.head in ("linear", "proto", "ensemble"),
           f"eval.head={c.eval.head!r}: choose 'linear', 'proto' or 'ensemble'.")
  _require(c.model.name in models.names(),
           f"model.name={c.model.name!r} is unknown; choose one of {models.names()}.")
  dtypes = models.DTYPES
  _require(c.model.dtype in dtypes,
           f"model.dtype={c.model.dtype!r} is not a supported compute dtype; choose one of "
           f"{list(dtypes)} (bfloat16 on accelerators; the weights stay float32).")
  modes = ("rgb", "diff", "rgb_diff")
  _require("input_mode" not in models.kwargs_from_config(c.model) or c.model.input_mode in modes,
           f"model.input_mode={c.model.input_mode!r} is unknown; choose one of {list(modes)}.")
  _require(not c.model.pretrained or (
      os.path.isfile(c.model.pretrained)
      and c.model.pretrained.endswith((".pth", ".pt", ".safetensors"))),
           f"model.pretrained={c.model.pretrained!r} is not an existing .pth or .safetensors "
           "file; give the path of a torchvision ResNet state_dict (see README, 'Pretrained "
           "backbones'), or '' to start from random weights.")
  _require(c.optim.schedule in ("cosine", "constant"),
           f"optim.schedule={c.optim.schedule!r}: choose 'cosine' or 'constant'.")
  for key in ("log_every", "checkpoint_every"):
    _require(c[key] > 0, f"{key}={c[key]} must be positive.")
  _require(c.eval.every_steps > 0 and c.eval.batch_size > 0,
           "eval.every_steps and eval.batch_size must be positive.")


def check_against_mesh(config, mesh) -> None:
  """Checks that need the device mesh: every global batch splits evenly over the devices."""
  c = config
  n = mesh.devices.size
  for key, size in (("batch_size", c.batch_size), ("batch_size*uratio", c.batch_size * c.uratio),
                    ("eval.batch_size", c.eval.batch_size)):
    _require(size % n == 0,
             f"{key}={size} is not divisible by the {n} devices of this run; every device must "
             f"get the same number of clips: choose a multiple of {n}.")


def check_against_data(config, dataset, mesh=None) -> None:
  """Checks that need the dataset (and the mesh's, when `mesh` is given)."""
  c = config
  _require(c.data.num_classes == dataset.num_classes,
           f"data.num_classes={c.data.num_classes} but the {c.data.name!r} dataset has "
           f"{dataset.num_classes} classes; set --config.data.num_classes={dataset.num_classes}.")
  if mesh is not None:
    check_against_mesh(config, mesh)


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _is_json(path: str) -> bool:
  try:
    workdir_lib.read_json(path)
    return True
  except ConfigError:
    return False


def write_or_compare_config(config, workdir: str, holds_run: bool = True) -> None:
  """Writes WORKDIR/config.json, or refuses when the workdir holds a different run's config.

  `holds_run`: whether WORKDIR holds progress (a checkpoint or final results). Without any, a
  different config replaces the old one and the old labeled split (redrawn): a config error
  found at start-up, after config.json was written, must not lock the user out of the workdir.
  """
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort())
  for name in ("config.json", "split.json"):  # split.json is read later, by data.split
    file = os.path.join(workdir, name)
    if os.path.exists(file) and holds_run:
      workdir_lib.read_json(file, fix=f"It belongs to the run in {workdir}; restore it, or "
                                      "use a new --workdir.")
    elif os.path.exists(file) and not _is_json(file):
      os.remove(file)  # no progress to protect: rewritten (config) or redrawn (split)
  if os.path.exists(path):
    saved = workdir_lib.read_json(path)
    a, b = {**ADDED_LATER, **_flatten(saved)}, _flatten(current)
    diff = sorted(k for k in set(a) | set(b) if k not in RESUME_FREE and a.get(k) != b.get(k))
    if diff and not holds_run:
      split = os.path.join(workdir, "split.json")
      if os.path.exists(split):
        os.remove(split)
    elif diff:
      shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:6])
      raise ConfigError(
          f"{workdir} already holds a run with a different config ({shown}"
          f"{', ...' if len(diff) > 6 else ''}). Resuming it with this config would mix two "
          "experiments: use a new --workdir, or rerun with the original config.")
  workdir_lib.write_json(path, current, indent=1, sort_keys=True)




# ---- command-line mistakes -------------------------------------------------------------------

_OVERRIDE = re.compile(r"--(?:no)?config\.([\w.]+)(?:=(.*))?", re.S)
_FAILED_FLAG = re.compile(r"flag --config\.([\w.]+)=")
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "True or False", str: "a string",
               tuple: "a tuple, e.g. '(0.6, 1.0)'"}


def _first_line(error: BaseException) -> str:
  """The error's first line, ending in a full stop or question mark."""
  text = str(error).strip()
  line = text.splitlines()[0].strip() if text else type(error).__name__
  return line if line.endswith((".", "?", "!")) else line + "."


def _config_args(argv: Sequence[str]) -> tuple[str | None, list[tuple[str, str | None]]]:
  """The `--config` spec and the `--config.<key>[=value]` overrides named in `argv`."""
  spec, overrides = None, []
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg.startswith("--config="):
      spec = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(args):
      spec = args[i + 1]
    else:
      m = _OVERRIDE.fullmatch(arg)
      if m:
        overrides.append((m.group(1), m.group(2)))
  return spec, overrides


def _unknown_key(config, path: str) -> str | None:
  """The paragraph for `path` when some part of it is not a key of `config`, else None."""
  node, parts = config, path.split(".")
  for i, part in enumerate(parts):
    keys = list(node.keys()) if hasattr(node, "keys") else []
    if part not in keys:
      parent = ".".join(parts[:i])
      if not keys:
        return (f"--config.{path}: {parent} is a single value ({node!r}), not a group of keys; "
                f"set it with --config.{parent}=VALUE.")
      close = difflib.get_close_matches(part, keys, n=3)
      hint = f"; did you mean {' or '.join(repr('.'.join(parts[:i] + [k])) for k in close)}?" \
          if close else f"; the keys{' of ' + parent if parent else ''} are {sorted(keys)}."
      return (f"--config.{path}: the config has no key {'.'.join(parts[:i + 1])!r}{hint} "
              "The config is locked so that a mistyped key fails instead of being ignored; "
              "configs/default.py lists every key with its default.")
    node = node[part]
  return None


def explain_flag_error(error: BaseException, argv: Sequence[str],
                       load_config: Callable[[str], Any]) -> str:
  """One paragraph for a command-line error raised while parsing `argv`.

  Covers an unknown `--config.<key>` (with the closest keys), a value of the wrong type (with
  the key's type and default), a `--config` file that does not load, and, for any other flag
  problem, absl's own message. `load_config(spec)` loads `--config`'s value
  (`configs/<file>.py[:preset]`) the way the flag does.
  """
  generic = (f"{_first_line(error)} Run `python main.py --helpfull` for the flags; "
             "configs/default.py lists every config key with its default.")
  spec, overrides = _config_args(argv)
  if spec is None:
    return generic
  try:
    config = load_config(spec)
    config.keys()  # ml_collections defers a load failure to the first access
  except Exception as e:  # pylint: disable=broad-except  # any failure inside the user's file
    cause = str(e).strip().splitlines()[-1].strip() if str(e).strip() else type(e).__name__
    return (f"--config={spec} could not be loaded ({cause}). Give a config file, "
            "optionally with a preset, e.g. --config=configs/demo.py or "
            "--config=configs/demo.py:fixmatch.")
  for path, _ in overrides:
    msg = _unknown_key(config, path)
    if msg:
      return msg
  m = _FAILED_FLAG.match(str(error))
  if m:
    path = m.group(1)
    value = dict(overrides).get(path)
    *parents, leaf = path.split(".")
    node = config
    for p in parents:
      node = node[p]
    if hasattr(node[leaf], "keys"):
      return (f"--config.{path}={value}: {path} is a group of keys, not a value; set its keys "
              f"one by one, e.g. --config.{path}.{sorted(node[leaf].keys())[0]}=VALUE.")
    kind = node.get_type(leaf)
    return (f"--config.{path}={value}: {path} takes {_TYPE_NAMES.get(kind, kind.__name__)} "
            f"(default {node[leaf]!r} in {spec}), and {value!r} is not one "
            f"({str(error).split(': ', 1)[-1].strip()}).")
  return generic
