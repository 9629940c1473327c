"""On-device clip augmentation (DESIGN §5): weak, strong and centre views.

Clips are `uint8 [T, H, W, C]` (C = 3); batches are `[B, T, H, W, C]`. Every view is
`float32 [T, S, S, C]` in [0, 1] with `S = cfg.out_size`; the model normalises it.

Clip consistency: all random parameters are drawn once per clip and applied to every
frame, so the motion that carries a micro-action's label is left intact. The only
data-dependent statistics (contrast's mean grey level, equalize's histogram) are taken
over the whole clip, never per frame.

Cost (the same code runs on GPU at 8 x 224^2): crop, resize, flip, rotate, shear and
translate are composed into one affine map and resampled once (a single bilinear gather
per clip); the photometric ops are cheap elementwise passes selected by `jnp.where` on
the drawn op index, so under `vmap` a strong view costs about one warp plus a few
elementwise passes and two 256-bin histograms per op slot, not ten warps.

Strong ops and the range their magnitude `m in [0, magnitude_max]` spans (m = 1 is the
top of the range; a random sign is drawn where the op has two directions):
  brightness  factor 1 +- 0.9 m  (blend with black)
  contrast    factor 1 +- 0.9 m  (blend with the clip's mean grey level)
  color       factor 1 +- 0.9 m  (blend with the frame's greyscale: saturation)
  sharpness   factor 1 +- 0.9 m  (blend with a 3x3 smoothed frame; border kept)
  posterize   keep 8 - round(4 m) bits (8 .. 4)
  solarize    invert values >= 256 (1 - m) on the 0..255 scale (none .. all)
  equalize    per-channel histogram equalisation over all frames (no magnitude)
  rotate      +- 30 m degrees about the centre
  shear       +- 0.3 m along x or y (axis drawn at random)
  translate   +- 0.3 m of the output size along x or y (axis drawn at random)
These follow common RandAugment practice (FixMatch / USB ranges). Geometric ops are
applied as part of the single warp, before the photometric ops; pixels a warp brings in
from outside the frame are grey (0.5), like the cutout square.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

OPS = ("brightness", "contrast", "color", "sharpness", "posterize", "solarize",
       "equalize", "rotate", "shear", "translate")
_OP = {name: i for i, name in enumerate(OPS)}

FILL = 0.5  # Grey used for cutout and for pixels warped in from outside the frame.
_MAX_FACTOR_DELTA = 0.9
_MAX_POSTERIZE_DROP = 4  # Bits removed at m = 1 (8 -> 4 kept).
_MAX_ROTATE_DEG = 30.0
_MAX_SHEAR = 0.3
_MAX_TRANSLATE = 0.3
_GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL's "L" conversion.


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Static augmentation settings (hashable: usable as a jit static argument).

  Attributes:
    out_size: side S of the square output frames.
    crop_scale: (lo, hi) range of the crop's area as a fraction of the frame's area.
    crop_ratio: (lo, hi) range of the crop's width / height (drawn log-uniformly).
    flip: whether weak and strong views flip horizontally with probability 0.5; set
      False for datasets whose classes are left/right specific.
    num_ops: RandAugment ops per strong view, drawn uniformly with replacement.
    magnitude_max: magnitudes are uniform in [0, magnitude_max], a fraction of each
      op's range (see the module docstring).
    cutout: largest side of the strong view's cutout square as a fraction of out_size:
      each clip draws its side from U(0, cutout) * out_size (USB: 0.5); 0 disables it.
  """
  out_size: int
  crop_scale: tuple[float, float] = (0.6, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  flip: bool = True
  num_ops: int = 2
  magnitude_max: float = 1.0
  cutout: float = 0.5

  def __post_init__(self):
    # Lists (e.g. from a ConfigDict) become tuples so the config stays hashable.
    object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
    object.__setattr__(self, "crop_ratio", tuple(float(v) for v in self.crop_ratio))
    lo, hi = self.crop_scale
    if int(self.out_size) != self.out_size or self.out_size < 1:
      raise ValueError(f"augment: out_size must be a positive int, got {self.out_size}")
    if len(self.crop_scale) != 2 or not 0 < lo <= hi <= 1:
      raise ValueError(f"augment.crop_scale must be (lo, hi), 0 < lo <= hi <= 1, got "
                       f"{self.crop_scale}")
    lo, hi = self.crop_ratio
    if len(self.crop_ratio) != 2 or not 0 < lo <= hi:
      raise ValueError(f"augment.crop_ratio must be (lo, hi), 0 < lo <= hi, got "
                       f"{self.crop_ratio}")
    if int(self.num_ops) != self.num_ops or self.num_ops < 0:
      raise ValueError(f"augment.num_ops must be an int >= 0, got {self.num_ops}")
    if not 0 <= self.magnitude_max <= 1:
      raise ValueError(f"augment.magnitude_max must be in [0, 1], got {self.magnitude_max}")
    if not 0 <= self.cutout <= 1:
      raise ValueError(f"augment.cutout must be in [0, 1], got {self.cutout}")

  @classmethod
  def from_config(cls, cfg: Any, out_size: int) -> "AugmentConfig":
    """Builds it from a ConfigDict (or mapping) holding a subset of the field names.

    Missing keys keep their defaults; an unknown key (a typo) is an error.
    """
    names = {f.name for f in dataclasses.fields(cls)} - {"out_size"}
    given = dict(cfg.items()) if hasattr(cfg, "items") else dict(cfg)
    unknown = sorted(set(given) - names)
    if unknown:
      raise ValueError(f"augment: unknown key(s) {unknown}; known: {sorted(names)}")
    return cls(out_size=int(out_size), **given)


# ---------------------------------------------------------------------------- geometry


def _affine(a, b, c, d, e, f) -> jax.Array:
  """[3, 3] matrix of the map (x, y) -> (a x + b y + c, d x + e y + f)."""
  zero, one = jnp.zeros(()), jnp.ones(())
  rows = [[a, b, c], [d, e, f], [zero, zero, one]]
  return jnp.stack([jnp.stack([jnp.asarray(v, jnp.float32) for v in r]) for r in rows])


def _crop_matrix(key: jax.Array, height: int, width: int, cfg: AugmentConfig,
                 flip: jax.Array) -> jax.Array:
  """Random resized crop (+ flip) as [3, 3]: normalised output coords -> source pixels.

  Normalised coords are in [-0.5, 0.5] across the output; source coords are pixel
  indices (pixel k's centre at k). The crop's area fraction is uniform in crop_scale,
  its aspect log-uniform in crop_ratio; a box that would not fit is clamped to the frame.
  """
  k_scale, k_ratio, k_x, k_y = jax.random.split(key, 4)
  area = jax.random.uniform(k_scale, (), minval=cfg.crop_scale[0],
                            maxval=cfg.crop_scale[1]) * (height * width)
  log_ratio = jax.random.uniform(k_ratio, (), minval=math.log(cfg.crop_ratio[0]),
                                 maxval=math.log(cfg.crop_ratio[1]))
  ratio = jnp.exp(log_ratio)
  w = jnp.minimum(jnp.sqrt(area * ratio), width)
  h = jnp.minimum(jnp.sqrt(area / ratio), height)
  x0 = jax.random.uniform(k_x, ()) * (width - w)
  y0 = jax.random.uniform(k_y, ()) * (height - h)
  sx = jnp.where(flip, -w, w)
  return _affine(sx, 0.0, x0 + 0.5 * w - 0.5, 0.0, h, y0 + 0.5 * h - 0.5)


def _op_inverse_matrix(op: jax.Array, mag: jax.Array, sign: jax.Array,
                       axis: jax.Array) -> jax.Array:
  """[3, 3] inverse map (output -> input, normalised coords) of one geometric op.

  Identity when `op` is photometric. `axis` (bool) picks y over x for shear/translate.
  """
  theta = sign * mag * math.radians(_MAX_ROTATE_DEG)
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  rotate = _affine(cos, sin, 0.0, -sin, cos, 0.0)  # Inverse of rotation by theta.
  s = sign * mag * _MAX_SHEAR
  shear = jnp.where(axis, _affine(1.0, 0.0, 0.0, -s, 1.0, 0.0),
                    _affine(1.0, -s, 0.0, 0.0, 1.0, 0.0))
  t = sign * mag * _MAX_TRANSLATE
  translate = jnp.where(axis, _affine(1.0, 0.0, 0.0, 0.0, 1.0, -t),
                        _affine(1.0, 0.0, -t, 0.0, 1.0, 0.0))
  eye = jnp.eye(3, dtype=jnp.float32)
  return jnp.where(op == _OP["rotate"], rotate,
                   jnp.where(op == _OP["shear"], shear,
                             jnp.where(op == _OP["translate"], translate, eye)))


def _warp(clip: jax.Array, src_from_norm: jax.Array, out_size: int) -> jax.Array:
  """Bilinear resampling of every frame through one affine map.

  Args:
    clip: [T, H, W, C] values in 0..255 (any real dtype; uint8 keeps the gather small).
    src_from_norm: [3, 3] map from normalised output coords (in [-0.5, 0.5]) to source
      pixel indices.
    out_size: S.

  Returns:
    [T, S, S, C] float32 in [0, 1]. Samples inside the frame clamp to its edge pixels;
    samples outside it (half a pixel beyond the edge) are FILL.
  """
  t, height, width, c = clip.shape
  pix = (jnp.arange(out_size, dtype=jnp.float32) + 0.5) / out_size - 0.5
  u, v = pix[None, :], pix[:, None]  # x along columns, y along rows.
  m = src_from_norm
  xs = m[0, 0] * u + m[0, 1] * v + m[0, 2]  # [S, S]
  ys = m[1, 0] * u + m[1, 1] * v + m[1, 2]
  eps = 1e-3
  valid = ((xs >= -0.5 - eps) & (xs <= width - 0.5 + eps)
           & (ys >= -0.5 - eps) & (ys <= height - 0.5 + eps))
  xf, yf = jnp.floor(xs), jnp.floor(ys)
  wx, wy = xs - xf, ys - yf
  x0 = jnp.clip(xf.astype(jnp.int32), 0, width - 1)
  x1 = jnp.clip(xf.astype(jnp.int32) + 1, 0, width - 1)
  y0 = jnp.clip(yf.astype(jnp.int32), 0, height - 1)
  y1 = jnp.clip(yf.astype(jnp.int32) + 1, 0, height - 1)
  idx = jnp.stack([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1])
  weights = jnp.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx])
  flat = clip.reshape(t, height * width, c)
  taps = jnp.take(flat, idx.reshape(-1), axis=1, mode="clip")  # One gather.
  taps = taps.reshape(t, 4, out_size, out_size, c).astype(jnp.float32)
  out = jnp.einsum("tkhwc,khw->thwc", taps, weights) * (1.0 / 255.0)
  return jnp.where(valid[None, :, :, None], out, FILL)


