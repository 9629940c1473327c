"""Config errors: each one paragraph naming its cause, found before any compute."""
import json
import os
import pathlib
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from aplt_jax import config_check
from aplt_jax import data as data_lib
from aplt_jax import parallel
from aplt_jax import train
from aplt_jax import augment as views
from aplt_jax.data import split as split_lib
from aplt_jax.errors import ConfigError, DataError
from tiny import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("overrides, cause", [
    ({"method": "fixmach"}, "method='fixmach' is not a known method"),
    ({"data.labeled_ratio": None}, "Set exactly one of data.labeled_ratio and"),
    ({"data.labels_per_class": 2}, "Set exactly one of data.labeled_ratio and"),
    ({"data.labeled_ratio": 1.5}, "data.labeled_ratio=1.5 must be in (0, 1]"),
    ({"data.labeled_ratio": None, "data.labels_per_class": 0},
     "data.labels_per_class=0 leaves classes with no labeled clip"),
    ({"data.name": "ma53"}, "data.name='ma53' is not a known dataset"),
    ({"data.num_classes": 1}, "data.num_classes=1"),
    ({"batch_size": 0}, "batch_size=0 must be positive"),
    ({"warmup_steps": 20}, "warmup_steps=20"),
    ({"aplt.threshold": "quantiles"}, "aplt.threshold='quantiles' is unknown"),
    ({"eval.head": "knn"}, "eval.head='knn'"),
    ({"aplt.prototypes": "kept"}, "aplt.prototypes='kept' is unknown"),
    ({"aplt.vouch_modes": -1}, "aplt.vouch_modes=-1 must be >= 0"),
    ({"aplt.vouch_rule": "all"}, "aplt.vouch_rule='all' is unknown"),
    ({"aplt.assign": "greedy"}, "aplt.assign='greedy' is unknown"),
    ({"aplt.kept_weight": "inverse"}, "aplt.kept_weight='inverse' is unknown"),
    ({"seed": -1}, "seed=-1 / data.split_seed=None: seeds must be integers >= 0"),
    ({"data.split_seed": -2}, "data.split_seed=-2: seeds must be integers >= 0"),
    ({"steps_per_round": 0}, "steps_per_round=0: use -1 (one pass over the unlabeled set"),
    ({"ema_decay": 2.0}, "ema_decay=2.0 must be in [0, 1)"),
    ({"ema_decay": -1.0}, "ema_decay=-1.0 must be in [0, 1)"),
    ({"ema_decay": 1.0}, "ema_decay=1.0 must be in [0, 1)"),
    ({"keep_checkpoints": 0}, "keep_checkpoints=0 would keep no checkpoint"),
    ({"model.dtype": "float8"}, "model.dtype='float8' is not a supported compute dtype"),
    ({"model.input_mode": "xyz"}, "model.input_mode='xyz' is unknown; choose one of ['rgb', "),
])
def test_check_config_names_the_cause(overrides, cause, tmp_path):
  with pytest.raises(ConfigError) as info:
    config_check.check_config(tiny_config(tmp_path, **overrides))
  assert cause in str(info.value)
  assert "\n" not in str(info.value)  # one paragraph


def test_the_edges_of_the_new_ranges_are_accepted(tmp_path):
  for overrides in ({"steps_per_round": -1}, {"steps_per_round": 1}, {"ema_decay": 0.0},
                    {"keep_checkpoints": 1}, {"seed": 0, "data.split_seed": 0},
                    {"model.dtype": "bfloat16", "model.input_mode": "rgb_diff"}):
    config_check.check_config(tiny_config(tmp_path, **overrides))


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
  (tmp_path / "tfds").write_text("not a folder")
  with pytest.raises(ConfigError, match=r"data.data_dir='.*tfds' is a file; it must be a folder"):
    config_check.check_config(tiny_config(tmp_path / "tfds"))


@pytest.mark.parametrize("key, value", [("batch_size", 3), ("eval.batch_size", 7)])
def test_a_batch_that_does_not_split_over_the_devices_is_refused(key, value, tmp_path):
  mesh = parallel.make_mesh(jax.devices()[:2])
  config = tiny_config(tmp_path, **{key: value})
  with pytest.raises(ConfigError, match=r"is not divisible by the 2 devices of this run"):
    config_check.check_against_mesh(config, mesh)


