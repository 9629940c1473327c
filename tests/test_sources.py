"""Tests for the TFDS builders and split reading (aplt_jax/data/prepared.py)."""
from __future__ import annotations

import dataclasses
import os
import pathlib
import threading

import grain
import numpy as np
import pytest

from aplt_jax.data import prepared as prepared_lib
from aplt_jax.data import synthetic
from aplt_jax.data.synthetic import SyntheticConfig, render_clip
from aplt_jax.errors import DataError

TINY = SyntheticConfig(num_train=24, num_test=12, num_frames=4, size=16)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> synthetic.SyntheticMicroActions:
  return synthetic.prepare_synthetic(TINY, tmp_path_factory.mktemp("tfds"))


def _files(root: pathlib.Path) -> dict[str, float]:
  return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


# --- config names ------------------------------------------------------------------------


def test_config_name_encodes_every_field():
  base = synthetic.synthetic_builder_config(TINY).name
  changed = {int: lambda v: v - 1 if v > 1 else v + 1, float: lambda v: v + 0.25,
             tuple: lambda v: (v[0], v[1] + 0.5)}
  names = {base}
  for field in dataclasses.fields(SyntheticConfig):
    value = getattr(TINY, field.name)
    other = dataclasses.replace(TINY, **{field.name: changed[type(value)](value)})
    names.add(synthetic.synthetic_builder_config(other).name)
  assert len(names) == 1 + len(dataclasses.fields(SyntheticConfig))
  # Same knobs (a fresh, equal config) give the same name.
  assert synthetic.synthetic_builder_config(dataclasses.replace(TINY)).name == base
  assert base.startswith("c12_t4_s16_tr24_va0_te12_seed0_amp1.5_")


def test_config_name_rejects_unnamed_fields():
  @dataclasses.dataclass(frozen=True)
  class Params:
    a: int = 1
    b: float = 0.5

  assert prepared_lib.config_name(Params(), {"a": "a", "b": "b"}) == "a1_b0.5"
  assert prepared_lib.config_name(Params(a=-2, b=1e-5), {"a": "a", "b": "b"}) == "am2_b1e-05"
  with pytest.raises(ValueError, match="missing"):
    prepared_lib.config_name(Params(), {"a": "a"})
  with pytest.raises(ValueError, match="distinct"):
    prepared_lib.config_name(Params(), {"a": "x", "b": "x"})


def test_different_knobs_prepare_into_different_directories(tmp_path):
  a = synthetic.synthetic_builder(TINY, tmp_path)
  b = synthetic.synthetic_builder(dataclasses.replace(TINY, noise_std=0.0), tmp_path)
  c = synthetic.synthetic_builder(dataclasses.replace(TINY), tmp_path)
  assert a.data_dir != b.data_dir
  assert a.data_dir == c.data_dir
  # The default config is predefined in the builder class and works too.
  default = synthetic.synthetic_builder(SyntheticConfig(), tmp_path)
  assert default.params == SyntheticConfig()


# --- preparation -------------------------------------------------------------------------


def test_prepared_splits_and_metadata(prepared):
  assert prepared.is_prepared()
  assert set(prepared.info.splits) == {"train", "test"}
  assert prepared.info.splits["train"].num_examples == 24
  assert prepared.info.splits["test"].num_examples == 12
  assert prepared.info.features["label"].names == list(synthetic.CLASS_NAMES)
  assert prepared.info.metadata["synthetic_config"]["motion_amplitude"] == 1.5
  assert os.fspath(prepared.data_dir).endswith(
      os.path.join(synthetic.synthetic_builder_config(TINY).name, synthetic.RENDER_VERSION))


def test_reprepare_is_a_no_op(prepared, monkeypatch):
  root = pathlib.Path(prepared.data_dir_root)
  before = _files(root)

  def fail(*args, **kwargs):
    raise AssertionError("download_and_prepare must not run again")

  monkeypatch.setattr(synthetic.SyntheticMicroActions, "download_and_prepare", fail)
  again = synthetic.prepare_synthetic(TINY, root)
  assert again.data_dir == prepared.data_dir
  assert _files(root) == before


def test_val_split_when_requested(tmp_path):
  cfg = dataclasses.replace(TINY, num_train=3, num_val=2, num_test=0, num_frames=2, size=8)
  b = synthetic.prepare_synthetic(cfg, tmp_path)
  assert set(b.info.splits) == {"train", "val"}
  src = prepared_lib.open_split(b, "val")
  np.testing.assert_array_equal(src[1]["video"], render_clip(cfg, "val", 1)[0])


