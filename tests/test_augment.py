"""Tests for aplt_jax.augment: shapes, clip consistency, determinism, flips, ops vs oracles.

Oracles: jax.image.resize (plain bilinear) for the crop, scipy.ndimage.map_coordinates for
the affine warp, Pillow's ImageOps / ImageEnhance for the photometric ops, and hand-made
slices for the centre view and translation.
"""
from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aplt_jax.augment import video as augment

B, T, H, W, C = 4, 4, 16, 16, 3
S = 12
CFG = augment.AugmentConfig(out_size=S)
# Full-frame crop, no flip, no ops: the weak view is a plain resize; the strong view is
# that resize plus cutout only.
PLAIN = augment.AugmentConfig(out_size=S, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                              flip=False, num_ops=0)
PLAIN_FLIP = augment.AugmentConfig(out_size=S, crop_scale=(1.0, 1.0),
                                   crop_ratio=(1.0, 1.0), flip=True, num_ops=0)

# One jitted function per view, shared by every test (a new cfg, shape or key type
# recompiles, so the tests reuse few of them).
_weak = jax.jit(augment.weak_batch, static_argnames="cfg")
_strong = jax.jit(augment.strong_batch, static_argnames="cfg")
_center = jax.jit(augment.center_batch, static_argnames="cfg")
_photo = jax.jit(augment._photometric)  # Op index, magnitude and sign are traced.


@jax.jit
def _warp_identity_crop(clip, op, mag, sign, axis):
  """Applies one geometric op to an S x S clip through the full-frame crop map."""
  crop = augment._affine(S, 0.0, S / 2 - 0.5, 0.0, S, S / 2 - 0.5)
  return augment._warp(clip, crop @ augment._op_inverse_matrix(op, mag, sign, axis), S)


def _rng(seed=0):
  return np.random.RandomState(seed)


@pytest.fixture(scope="module")
def clips():
  return jnp.asarray(_rng(0).randint(0, 256, (B, T, H, W, C)), jnp.uint8)


@pytest.fixture(scope="module")
def still_clips():
  """Clips whose T frames are identical (one random frame per clip)."""
  frames = _rng(1).randint(0, 256, (B, 1, H, W, C))
  return jnp.asarray(np.repeat(frames, T, axis=1), jnp.uint8)


@pytest.fixture(scope="module")
def asym_clips():
  """Left/right-asymmetric clips: a horizontal ramp plus noise."""
  ramp = np.linspace(0, 200, W)[None, None, None, :, None]
  noise = _rng(2).randint(0, 55, (B, T, H, W, C))
  return jnp.asarray(ramp + noise, jnp.uint8)


def _keys(n):
  return [jax.random.key(s) for s in range(n)]


def test_shapes_dtypes_and_range(clips):
  for out in (_weak(jax.random.key(0), clips, cfg=CFG),
              _strong(jax.random.key(0), clips, cfg=CFG),
              _center(clips, cfg=CFG)):
    out = np.asarray(out)
    assert out.shape == (B, T, S, S, C)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("view", ["weak", "strong"])
def test_identical_frames_give_identical_outputs(still_clips, view):
  fn = _weak if view == "weak" else _strong
  for key in _keys(4):
    out = np.asarray(fn(key, still_clips, cfg=CFG))
    for t in range(1, T):
      np.testing.assert_allclose(out[:, t], out[:, 0], atol=1e-6)


@pytest.mark.parametrize("view", ["weak", "strong"])
def test_same_key_same_output_other_key_differs(clips, view):
  fn = _weak if view == "weak" else _strong
  a = np.asarray(fn(jax.random.key(3), clips, cfg=CFG))
  b = np.asarray(fn(jax.random.key(3), clips, cfg=CFG))
  c = np.asarray(fn(jax.random.key(4), clips, cfg=CFG))
  np.testing.assert_array_equal(a, b)
  for i in range(B):
    assert np.abs(a[i] - c[i]).max() > 1e-3


