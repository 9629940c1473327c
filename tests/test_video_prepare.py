"""Video preparation: decoding, TSN sampling, list files, bad input, reports, resume, real MA-52."""
import dataclasses
import json
import os

import av
import numpy as np
import pytest

import videogen
from aplt_jax import data as data_lib
from aplt_jax import prepare
from aplt_jax.data import prepared, split
from aplt_jax.data import video as video_lib
from aplt_jax.data.video import decode as video
from aplt_jax.data.video import layouts as listfiles
from aplt_jax.data.video import shards as video_cache
from aplt_jax.errors import DataError
from configs import default as default_config
from configs import ma12 as ma12_config
from configs import ma52 as ma52_config

SPEC = video.ClipSpec(num_frames=4, frames_per_segment=2, height=16, width=16)
PARAMS = video_lib.VideoParams(num_frames=4, frames_per_segment=2, height=16, width=16)
QUIET = video_lib.PrepareOptions(workers=1, progress=False)
# Not a video. Fixed bytes: random ones now and then probe as an audio stream.
JUNK = b"this is not a video file. " * 160


def test_segment_indices_are_segment_centres():
  np.testing.assert_array_equal(video.segment_indices(16, 8), [1, 3, 5, 7, 9, 11, 13, 15])
  np.testing.assert_array_equal(video.segment_indices(10, 4), [1, 3, 6, 8])
  np.testing.assert_array_equal(video.segment_indices(3, 6), [0, 0, 1, 1, 2, 2])  # repeats


def test_decode_samples_segment_centres_and_resizes(tmp_path):
  path = videogen.write_video(tmp_path / "v.mp4", num_frames=16, height=24, width=32,
                              grey_ramp=True)
  stats = {}
  clip = video.decode_clip(path, SPEC, stats=stats)
  assert clip.shape == (8, 16, 16, 3) and clip.dtype == np.uint8
  assert stats["declared_frames"] == stats["decoded_frames"] == 16
  assert stats["indices"] == [1, 3, 5, 7, 9, 11, 13, 15]
  # Frame t is grey level 8 + 12 t: the stored frames are the sampled ones, in order.
  level = clip.reshape(8, -1).mean(1)
  np.testing.assert_allclose(level, 8 + 12 * np.arange(1, 16, 2), atol=3)
  # 24 x 32 covers 16 x 16 at 16 x 21 (aspect kept), centre-cropped to 16 x 16.
  assert video.cover_size(24, 32, 16, 16) == (16, 21)


BAD_VIDEOS = {
    "empty_file": lambda p: (p.write_bytes(b""), p)[1],
    "unreadable": lambda p: (p.write_bytes(JUNK), p)[1],
    "zero_frames": lambda p: videogen.write_zero_frame_video(p.with_suffix(".avi")),
    "truncated": videogen.write_truncated_video,
}


@pytest.mark.parametrize("reason", sorted(BAD_VIDEOS))
def test_bad_video_raises_its_reason(reason, tmp_path):
  path = BAD_VIDEOS[reason](tmp_path / "bad.mp4")
  with pytest.raises(video.VideoError) as e:
    video.decode_clip(path, SPEC)
  assert e.value.reason == reason


def test_audio_only_file_has_no_video_stream(tmp_path):
  path = str(tmp_path / "audio.mp4")
  with av.open(path, "w") as out:
    stream = out.add_stream("aac", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                       layout="mono")
    frame.sample_rate = 8000
    for packet in list(stream.encode(frame)) + list(stream.encode()):
      out.mux(packet)
  with pytest.raises(video.VideoError, match="no_video_stream"):
    video.decode_clip(path, SPEC)


def test_list_lines_are_checked(tmp_path):
  for name in ("a.mp4", "b.mp4"):
    (tmp_path / name).write_bytes(b"x")
  lines = ["a.mp4 1", "b.mp4 two", "b.mp4 7", "nothere.mp4 0", "a.mp4 2", "lonely", "", "b.mp4 0"]
  entries, problems = listfiles.parse_list(lines, "train", [str(tmp_path)], 4, "train.txt")
  assert [(e.vid, e.label) for e in entries] == [("a.mp4", 1), ("b.mp4", 0)]
  assert [(p.vid, p.reason) for p in problems] == [
      ("b.mp4", "bad_label"), ("b.mp4", "label_out_of_range"), ("nothere.mp4", "missing_file"),
      ("a.mp4", "duplicate"), ("train.txt:6", "malformed_line")]


