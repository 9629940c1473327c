"""The shared small pieces: `Registry`, the CLI user-error path, write-then-rename, grid overrides."""
import os

import ml_collections
import pytest

from aplt_jax import augment, data, errors, experiments, files, models, ssl, thresholds
from aplt_jax.data.sequences import readers
from aplt_jax.errors import ConfigError, DataError
from aplt_jax.registry import Registry


def test_registry_rules():
  reg = Registry("widget")
  reg.register("b")(2)
  assert reg.register("a")(1) == 1  # the decorator hands its argument back
  assert reg.names() == ["a", "b"] and "a" in reg and "c" not in reg
  assert reg.get("b") == 2
  with pytest.raises(ValueError, match="widget 'a' is already registered"):
    reg.register("a")(3)
  assert reg.get("a") == 1  # a refused duplicate leaves the first
  with pytest.raises(ConfigError, match="unknown widget 'c'; known: a, b"):
    reg.get("c")


@pytest.mark.parametrize("unknown", [
    lambda: thresholds.get("nope"), lambda: ssl.get("nope"),
    lambda: models.build("nope", 3), lambda: augment.build("nope", None),
    lambda: readers.read("nope", "/x"), lambda: data.registry().get("nope")])
def test_every_registry_refuses_an_unknown_name_alike(unknown):
  with pytest.raises(ConfigError, match=r"unknown .* 'nope'; known: "):
    unknown()


def test_every_registry_refuses_a_duplicate_alike():
  for register, name in ((thresholds.register, "quantile"), (ssl.register, "fixmatch"),
                         (models.register, "tcn"), (augment.register, "video"),
                         (readers.register_reader, "npz")):
    with pytest.raises(ValueError, match="is already registered"):
      register(name)(lambda *a, **k: None)


def test_dataset_names_come_from_the_families():
  assert data.names() == sorted(["synthetic", "npz", "npy_folder", "watch", "ma52", "ma12",
                                 "list_files", "class_folder"])


def test_run_cli_prints_a_user_error_and_returns_2(capsys):
  def body(kind):
    raise kind("the data folder is empty; point --manual_dir at it.")

  assert errors.run_cli(body, DataError) == 2
  assert capsys.readouterr().err == "\nerror: the data folder is empty; point --manual_dir at it.\n"
  assert errors.run_cli(lambda: 1) == 1 and errors.run_cli(lambda: None) == 0
  with pytest.raises(KeyError):  # not a user error: the traceback is kept
    errors.run_cli(body, KeyError)


def test_write_then_rename_leaves_the_old_file_on_failure(tmp_path):
  path = str(tmp_path / "sub" / "x.txt")
  with files.write_then_rename(path) as f:
    f.write("one")
  with pytest.raises(RuntimeError):
    with files.write_then_rename(path) as f:
      f.write("half")
      raise RuntimeError("killed")
  assert open(path).read() == "one"
  assert os.listdir(tmp_path / "sub") == ["x.txt"]  # no temporary file left behind


def test_apply_overrides_refuses_unknown_keys_and_copies():
  base = ml_collections.ConfigDict({"a": 1, "b": {"c": 2.0}})
  out = experiments.apply_overrides(base, (("b.c", 3.0), ("a", 5)))
  assert (out.a, out.b.c) == (5, 3.0) and (base.a, base.b.c) == (1, 2.0)
  assert not out.is_locked
  with pytest.raises(KeyError, match="x"):
    experiments.apply_overrides(base, (("b.x", 1),))
  base.lock()
  assert experiments.apply_overrides(base, (("a", 2),)).is_locked
