"""Procedural synthetic micro-action clips (DESIGN §4.1).

A small figure (head with two eyes, shoulders, torso, two hands) stands on a smooth,
textured, noisy background. Each class is a subtle motion of one or two body parts, a few
pixels in size; everything else (colours, size, position, rest pose, speed, phase, camera
jitter, breathing, idle drift) is per-sample nuisance.

Motion, not appearance, carries the label: every part gets a random rest offset larger than
the motion amplitude, each class trajectory is centred on its own temporal mean (so a
clip's average pose does not depend on the class), and the phase is random. The
distribution of any single frame is then nearly the same for every class.

Classes ("one hand" is a random side per clip, so a horizontal flip keeps every label;
oscillations make one cycle per clip at speed 1, "fast" ones two; "once" goes out and back;
lean_forward and lean_back are each other's time reversal, so never reverse clips in time):
  nod           head, vertical oscillation          shake_head   head, horizontal oscillation
  tilt_head     head rotates about the neck         shrug        shoulders + hands up, once
  rub_hands     hands toward each other, fast       touch_nose   one hand toward the face, once
  scratch_head  one hand, small fast vertical       lean_forward figure grows (scale ramp)
  lean_back     figure shrinks (scale ramp)         tap_leg      one hand, vertical oscillation
  cross_arms    both hands inward, once             wave_hand    one hand, horizontal oscillation

Every random draw comes from `np.random.default_rng([seed, split_id, index])`, in the same
order for every class, so a clip is a pure function of `(cfg, split, index)` and the
nuisance is independent of the label. Pure numpy, no files.

Lengths in `SyntheticConfig` are in pixels of a 32-pixel frame and scale with `size`, so a
config keeps its difficulty at 16 or 64 pixels.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from aplt_jax.data import prepared
from aplt_jax.data import split as split_lib
from aplt_jax.data.dataset import Dataset, default_data_dir
from aplt_jax.errors import ConfigError

NAMES = ("synthetic",)  # the dataset names this family opens (aplt_jax/data/__init__.py)

CLASS_NAMES = (
    "nod", "shake_head", "tilt_head", "shrug", "rub_hands", "touch_nose",
    "scratch_head", "lean_forward", "lean_back", "tap_leg", "cross_arms", "wave_hand",
)

SPLIT_IDS = {split: i for i, split in enumerate(split_lib.SPLITS)}  # train 0, val 1, test 2

# Bump when the rendering or the stored format changes: prepared datasets are versioned by it.
RENDER_VERSION = "1.1.0"

_REF = 32.0  # Lengths in the config are pixels of a frame this size.


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """What to render; every field changes the clips (and the prepared dataset's name).

  Attributes:
    num_classes: number of classes, the first `num_classes` of `CLASS_NAMES` (<= 12).
    num_frames: frames per clip, T.
    size: side of the square frame in pixels, S.
    num_train / num_val / num_test: clips per split; labels are `index % num_classes`.
    seed: dataset seed.
    motion_amplitude: peak displacement of the moving part(s), in reference pixels.
    rest_jitter: half-width of the uniform random rest offset of every part, in reference
      pixels (and the matching head tilt); keep it above `motion_amplitude` so a single frame
      does not reveal the class.
    speed_range: (lo, hi) range of the per-clip speed factor; at speed 1 an oscillation makes
      one cycle per clip (fast ones two) and a one-shot motion lasts 70% of the clip.
    noise_std: per-frame Gaussian pixel noise, in [0, 1] intensity units.
    texture_contrast: amplitude of the smooth background texture, in intensity units.
    camera_jitter: std of the per-frame camera translation, in reference pixels.
    position_jitter: half-width of the uniform figure position offset, in reference pixels.
    size_range: (lo, hi) range of the figure's scale factor.
    breathing: amplitude of the torso's slow breathing motion, in reference pixels.
    idle_motion: magnitude of each part's slow random drift over a clip, in reference pixels.
    edge_softness: width of the anti-aliased edges, in output pixels.
  """
  num_classes: int = 12
  num_frames: int = 8
  size: int = 32
  num_train: int = 1200
  num_val: int = 0
  num_test: int = 600
  seed: int = 0
  motion_amplitude: float = 1.5
  rest_jitter: float = 2.0
  speed_range: tuple[float, float] = (0.75, 1.33)
  noise_std: float = 0.03
  texture_contrast: float = 0.1
  camera_jitter: float = 0.25
  position_jitter: float = 2.0
  size_range: tuple[float, float] = (0.85, 1.1)
  breathing: float = 0.3
  idle_motion: float = 0.3
  edge_softness: float = 1.0

  def __post_init__(self):
    if not 1 <= self.num_classes <= len(CLASS_NAMES):
      raise ValueError(f"num_classes must be in [1, {len(CLASS_NAMES)}], got {self.num_classes}")
    if self.num_frames < 2:
      raise ValueError(f"num_frames must be >= 2 (motion needs frames), got {self.num_frames}")
    if self.size < 8:
      raise ValueError(f"size must be >= 8 pixels, got {self.size}")
    for name in ("num_train", "num_val", "num_test", "seed"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
    for name in ("speed_range", "size_range"):
      lo, hi = getattr(self, name)
      if not 0 < lo <= hi:
        raise ValueError(f"{name} must satisfy 0 < lo <= hi, got {(lo, hi)}")
    if self.edge_softness <= 0:
      raise ValueError(f"edge_softness must be > 0, got {self.edge_softness}")
    # Tuples, not lists, so the config stays hashable and its name stable.
    object.__setattr__(self, "speed_range", tuple(float(v) for v in self.speed_range))
    object.__setattr__(self, "size_range", tuple(float(v) for v in self.size_range))

  @property
  def class_names(self) -> tuple[str, ...]:
    return CLASS_NAMES[:self.num_classes]

  def num_examples(self, split: str) -> int:
    """Number of clips in `split` ('train', 'val' or 'test')."""
    _split_id(split)
    return getattr(self, f"num_{split}")


def _split_id(split: str) -> int:
  try:
    return SPLIT_IDS[split]
  except KeyError:
    raise ValueError(f"Unknown split {split!r}; expected one of {sorted(SPLIT_IDS)}") from None


# Figure layout in reference pixels relative to the figure anchor (the neck), y down.
_HEAD = (0.0, -7.0, 3.3, 4.0)  # centre x, y, radius x, y
_NECK_PIVOT = (0.0, -3.0)  # the head tilts about this point
_EYE_DX, _EYE_DY, _EYE_R = 1.4, -0.6, 0.7  # relative to the head centre
_SHOULDERS = (0.0, 0.8, 7.5, 2.6)
_TORSO = (0.0, 7.0, 6.0, 8.0)
_HAND = (5.5, 9.0, 1.7)  # |x|, y, radius; left hand at -x
_HIP = (0.0, 15.0)  # leaning scales the figure about this point


def _centred(x: np.ndarray) -> np.ndarray:
  """Subtracts the temporal mean of a trajectory [T, ...], so the mean pose is class-free."""
  return x - x.mean(axis=0, keepdims=True)


def _soft_ellipse(xs, ys, cx, cy, rx, ry, angle, softness):
  """Anti-aliased coverage of one ellipse per frame.

  Args:
    xs: [W] and ys: [H] pixel-centre coordinates of the window to draw in.
    cx, cy, rx, ry, angle: [T] centre, radii (pixels) and rotation (radians).
    softness: edge width in pixels.

  Returns:
    [T, H, W] float32 coverage in [0, 1], from a first-order signed distance to the boundary.
  """
  f32 = lambda a: np.asarray(a, np.float32)[:, None, None]
  dx = xs[None, None, :] - f32(cx)
  dy = ys[None, :, None] - f32(cy)
  c, s = f32(np.cos(angle)), f32(np.sin(angle))
  irx, iry = f32(1.0 / rx), f32(1.0 / ry)
  u = (c * dx + s * dy) * irx
  v = (c * dy - s * dx) * iry
  f = u * u + v * v - 1.0
  gu, gv = u * irx, v * iry
  grad = np.sqrt(gu * gu + gv * gv) * np.float32(2.0 * softness) + np.float32(1e-6)
  return np.clip(0.5 - f / grad, 0.0, 1.0)


def _pick_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Background, skin and shirt colours [3] with enough contrast between them."""
  light, dark = np.array([0.96, 0.80, 0.68]), np.array([0.36, 0.22, 0.14])
  for _ in range(64):
    background = rng.uniform(0.15, 0.85, 3)
    skin = (light + (dark - light) * rng.uniform()) * rng.uniform(0.9, 1.1, 3)
    shirt = rng.uniform(0.05, 0.95, 3)
    if (np.abs(skin - background).sum() > 0.45 and np.abs(shirt - background).sum() > 0.45
        and np.abs(skin - shirt).sum() > 0.45):
      break
  return background, np.clip(skin, 0.0, 1.0), shirt


def _class_motion(label: int, tau: np.ndarray, speed: float, phase: float, side: float,
                  onset: float, amp: float) -> dict[str, np.ndarray]:
  """The label's motion: per-part displacements [T, 2], head tilt [T] and lean [T].

  Every trajectory is centred on its temporal mean. `amp` is in output pixels; `side` (+-1)
  picks the acting hand for one-hand classes (random, so a horizontal flip keeps the label).
  """
  t = len(tau)
  zeros = np.zeros((t, 2))
  out = {"head": zeros, "shoulders": zeros, "left": zeros, "right": zeros,
         "tilt": np.zeros(t), "lean": np.zeros(t)}
  osc = np.sin(2 * np.pi * speed * tau + phase)  # one cycle per clip at speed 1
  fast = np.sin(4 * np.pi * speed * tau + phase)  # two cycles per clip at speed 1
  duration = min(1.0, 0.7 / speed)
  progress = np.clip((tau - onset * (1.0 - duration)) / duration, 0.0, 1.0)
  bump = 0.5 - 0.5 * np.cos(2 * np.pi * progress)  # out and back, once
  ramp = progress * progress * (3.0 - 2.0 * progress)  # smooth, monotone
  hand = "right" if side > 0 else "left"
  vec = lambda x, y: np.stack([x, y], axis=-1)
  name = CLASS_NAMES[label]
  if name == "nod":
    out["head"] = vec(0 * osc, amp * osc)
  elif name == "shake_head":
    out["head"] = vec(amp * osc, 0 * osc)
  elif name == "tilt_head":
    out["tilt"] = side * osc  # unit tilt; the caller scales it to amp / (pivot distance) rad
  elif name == "shrug":
    out["shoulders"] = vec(0 * bump, -amp * bump)
    out["left"] = out["right"] = vec(0 * bump, -amp * bump)
  elif name == "rub_hands":
    out["left"] = vec(0.7 * amp * fast, 0 * fast)
    out["right"] = vec(-0.7 * amp * fast, 0 * fast)
  elif name == "touch_nose":
    hx, hy = side * _HAND[0], _HAND[1]
    nx, ny = _HEAD[0], _HEAD[1] + 1.0
    d = np.array([nx - hx, ny - hy]) / np.hypot(nx - hx, ny - hy)
    out[hand] = 1.3 * amp * bump[:, None] * d[None]
  elif name == "scratch_head":
    out[hand] = vec(0 * fast, 0.7 * amp * fast)
  elif name == "lean_forward":
    out["lean"] = ramp
  elif name == "lean_back":
    out["lean"] = -ramp
  elif name == "tap_leg":
    out[hand] = vec(0 * osc, amp * osc)
  elif name == "cross_arms":
    out["left"] = vec(amp * bump, -0.3 * amp * bump)
    out["right"] = vec(-amp * bump, -0.3 * amp * bump)
  elif name == "wave_hand":
    out[hand] = vec(amp * osc, 0 * osc)
  return {k: _centred(np.asarray(v, np.float64)) for k, v in out.items()}


def render_clip(cfg: SyntheticConfig, split: str, index: int) -> tuple[np.ndarray, int]:
  """Renders clip `index` of `split`.

  Returns:
    (video, label): uint8 [T, S, S, 3] and `index % num_classes`.
  """
  split_id = _split_id(split)
  if not 0 <= index < cfg.num_examples(split):
    raise IndexError(f"index {index} out of range for split {split!r} "
                     f"with {cfg.num_examples(split)} clips")
  rng = np.random.default_rng([cfg.seed, split_id, index])
  label = index % cfg.num_classes
  t, s = cfg.num_frames, cfg.size
  px = s / _REF  # output pixels per reference pixel
  tau = np.linspace(0.0, 1.0, t)

  # Nuisance, drawn in a fixed order for every class.
  background, skin, shirt = _pick_colours(rng)
  scale = px * rng.uniform(*cfg.size_range)  # output pixels per figure unit
  anchor = s / 2 + rng.uniform(-1, 1, 2) * cfg.position_jitter * px + np.array([0.0, 1.0]) * px
  rest = {k: rng.uniform(-1, 1, 2) * cfg.rest_jitter * px
          for k in ("head", "shoulders", "torso", "left", "right")}
  # Rest head tilt: the angle that moves the head centre by up to `rest_jitter`.
  rest_tilt = rng.uniform(-1, 1) * cfg.rest_jitter / abs(_HEAD[1] - _NECK_PIVOT[1])
  drift_dir = rng.normal(size=(5, 2))
  drift_len = rng.uniform(0, 1, (5, 1)) * cfg.idle_motion * px
  drift = {k: _centred(tau[:, None] * (drift_len[i] * drift_dir[i] / np.linalg.norm(drift_dir[i])))
           for i, k in enumerate(("head", "shoulders", "torso", "left", "right"))}
  breath = _centred(np.sin(np.pi * tau + rng.uniform(0, 2 * np.pi))) * cfg.breathing * px
  camera = rng.normal(size=(t, 2)) * cfg.camera_jitter * px
  speed = np.exp(rng.uniform(*np.log(cfg.speed_range)))
  phase = rng.uniform(0, 2 * np.pi)
  side = rng.choice([-1.0, 1.0])
  onset = rng.uniform()
  amp = cfg.motion_amplitude * px * rng.uniform(0.8, 1.2)
  tex_freq = rng.uniform(2 * np.pi / 16, 2 * np.pi / 5, 8) / px  # radians per output pixel
  tex_angle = rng.uniform(0, np.pi, 8)
  tex_phase = rng.uniform(0, 2 * np.pi, 8)
  tex_amp = (rng.normal(size=(8, 1)) + 0.5 * rng.normal(size=(8, 3))) * (
      cfg.texture_contrast / np.sqrt(8 / 2))  # mostly luminance, some colour
  noise = rng.standard_normal((t, s, s, 3), dtype=np.float32) * np.float32(cfg.noise_std)

  motion = _class_motion(label, tau, speed, phase, side, onset, amp)

  # Background: a smooth texture fixed in the world, seen through the jittering camera. Each
  # plane wave cos(kx x + ky y + p) is split as cos(a)cos(b) - sin(a)sin(b), so the [T, S, S]
  # field is two batched matmuls of [T, S, K] factors instead of K full-frame cosines.
  grid = np.arange(s) + 0.5
  kx, ky = tex_freq * np.cos(tex_angle), tex_freq * np.sin(tex_angle)  # [K]
  a = kx * (grid[None, :, None] + camera[:, None, 0:1])  # [T, S(x), K]
  b = ky * (grid[None, :, None] + camera[:, None, 1:2]) + tex_phase  # [T, S(y), K]
  amp_k = tex_amp.T[None, :, None, :]  # [1, 3, 1, K]
  tex = (np.cos(b)[:, None] * amp_k) @ np.cos(a).transpose(0, 2, 1)[:, None]
  tex -= (np.sin(b)[:, None] * amp_k) @ np.sin(a).transpose(0, 2, 1)[:, None]  # [T, 3, S, S]
  img = (background[:, None, None] + tex).astype(np.float32)  # [T, 3, S, S], channels first
  grid = grid.astype(np.float32)

  # Figure geometry per frame, in output pixels.
  lean = 1.0 + motion["lean"] * 1.5 * amp / (abs(_HIP[1] - _HEAD[1]) * scale)  # [T]
  hip = anchor + np.array(_HIP) * scale

  def place(offset, part):
    """Figure-frame offset [2] (units) + per-part displacement [T, 2] -> pixels [T, 2]."""
    p = anchor + np.asarray(offset) * scale + part
    return hip + (p - hip) * lean[:, None] + camera

  tilt = rest_tilt + motion["tilt"] * amp / (abs(_HEAD[1] - _NECK_PIVOT[1]) * scale)  # [T]
  pivot = anchor + np.array(_NECK_PIVOT) * scale

  def tilted(offset):
    """Point fixed to the head, rotated about the neck by `tilt`: [T, 2] offsets from anchor."""
    rel = (np.array(offset) - np.array(_NECK_PIVOT)) * scale
    c, sn = np.cos(tilt), np.sin(tilt)
    return pivot - anchor + np.stack([c * rel[0] - sn * rel[1], sn * rel[0] + c * rel[1]], -1)

  head_move = rest["head"] + drift["head"] + motion["head"]
  body_move = rest["torso"] + drift["torso"] + np.stack([0 * breath, breath], -1)
  shoulder_move = rest["shoulders"] + drift["shoulders"] + motion["shoulders"] + body_move * 0.5
  parts = []  # (colour, centre [T, 2], radii [T, 2], angle [T])
  ones = np.ones(t)
  for (x, y, rx, ry), move, colour in ((_TORSO, body_move, shirt),
                                       (_SHOULDERS, shoulder_move, shirt)):
    parts.append((colour, place((x, y), move), np.stack([rx * ones, ry * ones], -1), 0 * ones))
  head_c = place((0, 0), head_move + tilted(_HEAD[:2]))
  parts.append((skin, head_c, np.stack([_HEAD[2] * ones, _HEAD[3] * ones], -1), tilt))
  eye_colour = skin * 0.25
  for ex in (-_EYE_DX, _EYE_DX):
    eye = (_HEAD[0] + ex, _HEAD[1] + _EYE_DY)
    parts.append((eye_colour, place((0, 0), head_move + tilted(eye)),
                  np.stack([_EYE_R * ones, _EYE_R * 0.8 * ones], -1), tilt))
  for sgn, key in ((-1.0, "left"), (1.0, "right")):
    move = rest[key] + drift[key] + motion[key]
    parts.append((skin * 1.05, place((sgn * _HAND[0], _HAND[1]), move),
                  np.stack([_HAND[2] * ones, _HAND[2] * ones], -1), 0 * ones))

  for colour, centre, radii, angle in parts:
    r = radii * scale * lean[:, None]
    # Draw only inside the box the part covers over the clip (hands are tiny).
    reach = r.max() + cfg.edge_softness + 1.0
    x0, y0 = np.clip(np.floor(centre.min(0) - reach).astype(int), 0, s)
    x1, y1 = np.clip(np.ceil(centre.max(0) + reach).astype(int) + 1, 0, s)
    if x0 >= x1 or y0 >= y1:
      continue
    alpha = _soft_ellipse(grid[x0:x1], grid[y0:y1], centre[:, 0], centre[:, 1], r[:, 0],
                          r[:, 1], angle, cfg.edge_softness)[:, None]  # [T, 1, h, w]
    window = img[:, :, y0:y1, x0:x1]
    window += alpha * (np.clip(colour, 0, 1).astype(np.float32)[:, None, None] - window)

  img = img.transpose(0, 2, 3, 1) + noise  # [T, S, S, 3]
  video = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
  return video, label


# --------------------------------------------------------------------------------------
# The TFDS builder, and the family's registry entry (aplt_jax/data/__init__.py)

_SYNTHETIC_ABBREV = {
    "num_classes": "c", "num_frames": "t", "size": "s", "num_train": "tr", "num_val": "va",
    "num_test": "te", "seed": "seed", "motion_amplitude": "amp", "rest_jitter": "rest",
    "speed_range": "speed", "noise_std": "noise", "texture_contrast": "tex",
    "camera_jitter": "cam", "position_jitter": "pos", "size_range": "scale",
    "breathing": "breath", "idle_motion": "idle", "edge_softness": "soft",
}


def synthetic_builder_config(cfg: SyntheticConfig) -> prepared.ParamsBuilderConfig:
  """The BuilderConfig for `cfg`; its name encodes every field of `cfg`."""
  return prepared.ParamsBuilderConfig(
      name=prepared.config_name(cfg, _SYNTHETIC_ABBREV),
      description=f"Synthetic micro-actions rendered with {cfg}",
      params=cfg)


class SyntheticMicroActions(prepared.ArrayRecordBuilder):
  """Procedural synthetic micro-action clips; splits train / test (and val if num_val > 0).

  Construct with `config=synthetic_builder_config(cfg)`, or use `prepare_synthetic`.
  """
  VERSION = tfds.core.Version(RENDER_VERSION)
  RELEASE_NOTES = {"1.0.0": "First renderer.",
                   "1.1.0": "The clip stored as raw bytes (Encoding.BYTES): the same pixels."}
  BUILDER_CONFIGS = [synthetic_builder_config(SyntheticConfig())]
  PREPARE_HINT = "aplt_jax.data.synthetic.prepare_synthetic(cfg, data_dir)"

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.params
    return self.dataset_info_from_configs(
        features=_features(cfg.num_frames, cfg.size, cfg.size, cfg.class_names),
        supervised_keys=("video", "label"),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(synthetic_config=dataclasses.asdict(cfg)),
        description=__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    cfg = self.params
    return {split: self._generate_examples(split=split)
            for split in split_lib.SPLITS if cfg.num_examples(split) > 0}

  def _generate_examples(self, split: str):
    cfg = self.params
    for index in range(cfg.num_examples(split)):
      video, label = render_clip(cfg, split, index)
      yield index, {"video": video, "label": label, "index": index}


def synthetic_builder(cfg: SyntheticConfig, data_dir: str | os.PathLike
                      ) -> SyntheticMicroActions:
  """The (possibly unprepared) builder of `cfg` under `data_dir`."""
  config = synthetic_builder_config(cfg)
  if config.name in SyntheticMicroActions.builder_configs:
    config = config.name  # TFDS refuses a second object named like a predefined config
  return SyntheticMicroActions(data_dir=os.fspath(data_dir), config=config)


def prepare_synthetic(cfg: SyntheticConfig, data_dir: str | os.PathLike
                      ) -> SyntheticMicroActions:
  """Renders and stores `cfg`'s splits under `data_dir` once; a no-op when already there."""
  return prepared.prepare(synthetic_builder(cfg, data_dir))


def _features(num_frames: int, height: int, width: int,
                   class_names: tuple[str, ...]) -> tfds.features.FeaturesDict:
  """The common video-clip features: video uint8 [T, H, W, 3], label, dense index."""
  return tfds.features.FeaturesDict({
      "video": tfds.features.Tensor(shape=(num_frames, height, width, 3), dtype=np.uint8,
                                    encoding=tfds.features.Encoding.BYTES),
      "label": tfds.features.ClassLabel(names=list(class_names)),
      "index": tfds.features.Tensor(shape=(), dtype=np.int64),
  })


def open_dataset(name: str, data_cfg) -> Dataset:
  """Renders `data.synthetic`'s clips once, then opens its train split and `data.eval_split`."""
  s = data_cfg.synthetic
  try:
    cfg = SyntheticConfig(
        num_classes=data_cfg.num_classes, num_frames=s.num_frames, size=s.size,
        num_train=s.num_train, num_val=s.num_val, num_test=s.num_test, seed=s.seed)
  except ValueError as e:
    raise ConfigError(f"data.num_classes / data.synthetic.*: {e}") from e
  builder = prepare_synthetic(cfg, default_data_dir(data_cfg))
  train = prepared.open_split(builder, "train")
  ev = prepared.open_split(builder, data_cfg.eval_split)
  return Dataset(name=name, train=train, eval=ev, train_labels=train.labels(),
                 eval_labels=ev.labels(), num_classes=cfg.num_classes,
                 class_names=list(CLASS_NAMES[:cfg.num_classes]))
