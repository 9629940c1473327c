"""On-device augmentation of pose and sensor sequences: weak, strong and centre views.

A sequence is float `[T, C]` or `[T, J, D]` (stored standardised: zero mean, unit std per
channel); batches add a leading B. Every view is float32 `[T', ...]` with `T' = cfg.out_len`
(0: the stored T). "Channels" below are the elements of the trailing shape (C, or J x D); channel
dropout drops axis 1 whole (a channel of `[T, C]`, a joint of `[T, J, D]`).

Weak view (every random parameter drawn once per sequence, applied to all its steps):
  mirror      with probability 1/2, the body's left-right reflection, where the config gives one
              (`mirror_sign`, `mirror_joints`; or `dataset_mirror`, the data's own, see
              `from_config`; off by default): the last axis times per-element
              signs (e.g. a wrist sensor's axis across the body, and the two gyro axes
              perpendicular to it), and, for `[T, J, D]`, the joints permuted left <-> right.
              The sequences' counterpart of the video views' horizontal flip;
  time crop   a window of `s * (T - 1)` steps, `s ~ U(crop_scale)`, at a uniform offset, linearly
              resampled to T' steps (a random speed-up of up to 1 / crop_scale[0]);
  scaling     each channel times `g ~ N(1, scale_std)`;
  jitter      additive `N(0, jitter_std)` noise on every value.
Strong view (also drawn once per sequence):
  mirror          as in the weak view;
  time crop       as in the weak view, with a smooth monotone time warp inside the crop: the
                  resampling positions on the crop's unit interval are `u + a (sin(2 pi k u + p)
                  - sin p) / (2 pi k)`, `a ~ U(-time_warp, time_warp)`, `k in {1, 2}` (local
                  speed `1 + a cos(...)` stays in [1 - time_warp, 1 + time_warp]; ends fixed);
  magnitude warp  each channel times a smooth random curve `1 + magnitude_warp * (n1 sin(2 pi u
                  + p1) + n2 sin(4 pi u + p2)) / sqrt(2)`, `n ~ N(0, 1)`;
  scaling, jitter as in the weak view;
  channel dropout each channel (joint) zeroed with probability `channel_drop`;
  time masking    one span of up to `time_mask * T'` steps zeroed (0 is the channel mean).
Centre view: the whole sequence resampled to T' steps (the identity when T' = T).
Resampling is one linear-interpolation gather per view.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from aplt_jax.errors import ConfigError

_MIRROR_STREAM = 0x6D6972  # fold_in data for the mirror's coin (see `_mirror`)


@dataclasses.dataclass(frozen=True)
class SeqAugmentConfig:
  """Static sequence-augmentation settings (hashable; see the module docstring).

  Attributes:
    out_len: T', time steps of every view; 0 keeps the input's T.
    crop_scale: (lo, hi) range of the time crop as a fraction of the sequence.
    scale_std: std of the per-channel gain.
    jitter_std: std of the additive noise.
    magnitude_warp: std of the smooth gain curve (strong).
    time_warp: max relative speed change of the time warp, in [0, 1) (strong).
    channel_drop: probability of zeroing each channel / joint (strong).
    time_mask: max fraction of steps zeroed as one span (strong).
    mirror_sign: () for no mirror, else one sign (+1 / -1) per element of the last axis (C of
      `[T, C]`, D of `[T, J, D]`) that a left-right reflection multiplies it by.
    mirror_joints: () or, for `[T, J, D]`, the permutation of J a reflection applies (joint j
      becomes joint `mirror_joints[j]`'s mirror image: each left joint's index at its right
      counterpart's place); needs `mirror_sign`.
  """
  out_len: int = 0
  crop_scale: tuple[float, float] = (0.8, 1.0)
  scale_std: float = 0.1
  jitter_std: float = 0.03
  magnitude_warp: float = 0.2
  time_warp: float = 0.5
  channel_drop: float = 0.1
  time_mask: float = 0.2
  mirror_sign: tuple[float, ...] = ()
  mirror_joints: tuple[int, ...] = ()

  def __post_init__(self):
    object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
    object.__setattr__(self, "mirror_sign", tuple(float(v) for v in self.mirror_sign))
    object.__setattr__(self, "mirror_joints", tuple(int(v) for v in self.mirror_joints))
    if any(v not in (-1.0, 1.0) for v in self.mirror_sign):
      raise ConfigError(f"augment_seq.mirror_sign must hold only +1 / -1, got {self.mirror_sign}")
    if self.mirror_joints and not self.mirror_sign:
      raise ConfigError("augment_seq.mirror_joints needs augment_seq.mirror_sign (the signs of "
                        "the coordinates a reflection flips)")
    if sorted(self.mirror_joints) != list(range(len(self.mirror_joints))):
      raise ConfigError(f"augment_seq.mirror_joints must be a permutation of 0..J-1, got "
                        f"{self.mirror_joints}")
    lo_hi = self.crop_scale
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1] <= 1:
      raise ConfigError(f"augment_seq.crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got "
                       f"{self.crop_scale}")
    if int(self.out_len) != self.out_len or self.out_len < 0:
      raise ConfigError(f"augment_seq.out_len must be an int >= 0, got {self.out_len}")
    for name in ("scale_std", "jitter_std", "magnitude_warp"):
      if getattr(self, name) < 0:
        raise ConfigError(f"augment_seq.{name} must be >= 0, got {getattr(self, name)}")
    for name in ("time_warp", "channel_drop", "time_mask"):
      if not 0 <= getattr(self, name) < 1:
        raise ConfigError(f"augment_seq.{name} must be in [0, 1), got {getattr(self, name)}")

  @classmethod
  def from_config(cls, cfg: Any, dataset_mirror_sign=()) -> "SeqAugmentConfig":
    """From a ConfigDict (or mapping) holding a subset of the fields; a typo is an error.

    Its key `dataset_mirror` (not a field) takes the data's own reflection, `dataset_mirror_sign`
    (the reader's: watch declares one, npz and npy_folder none), where `mirror_sign` is empty;
    an explicit `mirror_sign` wins. So a config written for one dataset never applies its
    channels' signs to another.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    given = dict(cfg.items()) if hasattr(cfg, "items") else dict(cfg)
    unknown = sorted(set(given) - names - {"dataset_mirror"})
    if unknown:
      raise ConfigError(f"augment_seq: unknown key(s) {unknown}; known: "
                        f"{sorted(names | {'dataset_mirror'})}")
    if given.pop("dataset_mirror", False) and not given.get("mirror_sign"):
      given["mirror_sign"] = tuple(dataset_mirror_sign)
    return cls(**given)


def _out_len(x: jax.Array, cfg: SeqAugmentConfig) -> int:
  if x.ndim not in (2, 3):
    raise ValueError(f"augment_seq: expected one sequence [T, C] or [T, J, D], got {x.shape}")
  return cfg.out_len or x.shape[0]


def resample(x: jax.Array, pos: jax.Array) -> jax.Array:
  """Linear interpolation of `x` [T, ...] at fractional step positions `pos` [T'] (clamped to
  [0, T - 1]) -> [T', ...] float32."""
  t = x.shape[0]
  pos = jnp.clip(pos, 0.0, t - 1.0)
  i0 = jnp.floor(pos).astype(jnp.int32)
  i1 = jnp.minimum(i0 + 1, t - 1)
  w = (pos - i0).reshape((-1,) + (1,) * (x.ndim - 1))
  x = x.astype(jnp.float32)
  return x[i0] * (1.0 - w) + x[i1] * w


def time_warp_curve(u: jax.Array, amount: jax.Array, k: jax.Array, phase: jax.Array
                    ) -> jax.Array:
  """Monotone map of [0, 1] onto itself with fixed ends: `u + a (sin(2 pi k u + p) - sin p) /
  (2 pi k)` for integer k and |a| < 1."""
  w = 2.0 * jnp.pi * k
  return u + amount * (jnp.sin(w * u + phase) - jnp.sin(phase)) / w


def _crop_positions(key: jax.Array, t: int, t_out: int, cfg: SeqAugmentConfig,
                    warp: bool) -> jax.Array:
  """Source positions [T'] of a random time crop (with a time warp inside it when `warp`)."""
  k_len, k_off, k_amt, k_k, k_ph = jax.random.split(key, 5)
  length = jax.random.uniform(k_len, (), minval=cfg.crop_scale[0],
                              maxval=cfg.crop_scale[1]) * (t - 1)
  start = jax.random.uniform(k_off, ()) * ((t - 1) - length)
  u = jnp.linspace(0.0, 1.0, t_out)
  if warp and cfg.time_warp > 0:
    amount = jax.random.uniform(k_amt, (), minval=-cfg.time_warp, maxval=cfg.time_warp)
    k = jax.random.randint(k_k, (), 1, 3).astype(jnp.float32)
    u = time_warp_curve(u, amount, k, jax.random.uniform(k_ph, (), maxval=2 * math.pi))
  return start + u * length


def _mirror(key: jax.Array, x: jax.Array, cfg: SeqAugmentConfig) -> jax.Array:
  """`x` [T, ...] reflected with probability 1/2 (`cfg.mirror_sign`, `cfg.mirror_joints`).

  The coin is `fold_in(key, ...)`, not a split of `key`, so configs without a mirror draw every
  other parameter exactly as before it existed.
  """
  if not cfg.mirror_sign:
    return x
  if len(cfg.mirror_sign) != x.shape[-1]:
    raise ConfigError(f"augment_seq.mirror_sign has {len(cfg.mirror_sign)} signs for sequences "
                      f"whose last axis has {x.shape[-1]} elements ({x.shape[1:]} per step)")
  y = x * jnp.asarray(cfg.mirror_sign, x.dtype)
  if cfg.mirror_joints:
    if x.ndim != 3 or len(cfg.mirror_joints) != x.shape[1]:
      raise ConfigError(f"augment_seq.mirror_joints permutes {len(cfg.mirror_joints)} joints; "
                        f"the sequences are {x.shape[1:]} per step")
    y = y[:, jnp.asarray(cfg.mirror_joints)]
  return jnp.where(jax.random.bernoulli(jax.random.fold_in(key, _MIRROR_STREAM)), y, x)


def _gain_and_noise(key: jax.Array, x: jax.Array, cfg: SeqAugmentConfig) -> jax.Array:
  k_scale, k_noise = jax.random.split(key)
  gain = 1.0 + cfg.scale_std * jax.random.normal(k_scale, x.shape[1:])
  return x * gain + cfg.jitter_std * jax.random.normal(k_noise, x.shape)


def weak(key: jax.Array, x: jax.Array, cfg: SeqAugmentConfig) -> jax.Array:
  """Weak view of one sequence [T, ...]: mirror, time crop + resample, scaling, jitter
  -> [T', ...]."""
  t_out = _out_len(x, cfg)
  x = _mirror(key, x, cfg)
  k_crop, k_amp = jax.random.split(key)
  y = resample(x, _crop_positions(k_crop, x.shape[0], t_out, cfg, warp=False))
  return _gain_and_noise(k_amp, y, cfg)


def strong(key: jax.Array, x: jax.Array, cfg: SeqAugmentConfig) -> jax.Array:
  """Strong view of one sequence [T, ...]: the weak ops plus time warp, magnitude warp, channel
  dropout and time masking -> [T', ...]."""
  t_out = _out_len(x, cfg)
  x = _mirror(key, x, cfg)
  k_crop, k_mag, k_amp, k_drop, k_len, k_pos = jax.random.split(key, 6)
  y = resample(x, _crop_positions(k_crop, x.shape[0], t_out, cfg, warp=True))
  if cfg.magnitude_warp > 0:
    k_n, k_p = jax.random.split(k_mag)
    n = jax.random.normal(k_n, (2,) + y.shape[1:])
    p = jax.random.uniform(k_p, (2,) + y.shape[1:], maxval=2 * math.pi)
    u = jnp.linspace(0.0, 1.0, t_out).reshape((-1,) + (1,) * (y.ndim - 1))
    curve = (n[0] * jnp.sin(2 * jnp.pi * u + p[0]) + n[1] * jnp.sin(4 * jnp.pi * u + p[1]))
    y = y * (1.0 + cfg.magnitude_warp * curve / math.sqrt(2.0))
  y = _gain_and_noise(k_amp, y, cfg)
  if cfg.channel_drop > 0:
    keep = ~jax.random.bernoulli(k_drop, cfg.channel_drop, (y.shape[1],))
    y = y * keep.reshape((1, -1) + (1,) * (y.ndim - 2))
  if cfg.time_mask > 0:
    span = jnp.floor(jax.random.uniform(k_len, ()) * cfg.time_mask * t_out).astype(jnp.int32)
    first = jax.random.randint(k_pos, (), 0, t_out - span + 1)
    steps = jnp.arange(t_out)
    masked = (steps >= first) & (steps < first + span)
    y = jnp.where(masked.reshape((-1,) + (1,) * (y.ndim - 1)), 0.0, y)
  return y


def center(x: jax.Array, cfg: SeqAugmentConfig) -> jax.Array:
  """Evaluation view: the whole sequence [T, ...] resampled to [T', ...] (identity at T' = T)."""
  t_out = _out_len(x, cfg)
  if t_out == x.shape[0]:
    return x.astype(jnp.float32)
  return resample(x, jnp.linspace(0.0, x.shape[0] - 1.0, t_out))


def weak_batch(key: jax.Array, xs: jax.Array, cfg: SeqAugmentConfig) -> jax.Array:
  """[B, T, ...] -> [B, T', ...] weak views, keys split(key, B)."""
  return jax.vmap(lambda k, x: weak(k, x, cfg))(jax.random.split(key, xs.shape[0]), xs)


def strong_batch(key: jax.Array, xs: jax.Array, cfg: SeqAugmentConfig) -> jax.Array:
  """[B, T, ...] -> [B, T', ...] strong views, keys split(key, B)."""
  return jax.vmap(lambda k, x: strong(k, x, cfg))(jax.random.split(key, xs.shape[0]), xs)


def center_batch(xs: jax.Array, cfg: SeqAugmentConfig) -> jax.Array:
  """[B, T, ...] -> [B, T', ...] centre views."""
  return jax.vmap(lambda x: center(x, cfg))(xs)
