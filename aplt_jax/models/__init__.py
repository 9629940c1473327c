"""Backbone registry: names -> backbone factories, built into a `Classifier`.

A backbone factory is any callable taking keyword arguments and returning a Linen module
`m(x, train) -> features [B, d]`; register it with `@register("name")`. Video (TSM-ResNet)
and sequence backbones share this one registry, so the trainer only sees
`build(config.model.name, num_classes, **kwargs_from_config(config.model))`.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from aplt_jax.models.classifier import Classifier
from aplt_jax.models.tsm_resnet import TSMResNet, temporal_shift
from aplt_jax.registry import Registry

__all__ = ["Classifier", "TSMResNet", "build", "kwargs_from_config", "names", "parse_dtype",
           "register", "temporal_shift"]

BackboneFactory = Callable[..., nn.Module]

_BACKBONES: Registry[BackboneFactory] = Registry("model")

DTYPES = ("float32", "bfloat16", "float16")  # model.dtype values


register = _BACKBONES.register  # decorator: a backbone factory (function or Module class)
names = _BACKBONES.names  # registered backbone names, sorted


def parse_dtype(dtype: Any) -> Any:
  """'float32' / 'bfloat16' / 'float16' (config strings) or a dtype -> a numpy dtype."""
  if isinstance(dtype, str) and dtype not in DTYPES:
    raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(DTYPES)}")
  return jnp.dtype(dtype)


def build(name: str, num_classes: int, proj_dim: int = 0, **kwargs: Any) -> Classifier:
  """Builds `Classifier(backbone=<name>(**kwargs), num_classes, proj_dim)`.

  Raises ValueError on an unknown name or an unknown keyword (a config typo), naming the
  accepted ones.
  """
  factory = _BACKBONES.get(name)
  params = inspect.signature(factory).parameters
  if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
      raise ValueError(f"model {name!r} got unknown arguments {unknown}; "
                       f"accepted: {sorted(params)}")
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  if proj_dim < 0:
    raise ValueError(f"model.proj_dim must be >= 0 (0: no projection head), got {proj_dim}")
  return Classifier(backbone=factory(**kwargs), num_classes=num_classes, proj_dim=int(proj_dim))


def kwargs_from_config(model_cfg) -> dict[str, Any]:
  """The `model.*` config keys that the chosen backbone's factory accepts, and `proj_dim`.

  `configs/default.py` holds the knobs of every backbone side by side (the config is locked, so
  a mistyped key fails at the command line); each factory takes the ones it names.
  """
  params = inspect.signature(_BACKBONES.get(model_cfg.name)).parameters
  return {k: v for k, v in model_cfg.items() if k in params or k == "proj_dim"}


def _tsm_factory(depth: int) -> BackboneFactory:
  def factory(width_mult: float = 1.0, shift_div: int = 8, shift: bool = True,
              stem: str = "imagenet", input_mode: str = "rgb",
              dtype: Any = "float32") -> TSMResNet:
    return TSMResNet(depth=depth, width_mult=width_mult, shift_div=shift_div, shift=shift,
                     stem=stem, input_mode=input_mode, dtype=parse_dtype(dtype))
  factory.__name__ = f"tsm_resnet{depth}"
  factory.__doc__ = f"TSM-ResNet-{depth} backbone (see `TSMResNet`)."
  return factory


for _depth in (10, 18, 34, 50):
  register(f"tsm_resnet{_depth}")(_tsm_factory(_depth))
del _depth

# Backbones defined in their own modules register themselves on import (after `register` exists).
from aplt_jax.models import tcn as _tcn  # noqa: E402,F401  pylint: disable=g-import-not-at-top