def test_mesh_errors_come_before_any_data_is_prepared(tmp_path):
  data_dir = tmp_path / "tfds"
  with pytest.raises(ConfigError, match=r"batch_size=3 is not divisible by the 2 devices"):
    train.train_and_evaluate(tiny_config(data_dir, batch_size=3), str(tmp_path / "w"),
                             jax.devices()[:2])
  assert not data_dir.exists()  # nothing rendered, nothing compiled


def test_a_class_count_that_disagrees_with_the_data_is_refused(tmp_path):
  dataset = types.SimpleNamespace(num_classes=5)
  with pytest.raises(ConfigError,
                     match=r"data.num_classes=4 but the 'synthetic' dataset has 5 classes; set "
                           r"--config.data.num_classes=5"):
    config_check.check_against_data(tiny_config(tmp_path), dataset)


def test_labels_outside_the_class_count_are_a_data_error():
  with pytest.raises(DataError, match=r"data.num_classes=3 disagrees with the data"):
    split_lib.draw_labeled(np.array([0, 1, 2, 3]), 3, seed=0, ratio=0.5)


def test_a_class_without_training_clips_cannot_get_a_labeled_clip():
  with pytest.raises(DataError, match=r"Classes \[2\] have no training clips, so the labeled "
                                      r"budget leaves them without a labeled clip"):
    split_lib.draw_labeled(np.array([0, 0, 1, 1, 3]), 4, seed=0, per_class=1)


def test_every_class_gets_a_labeled_clip_even_at_a_tiny_ratio():
  labels = np.repeat(np.arange(5), [50, 20, 3, 2, 1])
  labeled = split_lib.draw_labeled(labels, 5, seed=0, ratio=0.01)
  assert np.bincount(labels[labeled], minlength=5).tolist() == [1, 1, 1, 1, 1]


def test_a_missing_video_dataset_names_the_command_that_prepares_it(tmp_path):
  config = tiny_config(tmp_path / "prepared", **{"data.name": "ma52", "data.num_classes": 52,
                                                 "data.manual_dir": str(tmp_path / "ma52")})
  with pytest.raises(DataError) as info:
    data_lib.build(config.data)
  assert "not prepared" in str(info.value)
  assert "python -m aplt_jax.prepare --dataset=ma52" in str(info.value)


# ---- WORKDIR/config.json ----------------------------------------------------------------------


def test_a_different_config_is_refused_once_the_workdir_holds_progress(tmp_path):
  first, second = tiny_config(tmp_path), tiny_config(tmp_path, uratio=4, seed=3)
  config_check.write_or_compare_config(first, str(tmp_path), holds_run=False)
  config_check.write_or_compare_config(first, str(tmp_path), holds_run=True)  # same: resumes
  with pytest.raises(ConfigError) as info:
    config_check.write_or_compare_config(second, str(tmp_path), holds_run=True)
  assert f"{tmp_path} already holds a run with a different config (seed: 0 -> 3, uratio: 2 -> " \
         "4)" in str(info.value)
  resume_free = tiny_config(tmp_path / "elsewhere", progress=True)  # data_dir, progress differ
  config_check.write_or_compare_config(resume_free, str(tmp_path), holds_run=True)


def test_a_run_saved_before_a_key_was_added_resumes_with_that_keys_old_value(tmp_path):
  config_check.write_or_compare_config(tiny_config(tmp_path), str(tmp_path), holds_run=False)
  path = tmp_path / "config.json"
  saved = json.loads(path.read_text())
  del saved["aplt"]["assign"]  # as written before these keys existed
  del saved["aplt"]["kept_weight"]
  del saved["augment_seq"]["mirror_sign"]
  del saved["augment_seq"]["mirror_joints"]
  path.write_text(json.dumps(saved))
  config_check.write_or_compare_config(tiny_config(tmp_path), str(tmp_path), holds_run=True)
  path.write_text(json.dumps(saved))
  with pytest.raises(ConfigError, match="aplt.assign: 'nearest' -> 'balanced'"):
    config_check.write_or_compare_config(tiny_config(tmp_path, **{"aplt.assign": "balanced"}),
                                         str(tmp_path), holds_run=True)
  path.write_text(json.dumps(saved))
  with pytest.raises(ConfigError, match=r"augment_seq.mirror_sign: \[\] -> \[-1, 1\]"):
    config_check.write_or_compare_config(
        tiny_config(tmp_path, **{"augment_seq.mirror_sign": (-1, 1)}), str(tmp_path),
        holds_run=True)