@pytest.mark.parametrize("view", ["weak", "strong"])
def test_clips_of_a_batch_get_different_transforms(clips, view):
  fn = _weak if view == "weak" else _strong
  same = jnp.broadcast_to(clips[:1], clips.shape)
  out = np.asarray(fn(jax.random.key(5), same, cfg=CFG))
  for i, j in itertools.combinations(range(B), 2):
    assert np.abs(out[i] - out[j]).max() > 1e-3, (i, j)


@pytest.mark.parametrize("key_fn", [lambda s: jax.random.key(s, impl="rbg"),
                                    jax.random.PRNGKey], ids=["typed_rbg", "raw_threefry"])
def test_other_key_kinds(clips, key_fn):
  a = np.asarray(_strong(key_fn(7), clips, cfg=CFG))
  b = np.asarray(_strong(key_fn(7), clips, cfg=CFG))
  c = np.asarray(_strong(key_fn(8), clips, cfg=CFG))
  assert a.shape == (B, T, S, S, C) and 0.0 <= a.min() and a.max() <= 1.0
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-3


def _resize_oracle(clips):
  """Plain bilinear (half-pixel centres) full-frame resize, [B, T, S, S, C] in [0, 1]."""
  x = jnp.asarray(clips, jnp.float32) / 255.0
  return np.asarray(jax.image.resize(x, (B, T, S, S, C), "linear", antialias=False))


def test_flip_false_never_flips(asym_clips):
  expected = _resize_oracle(asym_clips)
  mirrored = expected[:, :, :, ::-1]
  assert np.abs(expected - mirrored).max() > 0.3  # The pattern is asymmetric.
  for key in _keys(8):
    out = np.asarray(_weak(key, asym_clips, cfg=PLAIN))
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_flip_true_flips_about_half_the_clips(asym_clips):
  expected = _resize_oracle(asym_clips)
  mirrored = expected[:, :, :, ::-1]
  flipped = []
  for key in _keys(8):
    out = np.asarray(_weak(key, asym_clips, cfg=PLAIN_FLIP))
    for i in range(B):
      is_plain = np.allclose(out[i], expected[i], atol=1e-5)
      is_mirror = np.allclose(out[i], mirrored[i], atol=1e-5)
      assert is_plain != is_mirror, "each view is the clip, either mirrored or not"
      flipped.append(is_mirror)
  assert 0.2 < np.mean(flipped) < 0.8


def test_crop_boxes_follow_the_config():
  """Box of _crop_matrix over 512 keys: inside the frame, area and aspect in range."""
  hh, ww = 16, 20
  keys = jax.random.split(jax.random.key(9), 512)
  m = np.asarray(jax.jit(jax.vmap(
      lambda k: augment._crop_matrix(k, hh, ww, CFG, jnp.zeros((), bool))))(keys))
  w, h = m[:, 0, 0], m[:, 1, 1]
  x0, y0 = m[:, 0, 2] + 0.5 - 0.5 * w, m[:, 1, 2] + 0.5 - 0.5 * h
  assert (x0 >= -1e-4).all() and (x0 + w <= ww + 1e-4).all()
  assert (y0 >= -1e-4).all() and (y0 + h <= hh + 1e-4).all()
  frac = w * h / (hh * ww)
  assert (frac >= 0.6 - 1e-4).all() and (frac <= 1 + 1e-4).all()
  assert frac.min() < 0.62 and frac.max() > 0.95
  unclamped = (w < ww - 1e-4) & (h < hh - 1e-4)
  ratio = (w / h)[unclamped]
  assert (ratio >= 3 / 4 - 1e-4).all() and (ratio <= 4 / 3 + 1e-4).all()
  assert ratio.min() < 0.8 and ratio.max() > 1.25
  # Positions spread over the frame: some boxes touch each edge, most do not.
  assert (x0 < 0.2).any() and (x0 + w > ww - 0.2).any() and (y0 < 0.2).any()
  assert np.mean(x0 < 0.2) < 0.5 and y0.max() > 2.0


