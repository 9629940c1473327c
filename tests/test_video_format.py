"""The prepared video format: clips stored as raw bytes, the decode shards compressed and deleted
once written (disk), a copy of an older version named with the command that replaces it, and
resume of a preparation killed while writing."""
import dataclasses
import os
import shutil
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

import videogen
from aplt_jax import data as data_lib
from aplt_jax.data import prepared
from aplt_jax.data import video as video_lib
from aplt_jax.data.video import decode, shards
from aplt_jax.errors import DataError
from configs import default as default_config

PARAMS = video_lib.VideoParams(num_frames=2, frames_per_segment=1, height=16, width=16)
QUIET = video_lib.PrepareOptions(workers=1, progress=False)
TRAIN = 2 * shards.SHARD_SIZE + 3  # three decode shards


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  return videogen.make_list_dataset(tmp_path_factory.mktemp("videos"), num_classes=1,
                                    per_class={"train": TRAIN, "val": 2})


def _clips(builder, split="train"):
  s = prepared.open_split(builder, split)
  return np.stack([s[i]["video"] for i in range(len(s))])


def _data_cfg(data_dir):
  cfg = default_config.get_config().data
  cfg.name, cfg.data_dir, cfg.eval_split, cfg.num_classes = "list_files", str(data_dir), "val", 1
  cfg.manual_dir = "/data/mine"
  for key, value in dataclasses.asdict(PARAMS).items():
    cfg.video[key] = value
  return cfg


def test_clips_are_stored_as_raw_bytes_with_the_decoded_pixels(videos, tmp_path):
  builder = video_lib.prepare_videos("list_files", videos, tmp_path, PARAMS, QUIET)
  assert str(builder.version) == "2.0.0"
  encoding = builder.info.features["video"]._encoding  # pylint: disable=protected-access
  assert encoding == tfds.features.Encoding.BYTES
  split = prepared.open_split(builder, "train")
  names = video_lib.video_ids(builder, "train")
  for i in (0, shards.SHARD_SIZE, TRAIN - 1):  # across ArrayRecord files
    record = split[i]
    assert int(record["index"]) == i
    np.testing.assert_array_equal(
        record["video"], decode.decode_clip(str(videos / "videos_train" / names[i]), PARAMS.spec))
  assert not os.path.exists(builder.cache_dir)


def test_shards_are_compressed_and_deleted_once_written(videos, tmp_path, monkeypatch):
  cache = video_lib.video_builder("list_files", PARAMS, tmp_path).cache_dir
  left, real = [], shards.read_shard

  def reading(path, chunk):
    with zipfile.ZipFile(path) as z:
      assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    left.append(len(os.listdir(cache)))
    return real(path, chunk)

  monkeypatch.setattr(shards, "read_shard", reading)
  video_lib.prepare_videos("list_files", videos, tmp_path, PARAMS, QUIET)
  # train's 3 shards and val's 1 were all decoded before writing; each is gone once written.
  assert left == [4, 3, 2, 1]


def test_killed_while_writing_resumes_decoding_only_the_deleted_shards(videos, tmp_path,
                                                                       monkeypatch):
  reference = _clips(video_lib.prepare_videos("list_files", videos, tmp_path / "ref", PARAMS,
                                              QUIET))
  real_read, calls = shards.read_shard, []

  def killed_at_second_shard(path, chunk):
    calls.append(path)
    if len(calls) == 2:
      raise KeyboardInterrupt  # as a kill while the ArrayRecord files are written
    return real_read(path, chunk)

  monkeypatch.setattr(shards, "read_shard", killed_at_second_shard)
  with pytest.raises(KeyboardInterrupt):
    video_lib.prepare_videos("list_files", videos, tmp_path / "out", PARAMS, QUIET)
  monkeypatch.setattr(shards, "read_shard", real_read)
  decoded, real_decode = [], decode.decode_clip
  monkeypatch.setattr(decode, "decode_clip",
                      lambda path, *a, **k: decoded.append(path) or real_decode(path, *a, **k))
  builder = video_lib.prepare_videos("list_files", videos, tmp_path / "out", PARAMS, QUIET)
  assert len(decoded) == shards.SHARD_SIZE  # the one shard written (and deleted) before the kill
  np.testing.assert_array_equal(_clips(builder), reference)


def test_an_older_copy_is_named_and_preparing_again_reuses_the_kept_cache(videos, tmp_path,
                                                                           monkeypatch):
  opts = dataclasses.replace(QUIET, keep_cache=True)
  builder = video_lib.prepare_videos("list_files", videos, tmp_path, PARAMS, opts)
  reference = _clips(builder)
  old = os.path.join(builder.config_dir, "1.0.0")
  shutil.move(os.fspath(builder.data_path), old)  # as if prepared by the previous version
  with pytest.raises(DataError) as e:
    data_lib.build(_data_cfg(tmp_path))
  msg = str(e.value)
  for part in ("older stored format (version 1.0.0)", "reads version 2.0.0 only", "raw bytes",
               "python -m aplt_jax.prepare --dataset=list_files --manual_dir=/data/mine", old,
               "--keep_cache"):
    assert part in msg
  monkeypatch.setattr(decode, "decode_clip", lambda *a, **k: pytest.fail("decoded again"))
  again = video_lib.prepare_videos("list_files", videos, tmp_path, PARAMS, opts)
  np.testing.assert_array_equal(_clips(again), reference)
  assert len(data_lib.build(_data_cfg(tmp_path)).train) == TRAIN
