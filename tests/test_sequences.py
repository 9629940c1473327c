"""Pose and sensor sequences: readers (npz, npy folder, watch), bad input, windowing, subject
splits, train-only normalisation, the TCN, sequence augmentation, and one tiny end-to-end run.

Compiled functions: the augmentation views (weak / strong / centre at two settings), one TCN
init + apply, and the tiny trainer run (its train, eval and embed steps).
"""
from __future__ import annotations

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aplt_jax import augment
from aplt_jax.augment import sequence as augment_seq
from aplt_jax import data as data_lib
from aplt_jax import models
from aplt_jax import train
from aplt_jax.data import sequences
from aplt_jax.data.sequences import readers
from aplt_jax.errors import ConfigError, DataError
from configs import default
from tools import by_subject

N_CLASSES, T, C = 3, 32, 4


def _npz(path, **arrays):
  np.savez(path, **arrays)
  return str(path)


def _toy(n=36, t=T, c=C, seed=0, subjects=6):
  """n sequences [t, c]: class k is a sine of frequency k + 1 plus noise; subjects round-robin."""
  rng = np.random.default_rng(seed)
  y = np.arange(n) % N_CLASSES
  steps = np.linspace(0, 1, t)[None, :, None]
  x = np.sin(2 * np.pi * (y[:, None, None] + 1) * steps + rng.uniform(0, 6, (n, 1, c)))
  x = x + 0.1 * rng.normal(size=(n, t, c))
  return x.astype(np.float32), y.astype(np.int64), (np.arange(n) // N_CLASSES) % subjects + 1


def _data_cfg(name, manual_dir, data_dir, **seq):
  c = default.get_config().data
  c.name, c.manual_dir, c.data_dir, c.num_classes = name, str(manual_dir), str(data_dir), N_CLASSES
  for k, v in seq.items():
    c.sequence[k] = v
  return c


# --- readers and bad input ------------------------------------------------------------------

def test_npz_reader_reads_every_array(tmp_path):
  x, y, s = _toy()
  split = np.where(s >= 5, "test", "train")
  rec = readers.read_npz(_npz(tmp_path / "a.npz", x=x, y=y, subject=s, split=split,
                                class_names=np.array(["a", "b", "c"])))
  assert len(rec.x) == 36 and rec.x[0].shape == (T, C)
  np.testing.assert_array_equal(rec.y, y)
  np.testing.assert_array_equal(rec.subject, s)
  assert rec.class_names == ("a", "b", "c") and rec.split.tolist() == split.tolist()
  rec = readers.read_npz(_npz(tmp_path / "b.npz", x=x.reshape(36, T, 2, 2), y=y))
  assert rec.x[0].shape == (T, 2, 2) and (rec.subject == -1).all() and rec.split is None


@pytest.mark.parametrize("arrays, cause", [
    (lambda x, y: dict(x=x[:, :, 0], y=y), r"x has shape \(36, 32\); expected \[N, T, C\]"),
    (lambda x, y: dict(x=x, y=y[:-1]), r"y has shape \(35,\); expected \(36,\)"),
    (lambda x, y: dict(x=x), r"missing \['y'\]"),
    (lambda x, y: dict(x=x, y=y, subjects=y), r"unknown \['subjects'\]"),
    (lambda x, y: dict(x=x, y=y + 0.5), r"y must hold integers"),
    (lambda x, y: dict(x=x, y=y, split=np.array(["train"] * 35 + ["dev"])),
     r"split has values \['dev'\]"),
])
def test_npz_reader_rejects_bad_files_naming_the_cause(tmp_path, arrays, cause):
  x, y, _ = _toy()
  with pytest.raises(DataError, match=cause):
    readers.read_npz(_npz(tmp_path / "bad.npz", **arrays(x, y)))


def test_npz_reader_rejects_missing_and_unreadable_files(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    readers.read_npz(str(tmp_path / "none.npz"))
  (tmp_path / "junk.npz").write_bytes(b"not a zip file")
  with pytest.raises(DataError, match="Cannot read"):
    readers.read_npz(str(tmp_path / "junk.npz"))


@pytest.mark.parametrize("edit, cause", [
    (lambda x, y: x.__setitem__((4, 7, 1), np.nan),
     r"sequence 4 has 1 NaN or infinite values \(first at time step 7\)"),
    (lambda x, y: x.__setitem__((2, 0, 0), np.inf), r"sequence 2 has 1 NaN or infinite"),
    (lambda x, y: y.__setitem__(5, 3), r"1 labels lie outside \[0, 3\).*label 3 of sequence 5"),
    (lambda x, y: y.__setitem__(0, -1), r"outside \[0, 3\).*label -1 of sequence 0"),
])
def test_validation_names_nans_and_labels_out_of_range(tmp_path, edit, cause):
  x, y, _ = _toy()
  edit(x, y)
  rec = readers.read_npz(_npz(tmp_path / "a.npz", x=x, y=y))
  with pytest.raises(DataError, match=cause):
    sequences.validate(rec, N_CLASSES)


def test_float64_values_beyond_float32_are_named_as_such(tmp_path):
  x, y, _ = _toy()
  x = x.astype(np.float64)
  x[3, 5, 2] = 1e39  # finite in float64, inf once stored as float32
  rec = readers.read_npz(_npz(tmp_path / "a.npz", x=x, y=y))
  with pytest.raises(DataError, match=r"sequence 3 has 1 values beyond float32's range.*step 5"):
    sequences.validate(rec, N_CLASSES)


def test_validation_rejects_mixed_channels_and_class_count_mismatch():
  rec = readers.Recordings(x=[np.zeros((5, 3)), np.zeros((5, 4))], y=np.zeros(2, np.int64),
                             subject=np.full(2, -1), split=None, class_names=(), source="mem")
  with pytest.raises(DataError, match=r"sequence 1 has shape \(5, 4\).*same channels"):
    sequences.validate(rec, 2)
  rec.x[1] = np.zeros((5, 3))
  rec.class_names = ("a", "b", "c")
  with pytest.raises(DataError, match=r"names 3 classes.*num_classes=2"):
    sequences.validate(rec, 2)


def test_npy_folder_with_and_without_split_folders(tmp_path):
  x, y, _ = _toy(n=12)
  names = ["walk", "jump", "sit"]
  for i in range(12):
    d = tmp_path / "flat" / names[y[i]]
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / f"{i:02d}.npy", x[i][: T - i])  # varying lengths
    d = tmp_path / "split" / ("test" if i >= 9 else "train") / names[y[i]]
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / f"{i:02d}.npy", x[i])
  rec = readers.read_npy_folder(str(tmp_path / "flat"))
  assert rec.class_names == ("jump", "sit", "walk") and rec.split is None
  assert sorted(len(a) for a in rec.x) == list(range(T - 11, T + 1))
  first = rec.class_names.index(names[y[0]])
  np.testing.assert_array_equal(rec.x[list(rec.y).index(first)], x[0])  # file 00 of its class
  ds = data_lib.build(_data_cfg("npy_folder", tmp_path / "flat", tmp_path / "tfds", window=24,
                                stride=4))
  assert ds.class_names == ["jump", "sit", "walk"] and ds.train[0]["sequence"].shape == (24, C)
  assert sum(ds.skipped.values()) == 3  # the 23-, 22- and 21-step recordings
  assert {k.split("/")[1] for k in ds.skipped} == {"shorter_than_window"}
  rec = readers.read_npy_folder(str(tmp_path / "split"))
  assert sorted(rec.split.tolist()) == ["test"] * 3 + ["train"] * 9
  with pytest.raises(DataError, match="No .npy files"):
    (tmp_path / "empty").mkdir()
    readers.read_npy_folder(str(tmp_path / "empty"))