def _cutout_boxes(cfg, n, seed):
  """Strong views of n black 2-frame clips: per clip the grey box's (h, w, interior), or None."""
  black = jnp.zeros((n, 2, H, W, C), jnp.uint8)
  out = np.asarray(_strong(jax.random.key(seed), black, cfg=cfg))
  grey = out == augment.FILL
  assert ((out == 0.0) | grey).all()
  assert (grey == grey[:, :1]).all() and (grey == grey[..., :1]).all()  # Frames, channels.
  boxes = []
  for g in grey[:, 0, :, :, 0]:
    rows, cols = np.nonzero(g)
    if rows.size == 0:
      boxes.append(None)
      continue
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert g.sum() == h * w  # A rectangle.
    interior = min(rows.min(), cols.min()) > 0 and max(rows.max(), cols.max()) < S - 1
    boxes.append((h, w, interior))
  return boxes


def test_cutout_side_is_drawn_per_clip_up_to_the_max():
  """Side round(u S), u ~ U(0, cutout) (USB), one grey square shared by a clip's frames.

  S = 12, cutout 0.5: side = round(6 v), v ~ U(0, 1), so P(side = 0) = P(6 v < 0.5) = 1/12
  (no grey pixel at all) and every side in 1..6 occurs. A square that touches no border
  shows whole, so its h == w is its side. With cutout 0.25, side = round(3 v) <= 3 and
  P(side = 0) = 1/6.
  """
  n = 600
  boxes = _cutout_boxes(PLAIN, n, seed=7)
  empty = sum(b is None for b in boxes)
  assert 25 <= empty <= 75  # Binomial(600, 1/12): mean 50, sd 6.8.
  assert max(max(b[0], b[1]) for b in boxes if b) == 6
  whole = [b[0] for b in boxes if b and b[2]]
  assert all(b[0] == b[1] for b in boxes if b and b[2])
  assert set(whole) == {1, 2, 3, 4, 5, 6}

  quarter = dataclasses.replace(PLAIN, cutout=0.25)
  boxes = _cutout_boxes(quarter, n, seed=8)
  empty = sum(b is None for b in boxes)
  assert 70 <= empty <= 130  # Binomial(600, 1/6): mean 100, sd 9.1.
  assert max(max(b[0], b[1]) for b in boxes if b) == 3


def test_center_view():
  rng = _rng(3)
  square = rng.randint(0, 256, (B, T, S, S, C)).astype(np.uint8)
  out = np.asarray(_center(jnp.asarray(square), cfg=CFG))
  np.testing.assert_allclose(out, square / 255.0, atol=1e-6)
  np.testing.assert_array_equal(out, np.asarray(_center(jnp.asarray(square), cfg=CFG)))
  # Short side already S: a centre crop of the long side, columns 3..14 of 18.
  wide = rng.randint(0, 256, (B, T, S, S + 6, C)).astype(np.uint8)
  out = np.asarray(_center(jnp.asarray(wide), cfg=CFG))
  np.testing.assert_allclose(out, wide[:, :, :, 3:3 + S] / 255.0, atol=1e-6)


def test_translate_shifts_by_whole_pixels():
  clip = jnp.asarray(_rng(4).randint(0, 256, (2, S, S, C)), jnp.uint8)
  x = np.asarray(clip) / 255.0
  mag = 0.25 / augment._MAX_TRANSLATE  # 0.25 of 12 pixels: 3 pixels.
  op = augment._OP["translate"]
  right = np.asarray(_warp_identity_crop(clip, op, mag, 1.0, False))
  np.testing.assert_allclose(right[:, :, 3:], x[:, :, :-3], atol=1e-4)
  assert (right[:, :, :3] == augment.FILL).all()
  up = np.asarray(_warp_identity_crop(clip, op, mag, -1.0, True))
  np.testing.assert_allclose(up[:, :-3], x[:, 3:], atol=1e-4)
  assert (up[:, -3:] == augment.FILL).all()
  same = np.asarray(_warp_identity_crop(clip, augment._OP["equalize"], 1.0, 1.0, False))
  np.testing.assert_allclose(same, x, atol=1e-6)


