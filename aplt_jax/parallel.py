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
  """The rows of a global batch of `global_size` that this process reads.

  They are the rows the mesh puts on this process's devices, which `global_batch`
  (`make_array_from_process_local_data`) expects; they must form one contiguous block (true for
  a 1-D mesh whose devices are grouped by process, as `jax.make_mesh` orders them).
  """
  check_divisible("global batch", global_size, mesh)
  index_map = data_sharded(mesh).addressable_devices_indices_map((global_size,))
  blocks = sorted((idx[0].indices(global_size)[:2] for idx in index_map.values()))
  start, stop = blocks[0][0], blocks[-1][1]
  if sum(b - a for a, b in blocks) != stop - start:
    raise ValueError(f"This process's devices hold rows {blocks} of a global batch, not one "
                     "contiguous block; build the mesh with each process's devices adjacent.")
  return slice(start, stop)


def global_batch(mesh: Mesh, local: Any) -> Any:
  """Host-local numpy arrays (this process's rows) -> global arrays sharded on 'data'."""
  sharding = data_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local)


def placeable(x: Any) -> Any:
  """`x` in a form `device_put` can spread over a mesh that may span processes.

  With several processes, a jax.Array held whole by this process goes through numpy: its
  `device_put` onto a mesh spanning processes gives an array whose shards cannot be read back
  (jax 0.10.2; Orbax then fails to save it), while numpy is placed from each process's own
  (identical) copy. Global arrays, and anything with one process, pass through unchanged.
  """
  if jax.process_count() > 1 and isinstance(x, jax.Array) and x.is_fully_addressable:
    return np.asarray(x)
  return x


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Puts a pytree (identical on every host) on every device of the mesh (see `placeable`)."""
  return jax.device_put(jax.tree.map(placeable, tree), replicated(mesh))


def stack_rows(arrays: Sequence[jax.Array]) -> tuple[jax.Array, np.ndarray]:
  """Joins row-sharded global arrays `[B, ...]` into one `[len(arrays) * B, ...]`, on device.

  Each device concatenates its own shards (no cross-device or cross-host traffic, no host
  round-trip), so the global row order is device-major: row r of the result holds row
  `order[r]` of the batch-major concatenation. Returns (stacked, order [len(arrays) * B]).
  """
  first = arrays[0]
  sharding = first.sharding
  if (not isinstance(sharding, NamedSharding) or not sharding.spec
      or sharding.spec[0] != DATA or len(sharding.mesh.axis_names) != 1):
    raise ValueError(f"stack_rows needs arrays sharded on {DATA!r} rows, got {sharding}")
  nb, rows = len(arrays), first.shape[0]
  shards: dict[Any, list[jax.Array]] = {}
  for a in arrays:
    if a.shape != first.shape or a.sharding != sharding:
      raise ValueError(f"stack_rows: shapes/shardings differ: {a.shape} vs {first.shape}")
    for s in a.addressable_shards:
      shards.setdefault(s.device, []).append(s.data)
  local = [jax.numpy.concatenate(parts) for parts in shards.values()]
  out = jax.make_array_from_single_device_arrays((nb * rows,) + first.shape[1:], sharding, local)
  n = sharding.mesh.shape[DATA]
  order = np.arange(nb * rows).reshape(nb, n, rows // n).transpose(1, 0, 2).reshape(-1)
  return out, order


def gather_rows(arrays: Sequence[jax.Array]) -> np.ndarray:
  """Row-sharded global arrays `[B, ...]` -> numpy `[len(arrays) * B, ...]` in batch order, on
  every host: one transfer (and one all-gather across processes) for all of them."""
  stacked, order = stack_rows(arrays)
  host = to_host(stacked)
  out = np.empty_like(host)
  out[order] = host
  return out


def to_host(x: Any) -> Any:
  """Global arrays -> numpy on every host (all-gather across processes when needed)."""
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(x, tiled=True)
  return jax.tree.map(np.asarray, x)
