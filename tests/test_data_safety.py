"""Data files as a careless or hostile user gives them (issue 15): no code runs from a data file,
no read outside --manual_dir, nothing hidden or nested silently read or dropped, no subject on both
sides of a split, and every bad input one paragraph (a `DataError`, exit 2 through `run_cli`)."""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re

import numpy as np
import pytest

import videogen
from aplt_jax import errors
from aplt_jax import predict
from aplt_jax import prepare
from aplt_jax.data import sequences
from aplt_jax.data import split as split_lib
from aplt_jax.data.sequences import readers
from aplt_jax.data.video import decode
from aplt_jax.data.video import layouts
from aplt_jax.errors import DataError
from configs import default


class _Payload:
  """Unpickling this creates `marker`: proof that code ran."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return (open, (self.marker, "w"))


def _one_paragraph(e: Exception) -> str:
  text = str(e)
  assert "\n" not in text.strip() and "allow_pickle" not in text and "trust" not in text, text
  return text


def _toy(n=12, t=16, c=3, classes=3):
  rng = np.random.default_rng(0)
  return (rng.normal(size=(n, t, c)).astype(np.float32), np.arange(n) % classes,
          np.arange(n) // classes + 1)


# --- 1. No code execution from a data file --------------------------------------------------

def test_a_pickle_given_as_the_watch_file_never_runs(tmp_path, monkeypatch):
  marker = tmp_path / "ran"
  evil = tmp_path / "watch_dataset.npy"
  np.save(evil, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
  raw = tmp_path / "raw.npy"
  raw.write_bytes(pickle.dumps({"X": _Payload(marker)}))
  loads = []
  real_load = np.load
  monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
  for path in (evil, raw):
    with pytest.raises(DataError, match="SHA-256 differs.*not loaded") as e:
      readers.read_watch(str(path))
    _one_paragraph(e.value)
  assert not marker.exists() and loads == []  # refused before numpy saw the file


@pytest.mark.skipif(importlib.util.find_spec("seglearn") is None, reason="seglearn not installed")
def test_only_the_pinned_watch_bytes_are_unpickled(tmp_path):
  original = readers.watch_path()
  copy = tmp_path / "copy.npy"
  copy.write_bytes(open(original, "rb").read())
  rec = readers.read_watch(str(copy))  # the same bytes elsewhere: accepted
  assert len(rec.x) == 140 and rec.x[0].shape[1] == 6
  copy.write_bytes(open(original, "rb").read() + b"\0")
  with pytest.raises(DataError, match="SHA-256 differs"):
    readers.read_watch(str(copy))


def test_pickled_arrays_in_npz_and_npy_inputs_never_run(tmp_path):
  marker = tmp_path / "ran"
  x, y, _ = _toy()
  obj = np.array([_Payload(marker)], dtype=object)
  np.savez(tmp_path / "obj.npz", x=x, y=y, class_names=obj)
  np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
  (tmp_path / "obj_as.npz").write_bytes((tmp_path / "obj.npy").read_bytes())
  for name in ("obj.npz", "obj_as.npz"):
    with pytest.raises(DataError) as e:
      readers.read_npz(str(tmp_path / name))
    _one_paragraph(e.value)
  folder = tmp_path / "folder" / "walk"
  folder.mkdir(parents=True)
  np.save(folder / "0.npy", x[0])
  (folder / "1.npy").write_bytes((tmp_path / "obj.npy").read_bytes())
  with pytest.raises(DataError, match="pickled Python objects.*never loaded") as e:
    readers.read_npy_folder(str(tmp_path / "folder"))
  _one_paragraph(e.value)
  assert not marker.exists()


# --- 7. Every bad data file is one paragraph, exit 2 ----------------------------------------

def _npz_cfg(path, data_dir):
  c = default.get_config().data
  c.name, c.manual_dir, c.data_dir, c.num_classes = "npz", str(path), str(data_dir), 3
  return c


def _prepare_sequences(cfg):
  params, path = sequences.params_from_config(cfg.name, cfg)
  return sequences.build_splits(params, path)


@pytest.mark.parametrize("case, cause", [
    ("truncated", "truncated or corrupt"),
    ("npy_renamed", "a single .npy array, not an .npz"),
    ("duplicate_names", r"class_names lists \['a'\] more than once"),
])
def test_bad_npz_files_are_one_paragraph_exit_2(tmp_path, capsys, case, cause):
  x, y, _ = _toy()
  path = tmp_path / "data.npz"
  if case == "truncated":
    np.savez(path, x=x, y=y)
    path.write_bytes(path.read_bytes()[:300])
  elif case == "npy_renamed":
    with open(path, "wb") as f:
      np.save(f, x)
  else:
    np.savez(path, x=x, y=y, class_names=np.array(["a", "b", "a"]))
  cfg = _npz_cfg(path, tmp_path / "tfds")
  assert errors.run_cli(_prepare_sequences, cfg) == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
  assert re.search(cause, err), err


def test_prepare_on_an_empty_manual_dir_is_one_paragraph_exit_2(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  for dataset in ("class_folder", "ma52"):
    assert prepare.main([f"--dataset={dataset}", f"--manual_dir={tmp_path / 'empty'}",
                         f"--data_dir={tmp_path / 'out'}", "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is empty" in err and len(err.strip().splitlines()) == 1


def test_a_dangling_link_in_an_npy_folder_is_named(tmp_path):
  x, _, _ = _toy()
  (tmp_path / "walk").mkdir()
  np.save(tmp_path / "walk" / "0.npy", x[0])
  os.symlink(tmp_path / "gone.npy", tmp_path / "walk" / "1.npy")
  with pytest.raises(DataError, match=r"1.npy.*link to a missing file") as e:
    sequences.fingerprint(str(tmp_path))
  _one_paragraph(e.value)
  with pytest.raises(DataError, match=r"1.npy.*symbolic link.*does not exist"):
    readers.read_npy_folder(str(tmp_path))


# --- 4. Subject leakage ----------------------------------------------------------------------

@pytest.mark.parametrize("bad_id", [-1, -7])
def test_a_partly_known_subject_list_is_refused_naming_the_rows(tmp_path, bad_id):
  x, y, subject = _toy()
  subject[[3, 8]] = bad_id
  np.savez(tmp_path / "s.npz", x=x, y=y, subject=subject)
  rec = readers.read_npz(str(tmp_path / "s.npz"))
  with pytest.raises(DataError, match=r"2 of 12 sequences have a negative.*rows \[3, 8\]") as e:
    sequences.assign_splits(rec, test_fraction=0.25)
  _one_paragraph(e.value)
  rec.subject[:] = -1  # no subject at all: a per-recording draw, as documented
  assert set(sequences.assign_splits(rec, test_fraction=0.25)) == {"train", "test"}


# --- 5. Hidden entries are never data --------------------------------------------------------

def test_npy_folder_skips_hidden_entries_and_refuses_nested_folders(tmp_path):
  x, y, _ = _toy(n=6)
  for i in range(6):
    d = tmp_path / ("sit", "walk")[i % 2]
    d.mkdir(exist_ok=True)
    np.save(d / f"{i}.npy", x[i])
  (tmp_path / ".ipynb_checkpoints").mkdir()
  np.save(tmp_path / ".ipynb_checkpoints" / "0-checkpoint.npy", x[0])
  np.save(tmp_path / "sit" / ".0-copy.npy", x[0])
  rec = readers.read_npy_folder(str(tmp_path))
  assert rec.class_names == ("sit", "walk") and len(rec.x) == 6
  (tmp_path / "walk" / "more").mkdir()
  with pytest.raises(DataError, match=r"walk/more.*is a folder inside the class folder") as e:
    readers.read_npy_folder(str(tmp_path))
  _one_paragraph(e.value)


def test_a_hidden_folder_beside_split_folders_keeps_them_splits(tmp_path):
  for d in ("train/a", "test/a", ".ipynb_checkpoints", ".git"):
    (tmp_path / d).mkdir(parents=True)
  assert sorted(split_lib.split_folders(str(tmp_path))) == ["test", "train"]


# --- 8. Nothing silently dropped -------------------------------------------------------------

def test_class_folder_reports_nested_folders_non_files_and_stray_files(tmp_path):
  for cls in ("nod", "wave"):
    videogen.write_video(tmp_path / cls / "0.mp4", num_frames=4)
  videogen.write_video(tmp_path / "wave" / "deeper" / "1.mp4", num_frames=4)
  (tmp_path / "wave" / "x.mp4").mkdir()
  os.symlink(tmp_path / "nowhere.mp4", tmp_path / "nod" / "gone.mp4")
  videogen.write_video(tmp_path / "stray.mp4", num_frames=4)
  (tmp_path / "nod" / ".hidden.mp4").write_bytes(b"")
  listing = layouts.get("class_folder").read(str(tmp_path), test_fraction=0.0)
  assert {(p.vid, p.reason) for p in listing.problems} == {
      ("wave/deeper", "nested_folder"), ("wave/x.mp4", "nested_folder"),
      ("nod/gone.mp4", "missing_file"), ("stray.mp4", "outside_class_folder")}
  assert [e.vid for e in listing.entries["train"]] == ["nod/0.mp4", "wave/0.mp4"]


def test_an_empty_class_folder_is_named(tmp_path, capsys):
  from aplt_jax.data import video
  for i in range(2):
    videogen.write_video(tmp_path / "src" / "nod" / f"{i}.mp4", num_frames=4)
  (tmp_path / "src" / "shrug").mkdir()
  params = video.VideoParams(num_frames=2, frames_per_segment=1, height=8, width=8,
                             test_fraction=0.0)
  with pytest.raises(DataError, match=r"Classes \['shrug'\].*no usable training video") as e:
    video.prepare_videos("class_folder", tmp_path / "src", tmp_path / "out", params,
                         video.PrepareOptions(workers=1, progress=False))
  _one_paragraph(e.value)


def test_predict_reports_subfolders_and_other_files(tmp_path):
  videogen.write_video(tmp_path / "a.mp4", num_frames=4)
  videogen.write_video(tmp_path / "more" / "b.mp4", num_frames=4)
  (tmp_path / "notes.txt").write_text("x")
  files, skipped = predict.video_files(str(tmp_path))
  assert files == [str(tmp_path / "a.mp4")]
  assert {(os.path.basename(p.vid), p.reason) for p in skipped} == {
      ("more", "nested_folder"), ("notes.txt", "unsupported_file")}
  (tmp_path / "a.mp4").unlink()
  (tmp_path / "notes.txt").unlink()
  with pytest.raises(DataError, match=r"subfolders \['more'\] are not searched"):
    predict.video_files(str(tmp_path))


# --- 9. Nothing outside --manual_dir is read -------------------------------------------------

def test_list_files_never_read_outside_manual_dir(tmp_path, monkeypatch):
  from aplt_jax.data import video
  root = videogen.make_list_dataset(tmp_path / "ma", num_classes=2,
                                    per_class={"train": 2, "val": 1}, num_frames=4)
  outside = videogen.write_video(tmp_path / "secret.mp4", num_frames=4)
  (root / "videos_train" / "list.m3u8").write_text(
      f"#EXTM3U\n#EXTINF:1,\n{outside}\n#EXT-X-ENDLIST\n")
  # A concat list with a video's name: FFmpeg would follow it by its content, not its name.
  (root / "videos_train" / "concat.mp4").write_text(f"ffconcat version 1.0\nfile '{outside}'\n")
  videogen.append_lines(root, "train", [f"{outside} 0", "../secret.mp4 1",
                                        "videos_train/../../secret.mp4 0", "list.m3u8 0",
                                        "concat.mp4 1"])
  opened = []
  real_open = decode.av.open
  monkeypatch.setattr(decode.av, "open", lambda p, *a, **k: opened.append(p) or real_open(
      p, *a, **k))
  params = video.VideoParams(num_frames=2, frames_per_segment=1, height=8, width=8)
  builder = video.prepare_videos("list_files", root, tmp_path / "out", params,
                                 video.PrepareOptions(workers=1, progress=False))
  assert opened and all(os.path.realpath(p).startswith(str(root) + os.sep) for p in opened)
  assert str(outside) not in opened
  reasons = {p["vid"]: p["reason"] for p in
             json.load(open(builder.report_path))["skipped"]}
  assert reasons == {str(outside): "outside_manual_dir", "../secret.mp4": "outside_manual_dir",
                     "videos_train/../../secret.mp4": "outside_manual_dir",
                     "list.m3u8": "unsupported_file", "concat.mp4": "unreadable"}
  assert builder.info.splits["train"].num_examples == 4


def test_one_path_check_for_every_layout(tmp_path):
  check = layouts.check_video_path
  root = str(tmp_path)
  assert check(root, "a/b.MP4") is None and check(root, str(tmp_path / "c.webm")) is None
  assert check(root, "/etc/x.mp4") == "outside_manual_dir"
  assert check(root, "a/../../x.mp4") == "outside_manual_dir"
  assert check(root, "x.m3u8") == "unsupported_file"
  assert check(root + "2", os.path.join(root, "x.mp4")) == "outside_manual_dir"  # a prefix


# --- 10. Fingerprint through links; no leftovers of a killed preparation --------------------

def test_fingerprint_follows_a_linked_class_folder(tmp_path):
  x, _, _ = _toy()
  (tmp_path / "elsewhere").mkdir()
  np.save(tmp_path / "elsewhere" / "0.npy", x[0])
  (tmp_path / "src").mkdir()
  os.symlink(tmp_path / "elsewhere", tmp_path / "src" / "walk")
  os.symlink(tmp_path / "src", tmp_path / "src" / "loop")  # a link loop is walked once
  before = sequences.fingerprint(str(tmp_path / "src"))
  np.save(tmp_path / "elsewhere" / "1.npy", x[1])
  assert sequences.fingerprint(str(tmp_path / "src")) != before


def test_a_killed_preparation_leaves_no_incomplete_folder(tmp_path):
  x, y, subject = _toy()
  np.savez(tmp_path / "d.npz", x=x, y=y, subject=subject)
  params, path = sequences.params_from_config("npz", _npz_cfg(tmp_path / "d.npz",
                                                              tmp_path / "tfds"))
  b = sequences.builder(params, path, tmp_path / "tfds")
  stale = b.data_path.parent / "incomplete.ABC123_1.0.0"
  stale.mkdir(parents=True)  # what a SIGKILLed preparation leaves
  sequences.prepare(params, path, tmp_path / "tfds")
  assert not stale.exists()
  assert [p.name for p in b.data_path.parent.iterdir() if p.name.startswith("incomplete")] == []


def test_torch_weights_are_loaded_weights_only_and_torch_advice_is_not_passed_on(
    tmp_path, monkeypatch):
  import sys
  import types
  from aplt_jax.models import pretrained
  calls = []

  def load(path, **kwargs):  # what torch.load(weights_only=True) raises for a pickled object
    calls.append(kwargs)
    raise pickle.UnpicklingError("Weights only load failed. Re-running `torch.load` with "
                                 "`weights_only` set to `False` will likely succeed ... "
                                 "only if you got the file from a trusted source.")

  monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(load=load))
  (tmp_path / "w.pth").write_bytes(b"x")
  with pytest.raises(errors.ConfigError, match="never loaded") as e:
    pretrained.read_state_dict(str(tmp_path / "w.pth"))
  assert calls == [{"map_location": "cpu", "weights_only": True}]
  assert "trusted" not in str(e.value) and "weights_only" not in str(e.value)
