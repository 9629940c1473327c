"""TSM-ResNet backbones: 2-D ResNets with the Temporal Shift Module (Lin et al., 2019).

Each frame goes through a torchvision-layout ResNet (v1.5: stride on the 3x3 conv of a
Bottleneck); before the first conv of every residual block's residual branch, a fraction of
the channels is shifted one frame along time, which mixes temporal information at zero
parameter cost. Submodules carry torchvision's names (`conv1`, `bn1`, `layer1_0`, ...,
`downsample_conv`, `downsample_bn`) and padding is explicit and symmetric as in PyTorch, so
torchvision ImageNet weights can be mapped in mechanically.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# torchvision's ImageNet statistics, for inputs in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# depth -> (block kind, blocks per stage).
STAGES = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}

# torchvision's conv init: kaiming normal, fan_out, ReLU gain (untruncated).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def temporal_shift(x: jax.Array, num_frames: int, shift_div: int = 8) -> jax.Array:
  """Shifts 1/shift_div of the channels each way along time, zero-filled at the ends.

  Channels `[0, fold)` of frame t take frame t+1's values (shifted backward in time),
  channels `[fold, 2*fold)` take frame t-1's (shifted forward in time), the rest are
  unchanged; `fold = C // shift_div`. This is the original TSM channel layout, so TSM
  checkpoints keep their meaning.

  Args:
    x: [B*T, H, W, C] frames, clip-major (the T frames of a clip are contiguous).
    num_frames: T.
    shift_div: inverse fraction of channels shifted in each direction.

  Returns:
    [B*T, H, W, C], same dtype.
  """
  bt, h, w, c = x.shape
  if bt % num_frames:
    raise ValueError(f"leading dim {bt} is not a multiple of num_frames={num_frames}")
  fold = c // shift_div
  if fold == 0:
    return x
  v = x.reshape(bt // num_frames, num_frames, h, w, c)
  zeros = jnp.zeros_like(v[:, :1, ..., :fold])
  backward = jnp.concatenate([v[:, 1:, ..., :fold], zeros], axis=1)
  forward = jnp.concatenate([zeros, v[:, :-1, ..., fold: 2 * fold]], axis=1)
  out = jnp.concatenate([backward, forward, v[..., 2 * fold:]], axis=-1)
  return out.reshape(bt, h, w, c)


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
  """Bias-free conv with PyTorch-style symmetric padding `kernel // 2`."""
  p = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((p, p), (p, p)), use_bias=False, dtype=dtype,
                 param_dtype=jnp.float32, kernel_init=_conv_init, name=name)


def _bn(train: bool, name: str) -> nn.BatchNorm:
  """BatchNorm with torch's defaults, always computed and stored in float32."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=jnp.float32, param_dtype=jnp.float32, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs (stride on the first); identity or 1x1 projection shortcut.

  `features` is the block's output width (expansion 1).
  """
  features: int
  stride: int = 1
  shift_div: int = 8
  shift: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, num_frames: int, train: bool) -> jax.Array:
    """[B*T, H, W, Cin] -> [B*T, H/stride, W/stride, features], float32."""
    y = temporal_shift(x, num_frames, self.shift_div) if self.shift else x
    y = _conv(self.features, 3, self.stride, self.dtype, "conv1")(y)
    y = nn.relu(_bn(train, "bn1")(y))
    y = _conv(self.features, 3, 1, self.dtype, "conv2")(y)
    y = _bn(train, "bn2")(y)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = _conv(self.features, 1, self.stride, self.dtype, "downsample_conv")(x)
      shortcut = _bn(train, "downsample_bn")(shortcut)
    return nn.relu(y + shortcut)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (carries the stride: ResNet v1.5), 1x1 expand by 4."""
  features: int
  stride: int = 1
  shift_div: int = 8
  shift: bool = True
  dtype: Any = jnp.float32
  expansion: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, num_frames: int, train: bool) -> jax.Array:
    """[B*T, H, W, Cin] -> [B*T, H/stride, W/stride, 4*features], float32."""
    out_features = self.features * self.expansion
    y = temporal_shift(x, num_frames, self.shift_div) if self.shift else x
    y = _conv(self.features, 1, 1, self.dtype, "conv1")(y)
    y = nn.relu(_bn(train, "bn1")(y))
    y = _conv(self.features, 3, self.stride, self.dtype, "conv2")(y)
    y = nn.relu(_bn(train, "bn2")(y))
    y = _conv(out_features, 1, 1, self.dtype, "conv3")(y)
    y = _bn(train, "bn3")(y)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != out_features:
      shortcut = _conv(out_features, 1, self.stride, self.dtype, "downsample_conv")(x)
      shortcut = _bn(train, "downsample_bn")(shortcut)
    return nn.relu(y + shortcut)