# --- windowing and splits -------------------------------------------------------------------

def test_window_starts_fit_inside_the_recording():
  np.testing.assert_array_equal(sequences.window_starts(1000, 200, 100), np.arange(0, 801, 100))
  np.testing.assert_array_equal(sequences.window_starts(399, 200, 100), [0, 100])
  assert len(sequences.window_starts(199, 200, 100)) == 0
  np.testing.assert_array_equal(sequences.window_starts(200, 200, 100), [0])


def test_windows_are_slices_of_their_recording():
  rng = np.random.default_rng(0)
  xs = [rng.normal(size=(n, 2)).astype(np.float32) for n in (450, 120, 300)]
  rec = readers.Recordings(x=xs, y=np.array([0, 1, 2]), subject=np.array([4, 5, 6]),
                             split=None, class_names=(), source="mem")
  w = sequences.make_windows(rec, np.array([0, 1, 2]), window=200, stride=100)
  assert w.x.shape == (3 + 0 + 2, 200, 2)  # the 120-step recording is too short
  np.testing.assert_array_equal(w.recording, [0, 0, 0, 2, 2])
  np.testing.assert_array_equal(w.start, [0, 100, 200, 0, 100])
  np.testing.assert_array_equal(w.subject, [4, 4, 4, 6, 6])
  np.testing.assert_array_equal(w.label, [0, 0, 0, 2, 2])
  assert w.skipped == (1,)
  for i in range(5):
    np.testing.assert_array_equal(w.x[i], xs[w.recording[i]][w.start[i]:w.start[i] + 200])
  with pytest.raises(DataError, match="different lengths.*data.sequence.window"):
    sequences.make_windows(rec, np.array([0, 1]), window=0, stride=0)