def test_warp_matches_scipy_bilinear():
  ndimage = pytest.importorskip("scipy.ndimage")
  clip = _rng(5).randint(0, 256, (2, H, W, C)).astype(np.uint8)
  theta = np.deg2rad(25.0)
  # Normalised output coords -> source pixel indices: rotate, scale, offset.
  m = np.array([[15 * np.cos(theta), -15 * np.sin(theta), 7.2],
                [15 * np.sin(theta), 15 * np.cos(theta), 8.1],
                [0.0, 0.0, 1.0]], np.float32)
  out = np.asarray(jax.jit(augment._warp, static_argnums=2)(jnp.asarray(clip),
                                                            jnp.asarray(m), S))
  pix = (np.arange(S) + 0.5) / S - 0.5
  u, v = np.meshgrid(pix, pix)  # u along columns.
  xs = m[0, 0] * u + m[0, 1] * v + m[0, 2]
  ys = m[1, 0] * u + m[1, 1] * v + m[1, 2]
  inside = (xs >= -0.5) & (xs <= W - 0.5) & (ys >= -0.5) & (ys <= H - 0.5)
  assert 0 < inside.sum() < S * S
  for t, c in itertools.product(range(2), range(C)):
    ref = ndimage.map_coordinates(clip[t, :, :, c].astype(np.float64), [ys, xs],
                                  order=1, mode="nearest") / 255.0
    np.testing.assert_allclose(out[t, :, :, c][inside], ref[inside], atol=1e-4)
    assert (out[t, :, :, c][~inside] == augment.FILL).all()


def test_geometric_op_matrices():
  op = augment._OP
  got = np.asarray(augment._op_inverse_matrix(op["rotate"], 0.5, -1.0, False))
  a = np.deg2rad(-15.0)  # Forward rotation by a; the inverse rotates by -a.
  np.testing.assert_allclose(got[:2], [[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0]],
                             atol=1e-6)
  got = np.asarray(augment._op_inverse_matrix(op["shear"], 1.0, 1.0, False))
  np.testing.assert_allclose(got[:2], [[1, -0.3, 0], [0, 1, 0]], atol=1e-6)
  got = np.asarray(augment._op_inverse_matrix(op["shear"], 1.0, 1.0, True))
  np.testing.assert_allclose(got[:2], [[1, 0, 0], [-0.3, 1, 0]], atol=1e-6)
  for name in augment.OPS[:7]:
    np.testing.assert_array_equal(augment._op_inverse_matrix(op[name], 1.0, 1.0, True),
                                  np.eye(3))


def _to_pil(frames):
  """[T, h, w, C] uint8 -> one PIL image of the frames stacked vertically."""
  image = pytest.importorskip("PIL.Image")
  return image.fromarray(np.concatenate(list(frames), axis=0))


def _from_pil(img, t):
  return np.stack(np.split(np.asarray(img), t, axis=0)) / 255.0


@pytest.fixture(scope="module")
def photo_clip():
  """[2, S, S, C] uint8 with a lopsided histogram (so equalize moves values)."""
  rng = _rng(6)
  frames = rng.beta(2.0, 5.0, (2, S, S, C)) * 180 + 20
  frames[1] += 40  # Frames differ in level, so clip and frame statistics differ.
  return frames.astype(np.uint8)