# --------------------------------------------------------------------- preparation


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
  """A list-file dataset with one entry of every kind of bad input, prepared once."""
  root = videogen.make_list_dataset(tmp_path_factory.mktemp("messy"), num_classes=3,
                                    per_class={"train": 3, "val": 1})
  train = root / "videos_train"
  (train / "empty.mp4").write_bytes(b"")
  (train / "junk.mp4").write_bytes(JUNK)
  videogen.write_truncated_video(train / "cut.mp4")
  videogen.write_zero_frame_video(train / "still.avi")
  videogen.append_lines(root, "train", [
      "empty.mp4 0", "junk.mp4 1", "cut.mp4 2", "still.avi 0", "gone.mp4 1",
      "c0_train_00.mp4 0", "c1_train_00.mp4 x", "c1_train_01.mp4 3", "no_label_here"])
  data_dir = tmp_path_factory.mktemp("prepared")
  builder = video_lib.prepare_videos("list_files", root, data_dir, PARAMS,
                                    video_lib.PrepareOptions(workers=2, progress=False))
  return root, data_dir, builder


@pytest.mark.parametrize("reason,vid", [
    ("empty_file", "empty.mp4"), ("unreadable", "junk.mp4"), ("truncated", "cut.mp4"),
    ("zero_frames", "still.avi"), ("missing_file", "gone.mp4"), ("duplicate", "c0_train_00.mp4"),
    ("bad_label", "c1_train_00.mp4"), ("label_out_of_range", "c1_train_01.mp4"),
    ("malformed_line", "train_list_videos.txt:18")])
def test_bad_input_is_reported_and_skipped(messy, reason, vid):
  _, _, builder = messy
  report = json.loads(open(builder.report_path).read())
  assert {"split": "train", "vid": vid, "reason": reason} in [
      {k: p[k] for k in ("split", "vid", "reason")} for p in report["skipped"]]
  assert vid not in builder.info.metadata["videos"]["train"][9:]  # only the 9 good ones stay


def test_prepared_splits_hold_the_good_clips_in_list_order(messy):
  _, _, builder = messy
  report = json.loads(open(builder.report_path).read())
  assert report["splits"]["train"] == {
      "usable": 9, "skipped": 9, "skipped_by_reason": {
          "bad_label": 1, "label_out_of_range": 1, "missing_file": 1, "duplicate": 1,
          "malformed_line": 1, "empty_file": 1, "unreadable": 1, "truncated": 1,
          "zero_frames": 1}}
  train = prepared.open_split(builder, "train")
  assert len(train) == 9 and train[0]["video"].shape == SPEC.shape
  np.testing.assert_array_equal(train.labels(), np.repeat([0, 1, 2], 3))
  assert builder.info.metadata["class_names"] == ["motion 0", "motion 1", "motion 2"]
  assert builder.info.metadata["videos"]["val"] == ["c0_val_00.mp4", "c1_val_00.mp4",
                                                    "c2_val_00.mp4"]
  assert not os.path.exists(builder.cache_dir)  # removed after success


def test_summary_names_counts_and_files(messy):
  _, _, builder = messy
  text = listfiles.format_report(json.loads(open(builder.report_path).read()), "R.json")
  assert "train: 9 usable, 9 skipped" in text
  assert "skipped 1 x truncated" in text and "train/cut.mp4" in text and "R.json" in text


def test_trainer_opens_the_prepared_dataset(messy):
  _, data_dir, _ = messy
  cfg = default_config.get_config().data
  cfg.name, cfg.data_dir, cfg.eval_split, cfg.num_classes = "list_files", str(data_dir), "val", 3
  for key, value in dataclasses.asdict(PARAMS).items():
    cfg.video[key] = value
  ds = data_lib.build(cfg)
  assert (len(ds.train), len(ds.eval), ds.num_classes) == (9, 3, 3)
  assert ds.view_kwargs == {"frames_per_segment": 2} and ds.evaluate_extra is None


def test_rerun_is_a_no_op_and_another_source_is_refused(messy, tmp_path):
  root, data_dir, builder = messy
  again = video_lib.prepare_videos("list_files", root, data_dir, PARAMS, QUIET)
  assert again.data_path == builder.data_path
  other = videogen.make_list_dataset(tmp_path / "other", num_classes=3, per_class={"train": 1})
  with pytest.raises(DataError, match="already holds list_files prepared from"):
    video_lib.prepare_videos("list_files", other, data_dir, PARAMS, QUIET)