def test_subject_splits_never_share_a_subject():
  x, y, s = _toy(n=60, subjects=10)
  rec = readers.Recordings(x=list(x), y=y, subject=s, split=None, class_names=(), source="m")
  for kwargs in (dict(test_subjects=(8, 9, 10)), dict(test_fraction=0.3, seed=1),
                 dict(test_fraction=0.3, seed=2)):
    split = sequences.assign_splits(rec, **kwargs)
    train, test = set(s[split == "train"]), set(s[split == "test"])
    assert train and test and not train & test, kwargs
  assert set(s[sequences.assign_splits(rec, test_subjects=(8, 9, 10)) == "test"]) == {8, 9, 10}
  assert len(set(s[sequences.assign_splits(rec, test_fraction=0.3) == "test"])) == 3
  with pytest.raises(DataError, match=r"subjects \[11\] that"):
    sequences.assign_splits(rec, test_subjects=(10, 11))


def test_validation_split_is_carved_from_the_training_side_only():
  x, y, s = _toy(n=60, subjects=10)
  rec = readers.Recordings(x=list(x), y=y, subject=s, split=None, class_names=(), source="m")
  split = sequences.assign_splits(rec, test_subjects=(9, 10), val_subjects=(7, 8))
  assert set(s[split == "val"]) == {7, 8} and set(s[split == "test"]) == {9, 10}
  assert set(s[split == "train"]) == set(range(1, 7))
  for seed in (0, 1):  # a drawn fraction takes whole training subjects, never test ones
    split = sequences.assign_splits(rec, test_subjects=(10,), val_fraction=0.25, seed=seed)
    val, train = set(s[split == "val"]), set(s[split == "train"])
    assert len(val) == 2 and 10 not in val and not val & train  # round(0.25 * 9 subjects)
  with pytest.raises(DataError, match=r"val_subjects lists subjects \[10\]"):
    sequences.assign_splits(rec, test_subjects=(10,), val_subjects=(10,))
  # Without subjects: per class, a fraction of the training recordings.
  rec = readers.Recordings(x=list(x), y=y, subject=np.full(60, -1), split=None,
                           class_names=(), source="m")
  split = sequences.assign_splits(rec, test_fraction=0.2, val_fraction=0.25, seed=0)
  for k in range(N_CLASSES):
    assert (split[y == k] == "test").sum() == 4 and (split[y == k] == "val").sum() == 4
  with pytest.raises(DataError, match="carries its own split"):
    sequences.assign_splits(sequences.dataclasses.replace(rec, split=split), val_fraction=0.2)


def test_split_without_subjects_is_stratified_by_recording():
  x, y, _ = _toy(n=30)
  rec = readers.Recordings(x=list(x), y=y, subject=np.full(30, -1), split=None,
                             class_names=(), source="m")
  split = sequences.assign_splits(rec, test_fraction=0.2, seed=0)
  for k in range(N_CLASSES):
    assert (split[y == k] == "test").sum() == 2  # round(0.2 * 10)
  np.testing.assert_array_equal(split, sequences.assign_splits(rec, test_fraction=0.2, seed=0))
  with pytest.raises(DataError, match="carries its own split"):
    sequences.assign_splits(sequences.dataclasses.replace(rec, split=split), test_subjects=(1,))