# ------------------------------------------------------------------------- photometric


def _grey(x: jax.Array) -> jax.Array:
  """[..., C] -> [..., 1] luma."""
  return (x * jnp.asarray(_GREY_WEIGHTS, x.dtype)).sum(-1, keepdims=True)


def _smooth(x: jax.Array) -> jax.Array:
  """PIL-style SMOOTH filter per frame ([[1,1,1],[1,5,1],[1,1,1]] / 13); border kept.

  Computed as a separable 3x3 box sum plus 4x the centre: two cheap passes.
  """
  _, height, width, _ = x.shape
  p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  rows = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
  box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
  interior = np.zeros((1, height, width, 1), bool)
  interior[:, 1:-1, 1:-1] = True
  return jnp.where(interior, (box + 4.0 * x) / 13.0, x)


def _equalize(x: jax.Array) -> jax.Array:
  """Histogram equalisation per channel over all frames of the clip (PIL's rule).

  Each channel's 256-bin histogram gives the lookup table
  `lut[i] = (step // 2 + #{values < i}) // step`, `step = (n - count of the top
  occupied bin) // 255`; channels with one occupied level or `step == 0` are unchanged.
  """
  c = x.shape[-1]
  levels = jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.int32)
  flat = levels.reshape(-1, c)
  binned = flat + 256 * jnp.arange(c, dtype=jnp.int32)[None, :]
  hist = jnp.bincount(binned.reshape(-1), length=256 * c).reshape(c, 256)
  occupied = hist > 0
  top = 255 - jnp.argmax(occupied[:, ::-1], axis=1)  # [C] highest occupied level.
  top_count = jnp.take_along_axis(hist, top[:, None], axis=1)[:, 0]
  step = (flat.shape[0] - top_count) // 255  # [C]
  below = jnp.cumsum(hist, axis=1) - hist  # #{values < i}
  safe = jnp.maximum(step, 1)[:, None]
  lut = jnp.clip((safe // 2 + below) // safe, 0, 255)
  keep = (step == 0) | (occupied.sum(1) <= 1)
  lut = jnp.where(keep[:, None], jnp.arange(256, dtype=lut.dtype)[None, :], lut)
  out = jnp.take_along_axis(lut.T, flat, axis=0)  # lut.T: [256, C]
  return out.reshape(x.shape).astype(jnp.float32) / 255.0


def _photometric(x: jax.Array, op: jax.Array, mag: jax.Array,
                 sign: jax.Array) -> jax.Array:
  """One op slot on [T, S, S, C] in [0, 1]; identity when `op` is geometric."""
  is_op = lambda name: op == _OP[name]
  # brightness / contrast / color / sharpness: x -> base + f (x - base).
  factor = jnp.maximum(1.0 + sign * _MAX_FACTOR_DELTA * mag, 0.0)
  grey = _grey(x)
  base = jnp.where(is_op("brightness"), 0.0,
                   jnp.where(is_op("contrast"), grey.mean(),
                             jnp.where(is_op("color"), grey,
                                       jnp.where(is_op("sharpness"), _smooth(x), x))))
  x = jnp.clip(base + factor * (x - base), 0.0, 1.0)
  # posterize: drop the low bits of the 0..255 level.
  levels = jnp.round(x * 255.0)
  bucket = jnp.exp2(jnp.round(_MAX_POSTERIZE_DROP * mag))
  x = jnp.where(is_op("posterize"), jnp.floor(levels / bucket) * bucket / 255.0, x)
  # solarize: invert levels at or above the threshold.
  x = jnp.where(is_op("solarize") & (x * 255.0 >= 256.0 * (1.0 - mag)), 1.0 - x, x)
  return jnp.where(is_op("equalize"), _equalize(x), x)


def _cutout(key: jax.Array, x: jax.Array, frac: float) -> jax.Array:
  """Fills a square of side round(u S), u ~ U(0, frac), centred uniformly, with FILL.

  One side and centre per call, so every frame of the clip `x [T, S, S, C]` gets the same
  square (USB draws the side from U(0, 0.5) S). The square may hang over the border (then
  less of it shows), as in classic cutout; a side of 0 leaves the clip unchanged.
  """
  size = x.shape[1]
  if int(round(frac * size)) == 0:
    return x
  k_side, k_centre = jax.random.split(key)
  u = jax.random.uniform(k_side, (), maxval=frac)
  side = jnp.round(u * size).astype(jnp.int32)
  cy, cx = jax.random.randint(k_centre, (2,), 0, size)
  top, left = cy - side // 2, cx - side // 2
  ar = jnp.arange(size)
  rows = (ar >= top) & (ar < top + side)
  cols = (ar >= left) & (ar < left + side)
  mask = rows[:, None] & cols[None, :]
  return jnp.where(mask[None, :, :, None], FILL, x)


# ------------------------------------------------------------------------------ views


def _check_clip(clip: jax.Array) -> None:
  if clip.ndim != 4:
    raise ValueError(f"augment: expected one clip [T, H, W, C], got shape {clip.shape}")


def _flip(key: jax.Array, cfg: AugmentConfig) -> jax.Array:
  return jax.random.bernoulli(key) if cfg.flip else jnp.zeros((), bool)


def weak(key: jax.Array, clip: jax.Array, cfg: AugmentConfig) -> jax.Array:
  """Weak view: random resized crop + horizontal flip (p = 0.5 when cfg.flip).

  Args:
    key: a PRNG key (typed, any impl, or raw uint32 of the default impl).
    clip: [T, H, W, C] uint8.
    cfg: the settings.

  Returns:
    [T, S, S, C] float32 in [0, 1].
  """
  _check_clip(clip)
  _, height, width, _ = clip.shape
  k_crop, k_flip = jax.random.split(key)
  m = _crop_matrix(k_crop, height, width, cfg, _flip(k_flip, cfg))
  return _warp(clip, m, cfg.out_size)


def strong(key: jax.Array, clip: jax.Array, cfg: AugmentConfig) -> jax.Array:
  """Strong view: weak + `num_ops` random RandAugment ops + cutout, clip-consistent.

  Args:
    key: a PRNG key (typed, any impl, or raw uint32 of the default impl).
    clip: [T, H, W, C] uint8.
    cfg: the settings.

  Returns:
    [T, S, S, C] float32 in [0, 1].
  """
  _check_clip(clip)
  _, height, width, _ = clip.shape
  k_crop, k_flip, k_op, k_mag, k_sign, k_axis, k_cut = jax.random.split(key, 7)
  n = cfg.num_ops
  ops = jax.random.randint(k_op, (n,), 0, len(OPS))
  mags = jax.random.uniform(k_mag, (n,), maxval=cfg.magnitude_max)
  signs = jnp.where(jax.random.bernoulli(k_sign, shape=(n,)), 1.0, -1.0)
  axes = jax.random.bernoulli(k_axis, shape=(n,))
  # Forward order crop -> flip -> op_1 -> ... -> op_n, so the inverse map is
  # crop_flip @ inv(op_1) @ ... @ inv(op_n).
  m = _crop_matrix(k_crop, height, width, cfg, _flip(k_flip, cfg))
  for i in range(n):
    m = m @ _op_inverse_matrix(ops[i], mags[i], signs[i], axes[i])
  x = _warp(clip, m, cfg.out_size)
  for i in range(n):
    x = _photometric(x, ops[i], mags[i], signs[i])
  if cfg.cutout > 0:
    x = _cutout(k_cut, x, cfg.cutout)
  return x


def center(clip: jax.Array, cfg: AugmentConfig) -> jax.Array:
  """Evaluation view: resize the short side to S (antialiased linear), centre crop.

  Args:
    clip: [T, H, W, C] uint8.
    cfg: the settings (only out_size is used).

  Returns:
    [T, S, S, C] float32 in [0, 1]; exactly `clip / 255` when H = W = S.
  """
  _check_clip(clip)
  t, height, width, c = clip.shape
  s = cfg.out_size
  scale = s / min(height, width)
  # Output coords = scale * input coords + translation; centres map onto centres.
  translation = [0.5 * s - scale * 0.5 * height, 0.5 * s - scale * 0.5 * width]
  x = clip.astype(jnp.float32) * (1.0 / 255.0)
  out = jax.image.scale_and_translate(
      x, (t, s, s, c), (1, 2), jnp.asarray([scale, scale], jnp.float32),
      jnp.asarray(translation, jnp.float32), "linear", antialias=True)
  return jnp.clip(out, 0.0, 1.0)


def weak_batch(key: jax.Array, clips: jax.Array, cfg: AugmentConfig) -> jax.Array:
  """[B, T, H, W, C] uint8 -> [B, T, S, S, C] weak views, keys split(key, B)."""
  keys = jax.random.split(key, clips.shape[0])
  return jax.vmap(lambda k, c: weak(k, c, cfg))(keys, clips)


def strong_batch(key: jax.Array, clips: jax.Array, cfg: AugmentConfig) -> jax.Array:
  """[B, T, H, W, C] uint8 -> [B, T, S, S, C] strong views, keys split(key, B)."""
  keys = jax.random.split(key, clips.shape[0])
  return jax.vmap(lambda k, c: strong(k, c, cfg))(keys, clips)


def center_batch(clips: jax.Array, cfg: AugmentConfig) -> jax.Array:
  """[B, T, H, W, C] uint8 -> [B, T, S, S, C] centre views."""
  return jax.vmap(lambda c: center(c, cfg))(clips)


# ---------------------------------------------------------------------- temporal jitter


def pick_segment_frames(key: jax.Array | None, clips: jax.Array,
                        frames_per_segment: int) -> jax.Array:
  """One frame of each segment: [B, T*k, H, W, C] -> [B, T, H, W, C] (k = frames_per_segment).

  Prepared videos store k TSN-sampled frames per segment (`aplt_jax.data.video.decode`). With a key,
  each clip draws its own frame in each segment (temporal jitter, before the spatial
  augmentation); with `key=None`, the evaluation view, every segment gives frame `k // 2`.
  k = 1 returns `clips` itself (synthetic clips store exactly the frames the model sees).
  """
  k = int(frames_per_segment)
  if k == 1:
    return clips
  b, stored = clips.shape[:2]
  if stored % k:
    raise ValueError(f"clips store {stored} frames, not a multiple of frames_per_segment={k}")
  t = stored // k
  if key is None:
    offsets = jnp.full((b, t), k // 2, jnp.int32)
  else:
    offsets = jax.random.randint(key, (b, t), 0, k)
  idx = jnp.arange(t, dtype=jnp.int32)[None, :] * k + offsets  # [B, T]
  return jnp.take_along_axis(clips, idx.reshape(b, t, 1, 1, 1), axis=1)