def test_nothing_usable_fails_naming_the_report(tmp_path):
  root = tmp_path / "bad"
  (root / "videos_train").mkdir(parents=True)
  (root / "videos_train" / "a.mp4").write_bytes(b"")
  (root / "train_list_videos.txt").write_text("a.mp4 0\nb.mp4 1\n")
  with pytest.raises(DataError, match=r"No usable video .*train.*prepare_report.json"):
    video_lib.prepare_videos("list_files", root, tmp_path / "out", PARAMS,
                            dataclasses.replace(QUIET, num_classes=2))
  assert os.path.exists(video_lib.video_builder("list_files", PARAMS, tmp_path / "out").report_path)


def test_list_files_without_names_needs_num_classes(tmp_path):
  root = videogen.make_list_dataset(tmp_path / "d", num_classes=2, per_class={"train": 1},
                                    names=False)
  with pytest.raises(DataError, match="num_classes"):
    video_lib.prepare_videos("list_files", root, tmp_path / "out", PARAMS, QUIET)


def test_decoding_resumes_from_finished_shards(tmp_path, monkeypatch):
  root = videogen.make_list_dataset(tmp_path / "d", num_classes=1, per_class={"train": 20})
  entries = listfiles.get("list_files").read(str(root)).entries["train"]
  cache = str(tmp_path / "cache")
  video_cache.decode_shard([e.path for e in entries[:16]], SPEC,
                           video_cache._shard_path(cache, "train", 0, entries[:16], SPEC))
  decoded = []
  real = video.decode_clip

  def counting(path, *args, **kwargs):
    decoded.append(path)
    return real(path, *args, **kwargs)

  monkeypatch.setattr(video, "decode_clip", counting)
  assert video_cache.decode_split(entries, "train", SPEC, cache, workers=1, progress=False) == []
  assert decoded == [e.path for e in entries[16:]]  # the first shard was kept
  assert len(list(video_cache.iter_clips(entries, "train", SPEC, cache))) == 20


def test_class_folders_with_held_out_split(tmp_path):
  for cls, n in (("wave", 5), ("nod", 1)):
    for i in range(n):
      videogen.write_video(tmp_path / cls / f"{i}.mp4", num_frames=4)
  (tmp_path / "wave" / "notes.txt").write_text("not a video")
  listing = listfiles.get("class_folder").read(str(tmp_path), test_fraction=0.4)
  assert listing.class_names == ["nod", "wave"]
  assert [(e.vid, e.label) for e in listing.entries["train"]][0] == ("nod/0.mp4", 0)
  assert len(listing.entries["train"]) == 4 and len(listing.entries["test"]) == 2
  assert [(p.vid, p.reason) for p in listing.problems] == [("wave/notes.txt", "unsupported_file")]


def test_class_folders_with_split_folders(tmp_path):
  for split_name, n in (("train", 2), ("test", 1)):
    for cls in ("a", "b"):
      for i in range(n):
        videogen.write_video(tmp_path / split_name / cls / f"{i}.mp4", num_frames=4)
  listing = listfiles.get("class_folder").read(str(tmp_path))
  assert {s: len(e) for s, e in listing.entries.items()} == {"train": 4, "test": 2}


def test_unprepared_dataset_names_files_and_command(tmp_path):
  cfg = ma52_config.get_config().data
  cfg.data_dir, cfg.manual_dir = str(tmp_path), "/data/MA-52"
  with pytest.raises(DataError) as e:
    data_lib.build(cfg)
  msg = str(e.value)
  for part in ("/data/MA-52/label_name.txt", "train,val,test}_list_videos.txt",
               f"python -m aplt_jax.prepare --dataset=ma52 --manual_dir=/data/MA-52 "
               f"--data_dir={tmp_path} --num_frames=8 --frames_per_segment=2 --height=256 "
               "--width=224"):
    assert part in msg


def test_unusable_video_settings_name_the_key(tmp_path):
  from aplt_jax.errors import ConfigError
  cfg = ma52_config.get_config().data
  cfg.data_dir, cfg.video.frames_per_segment = str(tmp_path), 0
  with pytest.raises(ConfigError, match="data.video .*frames_per_segment must be a positive"):
    data_lib.build(cfg)