def test_normalisation_statistics_come_from_the_training_split_only(tmp_path):
  x, y, s = _toy(n=36)
  x[s >= 5] = 100.0 + 7.0 * x[s >= 5]  # test subjects live on another scale
  params = sequences.SequenceParams(kind="npz", fingerprint="x", num_classes=N_CLASSES,
                                    test_subjects=(5, 6))
  out = sequences.build_splits(params, _npz(tmp_path / "a.npz", x=x, y=y, subject=s))
  train = x[s < 5]
  np.testing.assert_allclose(out["mean"], train.mean((0, 1)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["std"], train.std((0, 1)), rtol=1e-4)
  tr = out["splits"]["train"].x
  np.testing.assert_allclose(tr.mean((0, 1)), 0, atol=1e-5)
  np.testing.assert_allclose(tr.std((0, 1)), 1, rtol=1e-4)
  assert out["splits"]["test"].x.mean() > 50  # not re-centred by its own statistics
  raw = sequences.build_splits(sequences.dataclasses.replace(params, normalize=False),
                               str(tmp_path / "a.npz"))
  np.testing.assert_array_equal(raw["splits"]["train"].x, train)


def test_npz_dataset_through_tfds_arrayrecord(tmp_path):
  x, y, s = _toy(n=36)
  path = _npz(tmp_path / "a.npz", x=x.reshape(36, T, 2, 2), y=y, subject=s)
  cfg = _data_cfg("npz", path, tmp_path / "tfds", window=16, stride=8, test_subjects=(6,))
  ds = data_lib.build(cfg)
  assert (ds.modality, ds.input_key, ds.num_classes) == ("sequence", "sequence", N_CLASSES)
  per_rec = len(sequences.window_starts(T, 16, 8))
  assert len(ds.train) == 30 * per_rec and len(ds.eval) == 6 * per_rec
  rec = ds.train[5]
  assert rec["sequence"].shape == (16, 2, 2) and rec["sequence"].dtype == np.float32
  assert rec["index"] == 5 and rec["label"] == ds.train_labels[5]
  assert {int(ds.eval[i]["subject"]) for i in range(len(ds.eval))} == {6}
  assert data_lib.build(cfg).train.builder.data_dir == ds.train.builder.data_dir  # reused
  bad = _data_cfg("npz", path, tmp_path / "tfds")
  bad.num_classes = 2
  with pytest.raises(DataError, match=r"outside \[0, 2\)"):
    data_lib.build(bad)
  with pytest.raises(DataError, match="data.manual_dir, which is empty"):
    data_lib.build(_data_cfg("npz", "", tmp_path / "tfds"))


@pytest.mark.skipif(importlib.util.find_spec("seglearn") is None, reason="seglearn not installed")
def test_watch_windows_and_subject_split(tmp_path):
  cfg = _data_cfg("watch", "", tmp_path / "tfds")
  cfg.num_classes = 7
  ds = data_lib.build(cfg)
  # Subject 7 is the validation split (for choosing), 8-10 the test split (for reporting).
  assert (len(ds.train), len(ds.eval)) == (1271, 707)
  assert ds.class_names == ["PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW"]
  meta = lambda src, k: np.array([int(src[i][k]) for i in range(len(src))])
  train_subj, test_subj = set(meta(ds.train, "subject")), set(meta(ds.eval, "subject"))
  assert train_subj == set(range(1, 7)) and test_subj == {8, 9, 10}
  cfg.eval_split = "val"
  val = data_lib.build(cfg).eval
  assert len(val) == 251 and set(meta(val, "subject")) == {7}
  train_rec, val_rec = set(meta(ds.train, "recording")), set(meta(val, "recording"))
  assert not train_rec & val_rec
  assert ds.train[0]["sequence"].shape == (200, 6)
  assert ds.view_kwargs == {"dataset_mirror_sign": readers.WATCH_MIRROR_SIGN}
  # Every window is 200 consecutive samples of its recording, every 100 samples.
  raw = np.load(readers.watch_path(), allow_pickle=True).item()
  info = ds.train.builder.info.metadata
  i = 37
  r, start = int(ds.train[i]["recording"]), int(ds.train[i]["start"])
  expected = (raw["X"][r][start:start + 200] - np.array(info["mean"])) / np.array(info["std"])
  np.testing.assert_allclose(ds.train[i]["sequence"], expected, rtol=1e-4, atol=1e-5)
  assert start % 100 == 0 and int(ds.train[i]["label"]) == raw["y"][r]
  assert sorted(train_rec | val_rec | set(meta(ds.eval, "recording"))) == list(range(140))


# --- TCN --------------------------------------------------------------------------------------

def test_tcn_shapes_and_registry():
  model = models.build("tcn", 5, tcn_width=16, tcn_depth=3, tcn_kernel=3, tcn_stride=2)
  x = jnp.zeros((2, 40, 6))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  params = variables["params"]["backbone"]
  assert set(params) == {"stem_conv", "stem_bn", "block0", "block1", "block2"}
  assert params["stem_conv"]["kernel"].shape == (3, 6, 16)
  for shape in ((2, 40, 6), (3, 17, 3, 2)):  # [B, T, C] and [B, T, J, D]
    logits, feats = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables,
                                   jnp.zeros(shape))
    assert logits.shape == (shape[0], 5) and feats.shape == (shape[0], 16)
  with pytest.raises(ConfigError, match="tcn_depth"):
    models.build("tcn", 5, tcn_depth=-1)