def test_a_workdir_without_progress_takes_the_new_config_and_redraws_the_split(tmp_path):
  config_check.write_or_compare_config(tiny_config(tmp_path), str(tmp_path), holds_run=False)
  (tmp_path / "split.json").write_text("{}")
  config_check.write_or_compare_config(tiny_config(tmp_path, uratio=4), str(tmp_path),
                                       holds_run=False)
  assert json.loads((tmp_path / "config.json").read_text())["uratio"] == 4
  assert not (tmp_path / "split.json").exists()


@pytest.mark.parametrize("name", ["config.json", "split.json"])
def test_a_truncated_workdir_file_is_named_once_the_run_holds_progress(name, tmp_path):
  config = tiny_config(tmp_path)
  config_check.write_or_compare_config(config, str(tmp_path), holds_run=False)
  (tmp_path / "split.json").write_text('{"labeled": [1, 2]}')
  (tmp_path / name).write_text((tmp_path / name).read_text()[:9])  # cut mid-file
  with pytest.raises(ConfigError) as info:
    config_check.write_or_compare_config(config, str(tmp_path), holds_run=True)
  msg = str(info.value)
  assert msg.startswith(f"{tmp_path / name} is not valid JSON (") and "\n" not in msg
  assert "truncated or edited" in msg and "use a new --workdir" in msg
  # Without progress there is nothing to protect: the file is rewritten (config) or dropped
  # (split, redrawn later).
  config_check.write_or_compare_config(config, str(tmp_path), holds_run=False)
  assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0
  assert (tmp_path / "split.json").exists() == (name == "config.json")


# ---- the command line -------------------------------------------------------------------------


def run_main(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("flag, cause", [
    ("--config.batchsize=8", "--config.batchsize: the config has no key 'batchsize'; did you "
                             "mean 'batch_size'?"),
    ("--config.data.nme=x", "the config has no key 'data.nme'; did you mean 'data.name'?"),
    ("--config.batch_size=abc", "--config.batch_size=abc: batch_size takes an integer (default "
                                "8 in configs/demo.py), and 'abc' is not one"),
    ("--config.data.labeled_ratio=lots", "data.labeled_ratio takes a number"),
    ("--config.progress=maybe", "progress takes True or False"),
    ("--config.data=3", "data is a group of keys, not a value"),
])
def test_command_line_mistakes_are_one_paragraph_without_traceback(flag, cause, tmp_path):
  proc = run_main("--config=configs/demo.py", f"--workdir={tmp_path}", flag)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert cause in lines[0]


@pytest.mark.parametrize("flag, cause", [
    ("--config.seed=-1", "error: seed=-1 / data.split_seed=None: seeds must be integers >= 0"),
    ("--config.model.dtype=float8", "error: model.dtype='float8' is not a supported"),
    ("--config.model.input_mode=xyz", "error: model.input_mode='xyz' is unknown"),
])
def test_bad_values_stop_main_before_any_data_is_prepared(flag, cause, tmp_path):
  proc = run_main("--config=configs/demo.py", f"--workdir={tmp_path / 'w'}", flag,
                  f"--config.data.data_dir={tmp_path / 'tfds'}")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith(cause), proc.stderr
  assert not (tmp_path / "tfds").exists() and not (tmp_path / "w").exists()


def test_a_config_file_that_does_not_load_is_named(tmp_path):
  proc = run_main("--config=configs/nope.py", f"--workdir={tmp_path}")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert "--config=configs/nope.py could not be loaded ([Errno 2] No such file" in proc.stderr


def test_a_config_error_stops_main_without_traceback(tmp_path):
  proc = run_main("--config=configs/demo.py", f"--workdir={tmp_path / 'w'}",
                  "--config.data.labeled_ratio=0", f"--config.data.data_dir={tmp_path}")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  assert "error: data.labeled_ratio=0.0 must be in (0, 1]" in proc.stderr
  assert not (tmp_path / "w").exists()


def test_impossible_synthetic_settings_are_config_errors(tmp_path):
  with pytest.raises(ConfigError, match=r"data.num_classes / data.synthetic.*num_classes"):
    train.train_and_evaluate(tiny_config(tmp_path, **{"data.num_classes": 13}),
                             str(tmp_path / "w"), jax.devices()[:1])


def test_a_sequence_backbone_on_video_clips_is_refused(tmp_path):
  with pytest.raises(ConfigError, match=r"holds video clips, but model.name='tcn'"):
    views.build("video", tiny_config(tmp_path, **{"model.name": "tcn"}))
