"""Test-wide setup: two fake CPU devices, fast compilation, a shared compilation cache.

Every test process sees 2 CPU devices, so multi-device tests need no separate process; a
1-device run uses a mesh over `jax.devices()[:1]`.
"""
import os
import pathlib

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  _flags += " --xla_force_host_platform_device_count=2"
# Tiny shapes: compilation dominates, and XLA's backend optimisations cost more than they save.
if "xla_backend_optimization_level" not in _flags:
  _flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = _flags.strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_collection_modifyitems(items):
  """Slow tests first (the order is otherwise kept): under `make test`'s `-n 2 --dist worksteal`
  the longest then start early and the other worker takes the short ones, instead of one
  worker finishing a long test alone at the end."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """`../shared/data` (real MA-52 fixtures); skips where a clone has none."""
  if not SHARED_DATA.is_dir():
    pytest.skip("../shared/data is absent (only present on the development machines)")
  return SHARED_DATA


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> pathlib.Path:
  """A TFDS data_dir shared by the tests that prepare tiny synthetic datasets."""
  return tmp_path_factory.mktemp("tfds")