def test_projection_head_feeds_the_prototype_branch_and_leaves_the_linear_head_alone():
  """model.proj_dim: the returned features become the projection's [B, P]; the backbone and the
  linear head (its parameters at init and its logits) are those of the model without it."""
  kw = dict(tcn_width=8, tcn_depth=2, tcn_kernel=3, tcn_stride=2)
  x = jax.random.normal(jax.random.key(1), (3, 20, 6))
  plain, proj = models.build("tcn", 5, **kw), models.build("tcn", 5, proj_dim=4, **kw)
  v0, v1 = (m.init(jax.random.key(0), x, train=False) for m in (plain, proj))
  assert set(v1["params"]) - set(v0["params"]) == {"proj", "proj_hidden"}
  for k in v0["params"]:
    jax.tree.map(np.testing.assert_array_equal, v0["params"][k], v1["params"][k])
  (l0, f0), (l1, f1) = plain.apply(v0, x, train=False), proj.apply(v1, x, train=False)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  assert f0.shape == (3, 8) and f1.shape == (3, 4) and (f1 < 0).any()  # not a ReLU cone
  h = jax.nn.relu(f0 @ v1["params"]["proj_hidden"]["kernel"] + v1["params"]["proj_hidden"]["bias"])
  np.testing.assert_allclose(f1, h @ v1["params"]["proj"]["kernel"] + v1["params"]["proj"]["bias"],
                             rtol=1e-5, atol=1e-6)
  cfg = default.get_config()
  cfg.model.name, cfg.model.proj_dim = "tcn", 4
  assert models.kwargs_from_config(cfg.model)["proj_dim"] == 4
  with pytest.raises(ValueError, match="proj_dim must be >= 0"):
    models.build("tcn", 5, proj_dim=-1)


def test_tcn_dilation_doubles_per_block():
  """The receptive field of the last block at one step: stem +-1, block i +-2 * 2**i."""
  def reach(depth):
    model = models.tcn.TCN(width=4, depth=depth, kernel=3, stride=1)
    v = model.init(jax.random.key(0), jnp.ones((1, 64, 1)), train=False)
    # Positive kernels and inputs keep every ReLU active, so gradients cover the whole field.
    v = {**v, "params": jax.tree.map(jnp.abs, v["params"])}

    def last_block_at_32(x):
      _, state = model.apply(v, x, train=False, capture_intermediates=True,
                             mutable=["intermediates"])
      return state["intermediates"][f"block{depth - 1}"]["__call__"][0][0, 32].sum()
    return int((jax.grad(last_block_at_32)(jnp.ones((1, 64, 1))) != 0).sum())

  assert reach(1) == 2 * (1 + 2) + 1
  assert reach(2) == 2 * (1 + 2 + 4) + 1


# --- augmentation -----------------------------------------------------------------------------

CFG = augment_seq.SeqAugmentConfig()
_weak = jax.jit(augment_seq.weak_batch, static_argnames="cfg")
_strong = jax.jit(augment_seq.strong_batch, static_argnames="cfg")
_center = jax.jit(augment_seq.center_batch, static_argnames="cfg")


@pytest.fixture(scope="module")
def batch():
  return jnp.asarray(np.random.default_rng(0).normal(size=(4, 40, 3)), jnp.float32)


