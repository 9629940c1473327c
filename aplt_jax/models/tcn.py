"""Temporal convolution network (TCN) for pose and sensor sequences.

A stem conv (optionally strided in time) then residual blocks of two dilated 1-D convs, the
dilation doubling from block to block (1, 2, 4, ...), so the receptive field grows exponentially
with depth at a constant cost per block; features are the average over time of the last block.
Convolutions are non-causal ('SAME' padding): whole windows are classified, never streamed.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aplt_jax.errors import ConfigError
from aplt_jax.models import parse_dtype, register

# Backbones that take sequences [B, T, ...] (the others take video clips).
SEQUENCE_BACKBONES = ("tcn",)

_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _bn(train: bool, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=jnp.float32, param_dtype=jnp.float32, name=name)


class TemporalBlock(nn.Module):
  """conv(k, dilation) - BN - ReLU - conv(k, dilation) - BN, plus the identity, then ReLU."""
  width: int
  kernel: int
  dilation: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = lambda name: nn.Conv(self.width, (self.kernel,), kernel_dilation=(self.dilation,),
                                padding="SAME", use_bias=False, dtype=self.dtype,
                                param_dtype=jnp.float32, kernel_init=_conv_init, name=name)
    y = nn.relu(_bn(train, "bn1")(conv("conv1")(x)))
    y = _bn(train, "bn2")(conv("conv2")(y.astype(self.dtype)))
    return nn.relu(y + x.astype(jnp.float32)).astype(self.dtype)


class TCN(nn.Module):
  """Sequences `[B, T, C]` or `[B, T, J, D]` (float) -> features `[B, width]` float32.

  Trailing axes are flattened into channels (`J * D` for skeletons).

  Attributes:
    width: channels of the stem and of every block (the feature dimension).
    depth: number of residual blocks; block i has dilation 2**i.
    kernel: temporal kernel size (odd keeps 'SAME' padding symmetric).
    stride: temporal stride of the stem conv.
    dtype: compute dtype (parameters and BatchNorm stay float32).
  """
  width: int = 64
  depth: int = 4
  kernel: int = 5
  stride: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if x.ndim < 3:
      raise ValueError(f"TCN expects [B, T, C] or [B, T, J, D], got shape {x.shape}")
    x = x.reshape(x.shape[0], x.shape[1], -1).astype(self.dtype)
    x = nn.Conv(self.width, (self.kernel,), strides=(self.stride,), padding="SAME",
                use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                kernel_init=_conv_init, name="stem_conv")(x)
    x = nn.relu(_bn(train, "stem_bn")(x)).astype(self.dtype)
    for i in range(self.depth):
      x = TemporalBlock(self.width, self.kernel, 2 ** i, self.dtype, name=f"block{i}")(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=1)


@register("tcn")
def tcn(tcn_width: int = 64, tcn_depth: int = 4, tcn_kernel: int = 5, tcn_stride: int = 2,
        dtype: Any = "float32") -> TCN:
  """The TCN backbone, configured by `model.tcn_*` (see `TCN`)."""
  for name, value, lo in (("tcn_width", tcn_width, 1), ("tcn_depth", tcn_depth, 0),
                          ("tcn_kernel", tcn_kernel, 1), ("tcn_stride", tcn_stride, 1)):
    if int(value) != value or value < lo:
      raise ConfigError(f"model.{name}={value} must be an integer >= {lo}")
  return TCN(width=int(tcn_width), depth=int(tcn_depth), kernel=int(tcn_kernel),
             stride=int(tcn_stride), dtype=parse_dtype(dtype))
