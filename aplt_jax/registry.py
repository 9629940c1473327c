"""`Registry`: the one name -> object table behind every registry of the project.

Datasets (`data`), sequence readers (`data.sequences.readers`), augmentation views (`augment`),
backbones (`models`), SSL methods (`ssl`) and threshold rules (`thresholds`) all use it, so all
share one rule: registering a name twice raises `ValueError` (a bug in the code), asking for an
unknown name raises `ConfigError` (a user's choice) that lists the known names.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from aplt_jax.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
  """Names of one `kind` of thing ("model", "SSL method", ...) -> the registered objects."""

  def __init__(self, kind: str):
    self.kind = kind
    self._items: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    """Decorator adding its argument under `name`; `ValueError` when `name` is taken."""
    def wrap(item: T) -> T:
      if name in self._items:
        raise ValueError(f"{self.kind} {name!r} is already registered")
      self._items[name] = item
      return item
    return wrap

  def get(self, name: str) -> T:
    """The object registered as `name`; `ConfigError` listing the known names otherwise."""
    if name not in self._items:
      raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
    return self._items[name]

  def names(self) -> list[str]:
    """The registered names, sorted."""
    return sorted(self._items)

  def __contains__(self, name: Any) -> bool:
    return name in self._items