def test_views_are_deterministic_per_key_and_differ_across_keys(batch):
  k1, k2 = jax.random.key(1), jax.random.key(2)
  for view in (_weak, _strong):
    a, b, c = view(k1, batch, cfg=CFG), view(k1, batch, cfg=CFG), view(k2, batch, cfg=CFG)
    assert a.shape == batch.shape and a.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a) - np.asarray(c)).mean() > 1e-2
    assert np.abs(np.asarray(a[0]) - np.asarray(a[1])).mean() > 1e-2  # per-clip parameters
  np.testing.assert_array_equal(_center(batch, cfg=CFG), batch)
  out = _center(batch, cfg=augment_seq.SeqAugmentConfig(out_len=79))
  assert out.shape == (4, 79, 3)
  np.testing.assert_allclose(out[:, ::2], batch, atol=1e-6)  # exact at every other step


def test_weak_view_is_identity_without_randomness_and_keeps_clip_consistency(batch):
  plain = augment_seq.SeqAugmentConfig(crop_scale=(1.0, 1.0), scale_std=0.0, jitter_std=0.0)
  np.testing.assert_allclose(_weak(jax.random.key(0), batch, cfg=plain), batch, atol=1e-4)
  # A sequence constant in time stays constant in time: gains are drawn once per clip.
  const = jnp.broadcast_to(jnp.asarray([1.0, -2.0, 3.0]), (4, 40, 3))
  no_noise = augment_seq.SeqAugmentConfig(jitter_std=0.0)
  out = np.asarray(_weak(jax.random.key(3), const, cfg=no_noise))
  np.testing.assert_allclose(out, np.broadcast_to(out[:, :1], out.shape), rtol=1e-5)
  assert not np.allclose(out[:, 0], const[:, 0])  # but scaled
  out = np.asarray(_strong(jax.random.key(3), const, cfg=augment_seq.SeqAugmentConfig(
      jitter_std=0.0, magnitude_warp=0.0, time_mask=0.0)))
  np.testing.assert_allclose(out, np.broadcast_to(out[:, :1], out.shape), rtol=1e-5)


def test_strong_view_drops_whole_channels_and_masks_one_span():
  ones = jnp.ones((64, 30, 3))
  cfg = augment_seq.SeqAugmentConfig(scale_std=0.0, jitter_std=0.0, magnitude_warp=0.0,
                                     time_warp=0.0, channel_drop=0.3, time_mask=0.5)
  out = np.asarray(_strong(jax.random.key(0), ones, cfg=cfg))
  zero = out == 0
  spans = zero.all(axis=2)  # [B, T] masked steps
  dropped = zero.all(axis=1)  # [B, C] dropped channels
  assert 0.1 < dropped.mean() < 0.5 and spans.any(axis=1).mean() > 0.5
  for b in range(64):
    steps = np.flatnonzero(spans[b])
    if len(steps):
      assert steps[-1] - steps[0] + 1 == len(steps) < 15  # one contiguous span, < 0.5 T
    # Every zero is explained by a dropped channel or the masked span.
    np.testing.assert_array_equal(zero[b], dropped[b][None, :] | spans[b][:, None])


def test_mirror_reflects_about_half_the_sequences_and_leaves_other_draws_alone():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(64, 20, 3)), jnp.float32)
  plain = dict(crop_scale=(1.0, 1.0), scale_std=0.0, jitter_std=0.0)
  cfg = augment_seq.SeqAugmentConfig(mirror_sign=(-1, 1, -1), **plain)
  out = np.asarray(_weak(jax.random.key(0), x, cfg=cfg))
  flipped = np.isclose(out, np.asarray(x) * [-1, 1, -1], atol=1e-5).all(axis=(1, 2))
  kept = np.isclose(out, np.asarray(x), atol=1e-5).all(axis=(1, 2))
  assert (flipped ^ kept).all() and 0.25 < flipped.mean() < 0.75
  # The coin is folded in, not split off: with a mirror every other draw is the same, so a
  # mirrored view equals the un-mirrored config's view of the reflected input.
  base = augment_seq.SeqAugmentConfig()
  with_mirror = augment_seq.SeqAugmentConfig(mirror_sign=(-1, 1, -1))
  for view in (_weak, _strong):
    a = np.asarray(view(jax.random.key(5), x, cfg=with_mirror))
    b = np.asarray(view(jax.random.key(5), x, cfg=base))
    b_reflected = np.asarray(view(jax.random.key(5), x * jnp.asarray([-1.0, 1.0, -1.0]),
                                  cfg=base))
    same = np.isclose(a, b, atol=1e-5).all(axis=(1, 2))
    refl = np.isclose(a, b_reflected, atol=1e-5).all(axis=(1, 2))
    assert (same | refl).all() and refl.any() and same.any()