def test_prepare_defaults_are_the_configs():
  for name, cfg in (("ma52", ma52_config), ("ma12", ma12_config)):
    video_cfg = cfg.get_config().data.video
    assert dataclasses.asdict(video_lib.default_params(name)) == dict(video_cfg), name
  assert dataclasses.asdict(video_lib.default_params("class_folder")) == dict(
      default_config.get_config().data.video)


# ------------------------------------------------------------------ real MA-52 files


def test_real_ma52_lists(shared_data):
  ma52 = shared_data / "ma52"
  names = listfiles.read_label_names(str(ma52 / "label_name.txt"))
  assert len(names) == 52 and names[9] == "nodding" and names[45] == "covering face"
  counts = {}
  for split_name in listfiles.SPLITS:
    with open(listfiles.list_file(str(ma52), split_name)) as f:
      entries, problems = listfiles.parse_list(f, split_name, None, 52)
    assert problems == []
    counts[split_name] = entries
  # data/README's 5,585 test "lines" are newlines: the last entry (test5585.mp4) has none.
  assert [len(counts[s]) for s in listfiles.SPLITS] == [11250, 5586, 5586]
  labels = np.array([e.label for e in counts["train"]])
  per_class = np.bincount(labels, minlength=52)
  assert per_class[9] == 1283 and per_class.min() == 6 == per_class[45]
  labeled = split.draw_labeled(labels, 52, seed=0, ratio=0.1)
  chosen = np.bincount(labels[labeled], minlength=52)
  assert chosen[45] == 1 and chosen[9] == 128 and (chosen >= 1).all()  # the long tail is kept


def test_real_clips_decode_to_documented_frames_and_prepare(shared_data, tmp_path):
  root, clips = videogen.link_real_clips(shared_data, tmp_path / "ma52")
  documented = {"shaking_body": 75, "nodding": 50, "shaking_head": 45}
  spec = video.ClipSpec(4, 2, 32, 28)
  for clip in clips:
    stats = {}
    out = video.decode_clip(clip, spec, stats=stats)
    expected = documented[clip.name.split("__")[0]]
    assert stats["declared_frames"] == stats["decoded_frames"] == expected
    assert out.shape == (8, 32, 28, 3) and out.std() > 5  # real content, not a blank frame
  params = video_lib.VideoParams(num_frames=4, frames_per_segment=2, height=32, width=28)
  builder = video_lib.prepare_videos("ma52", root, tmp_path / "prepared", params, QUIET)
  val = prepared.open_split(builder, "val")
  assert len(val) == 3 and sorted(val.labels().tolist()) == [0, 9, 10]
  assert len(builder.info.metadata["class_names"]) == 52


def test_prepare_command_line(tmp_path, capsys):
  root = videogen.make_list_dataset(tmp_path / "mine", num_classes=2, per_class={"train": 2})
  args = ["--dataset=list_files", f"--manual_dir={root}", f"--data_dir={tmp_path / 'out'}",
          "--num_frames=2", "--frames_per_segment=1", "--height=8", "--width=8", "--workers=1",
          "--no_progress"]
  assert prepare.main(args) == 0
  out = capsys.readouterr().out
  assert "Prepared list_files (train 4 clips of (2, 8, 8, 3))" in out
  assert "--config.data.name=list_files --config.data.num_classes=2" in out
  assert "--config.data.video.frames_per_segment=1" in out
  assert prepare.main(["--dataset=ma52", f"--manual_dir={tmp_path / 'nowhere'}"]) == 2
  assert "is not a folder" in capsys.readouterr().err


def test_a_video_listed_in_two_splits_stays_in_the_first_only(tmp_path):
  (tmp_path / "a.mp4").write_bytes(b"x")
  (tmp_path / "b.mp4").write_bytes(b"x")
  (tmp_path / "train_list_videos.txt").write_text("a.mp4 0\nb.mp4 1\n")
  (tmp_path / "test_list_videos.txt").write_text("a.mp4 0\n")
  listing = listfiles.ListFileLayout("mine", num_classes=2).read(str(tmp_path))
  assert [e.vid for e in listing.entries["train"]] == ["a.mp4", "b.mp4"]
  assert listing.entries["test"] == []
  assert [(p.split, p.vid, p.reason) for p in listing.problems] == [
      ("test", "a.mp4", "in_other_split")]
