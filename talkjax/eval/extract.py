"""Feature extraction for the standard metrics, sharded over devices and hosts.

Every network of the suite (Inception for FID, I3D for FVD, SyncNet, the face-recognition
nets for CSIM) is a pure `fn(params, batch) -> features`. `map_batches` runs it over an
array of any length with one compiled shape: the batch is padded to a multiple of the
local device count and split over a 1-D `data` mesh, parameters replicated. On several
hosts each process takes its own share of the items (`host_share`) and `gather_rows` puts
the features of all processes back together in the original order.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


@functools.lru_cache(maxsize=None)
def _local_mesh() -> Mesh:
  return Mesh(np.array(jax.local_devices()), ("data",))


@functools.lru_cache(maxsize=32)
def _compiled(fn: Callable):
  mesh = _local_mesh()
  return jax.jit(fn, in_shardings=(NamedSharding(mesh, PartitionSpec()),
                                   NamedSharding(mesh, PartitionSpec("data"))),
                 out_shardings=NamedSharding(mesh, PartitionSpec("data")))


_PLACED: list = []   # [(params, their replicated copy)] of the last few networks


def _replicated(params):
  """Parameters copied to every local device once per network, not once per call (SyncNet
  is 60 MB and is called twice per clip)."""
  for source, placed in _PLACED:
    if source is params:
      return placed
  placed = jax.device_put(params, NamedSharding(_local_mesh(), PartitionSpec()))
  _PLACED.append((params, placed))   # holding `params` keeps its identity from being reused
  del _PLACED[:-4]
  return placed


def map_batches(fn: Callable, params, items: np.ndarray, batch_size: int = 32,
                progress: str | None = None) -> np.ndarray:
  """`fn(params, items[i:i+b])` over all of `items` (leading axis), concatenated as numpy.

  `fn` must be a module-level function (it keys the compile cache) returning one array
  with the batch as its leading axis. The last batch is zero-padded, so every call has the
  same shape; padded rows are dropped.
  """
  items = np.asarray(items)
  if len(items) == 0:
    raise ValueError("map_batches needs at least one item")
  ways = len(jax.local_devices())
  batch_size = -(-max(1, min(batch_size, len(items))) // ways) * ways
  run = _compiled(fn)
  params = _replicated(params)
  starts = range(0, len(items), batch_size)
  if progress:
    from tqdm import tqdm
    starts = tqdm(starts, desc=progress, unit="batch", leave=False)
  out = []
  for start in starts:
    chunk = items[start:start + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    # Placed explicitly: with several processes jit refuses numpy for a sharded argument.
    chunk = jax.device_put(chunk, NamedSharding(_local_mesh(), PartitionSpec("data")))
    out.append(np.asarray(run(params, chunk))[:batch_size - pad])
  return np.concatenate(out)


def host_share(count: int) -> np.ndarray:
  """The item indices this process extracts: every process_count-th, from its index."""
  return np.arange(jax.process_index(), count, jax.process_count())


def gather_rows(rows: np.ndarray, count: int) -> np.ndarray:
  """Reassemble per-process rows (each process holding `rows` for `host_share(count)`) into
  all `count` rows in item order, on every process."""
  if jax.process_count() == 1:
    return np.asarray(rows)
  from jax.experimental import multihost_utils
  per = -(-count // jax.process_count())
  padded = np.zeros((per,) + rows.shape[1:], rows.dtype)
  padded[:len(rows)] = rows
  every = np.asarray(multihost_utils.process_allgather(padded))  # (processes, per, ...)
  out = np.zeros((count,) + rows.shape[1:], rows.dtype)
  for p in range(jax.process_count()):
    idx = np.arange(p, count, jax.process_count())
    out[idx] = every[p, :len(idx)]
  return out