def test_mirror_permutes_skeleton_joints_and_checks_its_config():
  x = jnp.arange(2 * 5 * 3 * 2, dtype=jnp.float32).reshape(2, 5, 3, 2)  # [B, T, J=3, D=2]
  cfg = augment_seq.SeqAugmentConfig(crop_scale=(1.0, 1.0), scale_std=0.0, jitter_std=0.0,
                                     mirror_sign=(-1, 1), mirror_joints=(0, 2, 1))
  reflected = np.asarray(x)[:, :, [0, 2, 1]] * [-1, 1]
  seen = set()
  for k in range(8):
    out = np.asarray(_weak(jax.random.key(k), x, cfg=cfg))
    for b in range(2):
      if np.allclose(out[b], reflected[b], atol=1e-4):
        seen.add("mirrored")
      else:
        np.testing.assert_allclose(out[b], x[b], atol=1e-4)
        seen.add("plain")
  assert seen == {"mirrored", "plain"}
  with pytest.raises(ConfigError, match=r"only \+1 / -1"):
    augment_seq.SeqAugmentConfig(mirror_sign=(-1, 0.5))
  with pytest.raises(ConfigError, match="permutation"):
    augment_seq.SeqAugmentConfig(mirror_sign=(-1, 1), mirror_joints=(0, 0, 1))
  with pytest.raises(ConfigError, match="needs augment_seq.mirror_sign"):
    augment_seq.SeqAugmentConfig(mirror_joints=(1, 0))
  with pytest.raises(ConfigError, match="3 signs for sequences whose last axis has 2"):
    _weak(jax.random.key(0), x, cfg=augment_seq.SeqAugmentConfig(mirror_sign=(-1, 1, 1)))


def test_dataset_mirror_takes_the_data_s_own_reflection_and_never_another_s(tmp_path, caplog):
  """configs/watch.py pointed at other data (the way users reuse it) must not apply the wrist
  sensor's signs to channels they were not written for: an npz declares no reflection."""
  from configs import watch as watch_config  # pylint: disable=g-import-not-at-top
  config = watch_config.get_config()
  of = lambda **kw: augment_seq.SeqAugmentConfig.from_config(
      {**config.augment_seq.to_dict(), **kw}, readers.WATCH_MIRROR_SIGN).mirror_sign
  assert of() == readers.WATCH_MIRROR_SIGN
  assert of(mirror_sign=(1, 1, 1, 1, 1, -1)) == (1, 1, 1, 1, 1, -1)  # an explicit sign wins
  assert of(dataset_mirror=False) == ()
  x, y, s = _toy(n=36)  # C = 4 channels, not watch's 6
  config.data = _data_cfg("npz", _npz(tmp_path / "a.npz", x=x, y=y, subject=s), tmp_path / "tfds",
                          window=16, stride=8, test_subjects=(6,))
  ds = data_lib.build(config.data)
  views = augment.build(ds.modality, config, **ds.view_kwargs)
  batch = jnp.stack([jnp.asarray(ds.train[i]["sequence"]) for i in range(4)])
  assert views.weak(jax.random.key(0), batch).shape == (4, 16, C)  # watch's 6 signs: an error
  assert "declares no left-right reflection" in caplog.text


def test_time_warp_is_monotone_with_fixed_ends():
  u = jnp.linspace(0, 1, 101)
  for a, k, p in ((0.9, 1.0, 0.3), (-0.9, 2.0, 2.0), (0.5, 2.0, 5.0)):
    w = np.asarray(augment_seq.time_warp_curve(u, a, k, p))
    assert abs(w[0]) < 1e-6 and abs(w[-1] - 1) < 1e-6 and (np.diff(w) > 0).all()