@pytest.mark.parametrize("name,mag,sign,pil_op", [
    ("posterize", 0.5, 1.0, lambda im, ops, _: ops.posterize(im, 6)),
    ("posterize", 1.0, -1.0, lambda im, ops, _: ops.posterize(im, 4)),
    ("solarize", 0.5, 1.0, lambda im, ops, _: ops.solarize(im, 128)),
    ("equalize", 0.7, 1.0, lambda im, ops, _: ops.equalize(im)),
    ("brightness", 0.5, -1.0, lambda im, _, enh: enh.Brightness(im).enhance(0.55)),
    ("color", 0.5, -1.0, lambda im, _, enh: enh.Color(im).enhance(0.55)),
    ("contrast", 0.5, 1.0, lambda im, _, enh: enh.Contrast(im).enhance(1.45)),
])
def test_photometric_ops_match_pillow(photo_clip, name, mag, sign, pil_op):
  """Clip-level ops: Pillow on the frames stacked into one image is the oracle."""
  ops = pytest.importorskip("PIL.ImageOps")
  enh = pytest.importorskip("PIL.ImageEnhance")
  x = jnp.asarray(photo_clip, jnp.float32) / 255.0
  got = np.asarray(_photo(x, augment._OP[name], mag, sign))
  want = _from_pil(pil_op(_to_pil(photo_clip), ops, enh), 2)
  exact = name in ("posterize", "solarize", "equalize")
  assert np.abs(want - photo_clip / 255.0).max() > 0.01  # The op does something.
  np.testing.assert_allclose(got, want, atol=1e-6 if exact else 2.5 / 255)


def test_sharpness_matches_pillow_per_frame(photo_clip):
  image = pytest.importorskip("PIL.Image")
  enh = pytest.importorskip("PIL.ImageEnhance")
  x = jnp.asarray(photo_clip, jnp.float32) / 255.0
  got = np.asarray(_photo(x, augment._OP["sharpness"], 1.0, 1.0))  # factor 1.9
  for t in range(2):
    want = np.asarray(enh.Sharpness(image.fromarray(photo_clip[t])).enhance(1.9)) / 255.0
    np.testing.assert_allclose(got[t], want, atol=2.5 / 255)


def test_every_photometric_op_is_frame_consistent_and_geometric_ones_pass_through(
    photo_clip):
  still = jnp.asarray(np.repeat(photo_clip[:1], 3, axis=0), jnp.float32) / 255.0
  for name in augment.OPS:
    out = np.asarray(_photo(still, augment._OP[name], 0.8, -1.0))
    assert 0.0 <= out.min() and out.max() <= 1.0, name
    for t in (1, 2):
      np.testing.assert_allclose(out[t], out[0], atol=1e-6, err_msg=name)
    if name in ("rotate", "shear", "translate"):
      np.testing.assert_array_equal(out, np.asarray(still))


def test_config_from_config_dict():
  cd = ml_collections.ConfigDict(dict(crop_scale=[0.5, 0.9], flip=False, num_ops=3,
                                      magnitude_max=0.6, cutout=0.0))
  cfg = augment.AugmentConfig.from_config(cd, out_size=32)
  assert cfg == augment.AugmentConfig(32, crop_scale=(0.5, 0.9), flip=False, num_ops=3,
                                      magnitude_max=0.6, cutout=0.0)
  assert cfg.crop_ratio == (3 / 4, 4 / 3)
  hash(cfg)  # Usable as a jit static argument.
  with pytest.raises(ValueError, match="unknown"):
    augment.AugmentConfig.from_config(ml_collections.ConfigDict(dict(flipp=True)), 32)
  for bad in (dict(crop_scale=(0.0, 1.0)), dict(crop_scale=(0.9, 0.5)),
              dict(crop_ratio=(-1.0, 1.0)), dict(num_ops=-1), dict(magnitude_max=2.0),
              dict(cutout=1.5)):
    with pytest.raises(ValueError):
      augment.AugmentConfig(32, **bad)


def test_wrong_rank_is_a_clear_error(clips):
  with pytest.raises(ValueError, match=r"\[T, H, W, C\]"):
    augment.weak_batch(jax.random.key(0), clips[:, 0], CFG)  # [B, H, W, C]: no time axis.