def test_interrupted_preparation_leaves_nothing_and_retry_works(tmp_path, monkeypatch):
  cfg = dataclasses.replace(TINY, num_train=12, num_test=4)
  real_render = synthetic.render_clip

  def crash_at_7(c, split, index):
    if index == 7:
      raise KeyboardInterrupt("simulated interruption")
    return real_render(c, split, index)

  monkeypatch.setattr(synthetic, "render_clip", crash_at_7)
  with pytest.raises(KeyboardInterrupt):
    synthetic.prepare_synthetic(cfg, tmp_path)
  builder = synthetic.synthetic_builder(cfg, tmp_path)
  assert not builder.is_prepared()
  assert not builder.data_path.exists()
  config_dir = builder.data_path.parent
  assert not list(config_dir.glob("incomplete*"))  # the temp dir was removed

  # A killed process (no cleanup) leaves a stale temp dir behind: it must not matter.
  stale = config_dir / f"incomplete.ABC123_{synthetic.RENDER_VERSION}"
  stale.mkdir(parents=True)
  (stale / "synthetic_micro_actions-train.array_record-00000-of-00001").write_bytes(b"junk")

  monkeypatch.setattr(synthetic, "render_clip", real_render)
  builder = synthetic.prepare_synthetic(cfg, tmp_path)
  src = prepared_lib.open_split(builder, "train")
  assert len(src) == 12
  np.testing.assert_array_equal(src[11]["video"], real_render(cfg, "train", 11)[0])


def test_concurrent_preparations_serialise(tmp_path):
  cfg = dataclasses.replace(TINY, num_train=6, num_test=2, num_frames=2, size=8)
  results, errors = [], []

  def run():
    try:
      results.append(synthetic.prepare_synthetic(cfg, tmp_path))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=run) for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors
  assert len(results) == 2 and all(b.is_prepared() for b in results)
  assert len(prepared_lib.open_split(results[0], "train")) == 6


# --- reading -----------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_source_matches_renderer_and_position_is_index(prepared, split):
  src = prepared_lib.open_split(prepared, split)
  assert len(src) == TINY.num_examples(split)
  for i in range(len(src)):
    record = src[i]
    video, label = render_clip(TINY, split, i)
    assert record["video"].dtype == np.uint8 and record["video"].shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(record["video"], video)
    assert record["label"].dtype == np.int32 and int(record["label"]) == label
    assert record["index"].dtype == np.int32 and int(record["index"]) == i
  batch = src.__getitems__([5, 0, 3])
  assert [int(r["index"]) for r in batch] == [5, 0, 3]
  with pytest.raises(IndexError):
    src[len(src)]


def test_labels_are_cached_beside_the_data(prepared, monkeypatch):
  src = prepared_lib.open_split(prepared, "train")
  expected = np.arange(24, dtype=np.int32) % 12
  cache = pathlib.Path(src.labels_path)
  cache.unlink(missing_ok=True)
  labels = src.labels()
  assert labels.dtype == np.int32
  np.testing.assert_array_equal(labels, expected)
  assert cache.parent == pathlib.Path(prepared.data_dir) and cache.exists()
  np.testing.assert_array_equal(np.load(cache), expected)

  # A new source (e.g. the next run) loads the cache without reading a single record.
  fresh = prepared_lib.open_split(prepared, "train")

  def no_reads(*args, **kwargs):
    raise AssertionError("labels() must not read records when cached")

  monkeypatch.setattr(fresh._data, "__getitems__", no_reads)  # pylint: disable=protected-access
  np.testing.assert_array_equal(fresh.labels(), expected)


def test_scalar_fields_reads_the_fields_the_records_carry_in_record_order(prepared):
  src = prepared_lib.open_split(prepared, "train")
  fields = src.scalar_fields("index", "label", "no_such_field")
  assert sorted(fields) == ["index", "label"]  # a field no record carries is left out
  np.testing.assert_array_equal(fields["index"], np.arange(24))
  np.testing.assert_array_equal(fields["label"], np.arange(24) % 12)
  assert fields["index"].dtype == np.int64


def test_stale_label_cache_is_recomputed(prepared):
  src = prepared_lib.open_split(prepared, "test")
  np.save(src.labels_path, np.zeros(5, np.int32))  # wrong length
  np.testing.assert_array_equal(src.labels(), np.arange(12) % 12)
  assert np.load(src.labels_path).shape == (12,)


def test_grain_reads_with_threads(prepared):
  src = prepared_lib.open_split(prepared, "train")
  ds = grain.MapDataset.source(src).map(lambda r: (int(r["index"]), r["video"]))
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=8))
  got = list(it)
  assert [i for i, _ in got] == list(range(24))
  for i, video in got:
    np.testing.assert_array_equal(video, src[i]["video"])


def test_not_prepared_error_names_the_path_and_the_fix(tmp_path):
  builder = synthetic.synthetic_builder(dataclasses.replace(TINY, seed=7), tmp_path)
  with pytest.raises(DataError) as info:
    prepared_lib.open_split(builder, "train")
  message = str(info.value)
  assert os.fspath(builder.data_dir) in message
  assert "prepare_synthetic" in message


def test_unknown_split_is_a_clear_error(prepared):
  with pytest.raises(DataError, match="available"):
    prepared_lib.open_split(prepared, "val")


def test_labels_pass_rejects_records_out_of_index_order(prepared, tmp_path, monkeypatch):
  src = prepared_lib.open_split(prepared, "train")
  monkeypatch.setattr(type(src), "labels_path", property(lambda self: str(tmp_path / "l.npy")))
  real = src._data.__getitems__  # pylint: disable=protected-access
  monkeypatch.setattr(src._data, "__getitems__",  # pylint: disable=protected-access
                      lambda positions: real(list(reversed(positions))))
  with pytest.raises(DataError, match="index order"):
    src.labels()
  assert not (tmp_path / "l.npy").exists()
