"""The device mesh, shardings, and host-local <-> global arrays.

One 1-D mesh with axis 'data' spans every device of every host. Batches are sharded on it,
parameters, optimizer state and prototypes are replicated. Each host reads only its slice of
every global batch; `global_batch` assembles the slices into one global array.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D data-parallel mesh over `devices` (default: all devices of all hosts)."""
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), (DATA,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA))


def check_divisible(name: str, size: int, mesh: Mesh) -> None:
  """Raises ValueError when a global batch size cannot be split evenly over the mesh."""
  n = mesh.devices.size
  if size % n:
    raise ValueError(
        f"{name}={size} is not divisible by the {n} devices of the mesh; choose a multiple of {n} "
        f"(e.g. {max(n, size // n * n)}) so every device gets the same number of clips.")


def process_slice(global_size: int, mesh: Mesh) -> slice:
  """The rows of a global batch that this process reads (its devices' contiguous block)."""
  del mesh  # Processes own equal contiguous blocks of the 1-D mesh.
  n, i = jax.process_count(), jax.process_index()
  per = global_size // n
  return slice(i * per, (i + 1) * per)


def global_batch(mesh: Mesh, local: Any) -> Any:
  """Host-local numpy arrays (this process's rows) -> global arrays sharded on 'data'."""
  sharding = data_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local)


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Puts a pytree (identical on every host) on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def to_host(x: Any) -> Any:
  """Global arrays -> numpy on every host (all-gather across processes when needed)."""
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(x, tiled=True)
  return jax.tree.map(np.asarray, x)