def test_bad_augmentation_and_model_configs_are_config_errors():
  with pytest.raises(ConfigError, match="time_warp"):
    augment_seq.SeqAugmentConfig(time_warp=1.0)
  with pytest.raises(ConfigError, match=r"unknown key\(s\) \['jiter_std'\]"):
    augment_seq.SeqAugmentConfig.from_config({"jiter_std": 0.1})
  from aplt_jax import augment as views  # pylint: disable=g-import-not-at-top
  c = default.get_config()
  c.data.name = "npz"
  with pytest.raises(ConfigError, match="video backbone.*tcn"):
    views.build("sequence", c)


# --- end to end -------------------------------------------------------------------------------

def test_tiny_end_to_end_run_on_an_npz(tmp_path):
  x, y, s = _toy(n=48, t=24, c=3, subjects=8)
  path = _npz(tmp_path / "toy.npz", x=x, y=y, subject=s)
  c = default.get_config()
  overrides = {
      "data.name": "npz", "data.manual_dir": path, "data.data_dir": str(tmp_path / "tfds"),
      "data.num_classes": N_CLASSES, "data.labels_per_class": 2, "data.labeled_ratio": None,
      "data.sequence.test_subjects": (7, 8), "data.read_threads": 2,
      "model.name": "tcn", "model.tcn_width": 8, "model.tcn_depth": 2, "model.tcn_kernel": 3,
      "batch_size": 4, "uratio": 2, "total_steps": 6, "warmup_steps": 2, "steps_per_round": 2,
      "aplt.labeled_views": 1, "eval.batch_size": 8, "eval.every_steps": 100, "log_every": 1,
      "checkpoint_every": 100, "progress": False, "eval.write_features": True,
  }
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  final = train.train_and_evaluate(c, str(tmp_path / "run"), jax.devices()[:1])
  assert final["dataset"] == "npz" and final["labeled"] == 6
  assert np.asarray(final["ema"]["confusion"]).sum() == 12  # subjects 7, 8: 12 sequences
  by = final["ema"]["protocol"]["top1_by_subject"]  # 6 sequences each
  assert set(by) == {"7", "8"} and np.isclose((by["7"] + by["8"]) / 2, final["ema"]["top1"])
  # A run from before final.json stored it: rescored from its test features and EMA head.
  assert by_subject.rescored(str(tmp_path / "run"), final["ema"]["top1"]) == pytest.approx(by)
  with pytest.raises(SystemExit, match="differs"):
    by_subject.rescored(str(tmp_path / "run"), final["ema"]["top1"] + 0.1)
  rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  offline = [r for r in rows if r["phase"] == "offline"]
  assert len(offline) == 2 and all(0 < r["offline/kept_frac"] <= 1 for r in offline)
  assert all(np.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)


def test_top1_by_subject_scores_each_subject_of_the_split_on_its_own():
  class Split:  # a prepared split's scalar fields, in record order
    def __init__(self, subjects):
      self.subjects = subjects
    def scalar_fields(self, *keys):
      return {"subject": np.array(self.subjects)} if self.subjects is not None else {}
  labels = np.array([0, 1, 2, 0, 1])
  scores = np.eye(3)[[0, 1, 0, 2, 1]]  # right, right, wrong, wrong, right
  evaluate = sequences.top1_by_subject(Split([9, 9, 4, 4, 4]))
  assert evaluate(scores, labels) == {"top1_by_subject": {"4": 1 / 3, "9": 1.0}}
  assert sequences.top1_by_subject(Split([-1] * 5))(scores, labels) == {}  # subjects unknown
  assert sequences.top1_by_subject(Split(None))(scores, labels) == {}  # no subject field
  with pytest.raises(ValueError, match="4 evaluated windows, 5"):
    evaluate(scores[:4], labels[:4])


def test_whole_sequences_must_share_one_length_across_splits(tmp_path):
  # Each split is uniform on its own; only together do they disagree.
  for split, length in (("train", 10), ("test", 12)):
    for k in range(N_CLASSES):
      (tmp_path / split / f"c{k}").mkdir(parents=True)
      np.save(tmp_path / split / f"c{k}" / "s.npy", np.zeros((length, C), np.float32))
  params = sequences.SequenceParams(kind="npy-folder", fingerprint="x", num_classes=N_CLASSES)
  with pytest.raises(DataError, match=r"different lengths \(10\.\.12 steps\)"):
    sequences.build_splits(params, str(tmp_path))