class TSMResNet(nn.Module):
  """TSM-ResNet-{10,18,34,50} clip encoder.

  Attributes:
    depth: 10, 18, 34 (BasicBlock) or 50 (Bottleneck).
    width_mult: scales the stage widths 64*(1, 2, 4, 8) (rounded, at least 1).
    shift_div: 1/shift_div of the channels is shifted each way in time.
    shift: False gives a plain per-frame ResNet (TSN-style averaging).
    stem: 'imagenet' (7x7/2 conv + 3x3/2 max pool), 'cifar' (3x3/1 conv, no pool) or
      'small' (3x3/2 conv, no pool: 4x cheaper than 'cifar' for small CPU inputs).
    input_mode: 'rgb' (frames), 'diff' (temporal differences x_t - x_{t-1}, zero for the first
      frame: TSN's RGB-diff) or 'rgb_diff' (both, 6 input channels). Differences put motion in
      the first layer's reach, which small models trained on few clips need to see motion
      that is a pixel or two in size; 'rgb' keeps ImageNet weights usable.
    dtype: conv compute dtype; parameters and BatchNorm stay float32.
  """
  depth: int
  width_mult: float = 1.0
  shift_div: int = 8
  shift: bool = True
  stem: str = "imagenet"
  input_mode: str = "rgb"
  dtype: Any = jnp.float32

  def __post_init__(self):
    # Fail at construction (config time), not at the first trace.
    if self.depth not in STAGES:
      raise ValueError(f"depth must be one of {sorted(STAGES)}, got {self.depth}")
    if self.stem not in ("imagenet", "cifar", "small"):
      raise ValueError(f"stem must be 'imagenet', 'cifar' or 'small', got {self.stem!r}")
    if self.input_mode not in ("rgb", "diff", "rgb_diff"):
      raise ValueError(f"input_mode must be 'rgb', 'diff' or 'rgb_diff', got "
                       f"{self.input_mode!r}")
    if self.shift_div < 1 or self.width_mult <= 0:
      raise ValueError(f"need shift_div >= 1 and width_mult > 0, got {self.shift_div}, "
                       f"{self.width_mult}")
    super().__post_init__()

  @property
  def feature_dim(self) -> int:
    """d, the width of the returned features."""
    kind, _ = STAGES[self.depth]
    return self._width(3) * (4 if kind == "bottleneck" else 1)

  def _width(self, stage: int) -> int:
    return max(1, int(round(64 * self.width_mult))) * 2 ** stage

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Clip features.

    Args:
      x: [B, T, H, W, 3] float in [0, 1].
      train: batch statistics (and their running-average update) when True.

    Returns:
      [B, d] float32 features: average over H, W, then T of the last stage. The per-frame
      features [B, T, d] are sown as `intermediates/frame_features`.
    """
    if x.ndim != 5 or x.shape[-1] != 3:
      raise ValueError(f"expected [B, T, H, W, 3] input, got shape {x.shape}")
    kind, blocks = STAGES[self.depth]
    block_cls = Bottleneck if kind == "bottleneck" else BasicBlock
    b, t, h, w, _ = x.shape

    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    x = x.astype(jnp.float32)
    parts = []
    if self.input_mode in ("rgb", "rgb_diff"):
      parts.append((x - mean) / std)
    if self.input_mode in ("diff", "rgb_diff"):
      parts.append(jnp.diff(x, axis=1, prepend=x[:, :1]) / std)
    y = jnp.concatenate(parts, axis=-1).reshape(b * t, h, w, -1)

    if self.stem == "imagenet":
      y = _conv(self._width(0), 7, 2, self.dtype, "conv1")(y)
      y = nn.relu(_bn(train, "bn1")(y))
      y = nn.max_pool(y, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      y = _conv(self._width(0), 3, 2 if self.stem == "small" else 1, self.dtype, "conv1")(y)
      y = nn.relu(_bn(train, "bn1")(y))

    for stage, num_blocks in enumerate(blocks):
      for i in range(num_blocks):
        stride = 2 if (stage > 0 and i == 0) else 1
        y = block_cls(self._width(stage), stride=stride, shift_div=self.shift_div,
                      shift=self.shift, dtype=self.dtype,
                      name=f"layer{stage + 1}_{i}")(y, t, train)

    frame_features = jnp.mean(y.astype(jnp.float32), axis=(1, 2)).reshape(b, t, -1)
    self.sow("intermediates", "frame_features", frame_features)
    return jnp.mean(frame_features, axis=1)
