"""Device mesh, logical-axis sharding, sharded initialisation and global batches.

Every parameter and large activation carries logical axis names (`embed`, `heads`, `batch`,
...). One rules table per config (`config.axis_rules`) maps them onto the mesh axes
`data`, `fsdp` and `tensor`; nothing else in talkjax decides a layout. The same code runs
on 1 CPU device, on 8 fake CPU devices, on a TPU pod slice and on N nodes x 8 GPUs.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from talkjax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
Rules = Sequence[tuple[str, Any]]


def mesh_shape(mesh_config, device_count: int) -> tuple[int, ...]:
  """Resolves the config's axis sizes (one may be -1 = fill) against `device_count`."""
  sizes = [int(mesh_config[a]) for a in MESH_AXES]
  fills = [i for i, s in enumerate(sizes) if s == -1]
  if len(fills) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ConfigError(f"mesh sizes {dict(zip(MESH_AXES, sizes))} are invalid",
                      fix="give positive sizes, at most one of them -1 (= all remaining devices)")
  known = math.prod(s for s in sizes if s != -1)
  if fills:
    if device_count % known:
      raise ConfigError(f"{device_count} devices cannot be split into a mesh with fixed axes "
                        f"{dict(zip(MESH_AXES, sizes))}",
                        fix=f"make the product of the fixed mesh sizes divide {device_count}")
    sizes[fills[0]] = device_count // known
  if math.prod(sizes) != device_count:
    raise ConfigError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices "
                      f"but {device_count} are present",
                      fix="set one mesh size to -1, e.g. --set mesh.data=-1")
  return tuple(sizes)


def parse_mesh(items: Sequence[str] | Mapping | None, base) -> ml_collections.ConfigDict:
  """`base` (a config's mesh) with overrides like ["fsdp=8", "data=1"]."""
  mesh = ml_collections.ConfigDict(dict(base))
  pairs = items.items() if isinstance(items, Mapping) else [
      tuple(i.split("=", 1)) if "=" in i else (i, None) for i in (items or ())]
  for name, value in pairs:
    if name not in MESH_AXES or value is None:
      raise ConfigError(f"--mesh expects AXIS=SIZE with AXIS in {MESH_AXES}, got "
                         f"{name}={value}", fix="e.g. --mesh data=1 fsdp=8")
    try:
      mesh[name] = int(value)
    except ValueError:
      raise ConfigError(f"--mesh {name}={value!r} is not a whole number",
                         fix="e.g. --mesh data=1 fsdp=-1 (-1: all remaining devices)") from None
  return mesh


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, fsdp, tensor) mesh over all devices (of all processes) or the given ones.

  `jax.make_mesh` orders devices by the physical topology (TPU ICI, GPU NVLink islands)
  so that the innermost axis, `tensor`, stays on the fastest links.
  """
  devices = list(devices) if devices is not None else jax.devices()
  shape = mesh_shape(mesh_config, len(devices))
  types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  return jax.make_mesh(shape, MESH_AXES, axis_types=types, devices=devices)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Rules):
  """Makes `mesh` and the logical rules current, so with_logical_constraint resolves."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(tuple(tuple(r) for r in rules)):
    yield


def logical_to_sharding(logical_specs: Any, mesh: Mesh, rules: Rules) -> Any:
  """A tree of logical PartitionSpecs -> the same tree of NamedShardings."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, tuple(tuple(r) for r in rules))


def logical_specs_of(abstract_tree: Any) -> Any:
  """Logical PartitionSpecs of a tree whose leaves may be boxed with logical names.

  Unboxed leaves (step counters, optimizer scalars) are replicated.
  """
  return nn.get_partition_spec(abstract_tree)


def shard_init(init_fn: Callable[..., Any], mesh: Mesh, rules: Rules, *args):
  """Runs `init_fn(*args)` directly into its sharded layout.

  The output shapes and logical names come from `jax.eval_shape` (no memory used); the
  real initialisation is then jitted with those output shardings, so no parameter is ever
  materialised whole on one device. Returns (unboxed values, their shardings).
  """
  abstract = jax.eval_shape(init_fn, *args)
  shardings = logical_to_sharding(logical_specs_of(abstract), mesh, rules)
  with use_mesh(mesh, rules):
    values = jax.jit(lambda *a: nn.meta.unbox(init_fn(*a)), out_shardings=shardings)(*args)
  return values, shardings


def check_divisible(shapes: Mapping[str, tuple], shardings: Mapping[str, NamedSharding]) -> None:
  """Every array splits evenly over the mesh axes its sharding names, or a clear error
  naming the first one that does not (instead of XLA's IndivisibleError mid-compile)."""
  for path, shape in shapes.items():
    sharding = shardings[path]
    for dim, axes in zip(shape, sharding.spec):
      axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
      ways = math.prod(sharding.mesh.shape[a] for a in axes)
      if dim % ways:
        raise ConfigError(
            f"parameter {path} of shape {tuple(shape)} cannot be split {ways} ways over mesh "
            f"axes {axes} (mesh {dict(sharding.mesh.shape)})",
            fix="pick mesh sizes that divide the model's dimensions (e.g. fewer tensor or "
                "fsdp devices), or map that logical axis to no mesh axis in axis_rules")


def batch_shardings(batch_axes: Mapping[str, Sequence[str | None]], mesh: Mesh,
                    rules: Rules) -> dict[str, NamedSharding]:
  specs = {k: PartitionSpec(*axes) for k, axes in batch_axes.items()}
  return logical_to_sharding(specs, mesh, rules)


def global_batch(local_batch: Mapping[str, np.ndarray],
                 shardings: Mapping[str, NamedSharding]) -> dict[str, jax.Array]:
  """Assembles the global batch from each process's local slice (leading axis = batch)."""
  out = {}
  for key, value in local_batch.items():
    if key not in shardings:
      continue  # entries the model does not consume (file names, ...) stay on the host
    out[key] = jax.make_array_from_process_local_data(shardings[key], np.asarray(value))
  return out


# --- multi-process ------------------------------------------------------------------------

# Read by initialize_distributed(); launch/local.py sets them for every process it starts.
ENV_COORDINATOR = "TALKJAX_COORDINATOR"
ENV_NUM_PROCESSES = "TALKJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "TALKJAX_PROCESS_ID"


def initialize_distributed() -> None:
  """Joins this process to a multi-process JAX run; a no-op for a single process.

  - TPU pod slices (several TPU workers) and SLURM jobs with several tasks are detected
    from their environment, and JAX's own cluster detection does the rest; any other
    cluster JAX knows (Open MPI, Kubernetes) is used with `TALKJAX_DISTRIBUTED=auto`.
  - Anything else (several processes on one machine, hand-started GPU nodes): set
    TALKJAX_COORDINATOR=host:port, TALKJAX_NUM_PROCESSES and TALKJAX_PROCESS_ID (the
    standard JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID are read too).
  On CPU the collectives use gloo.
  """
  if jax.distributed.is_initialized():
    return
  env = os.environ
  coordinator = env.get(ENV_COORDINATOR) or env.get("JAX_COORDINATOR_ADDRESS")
  num = env.get(ENV_NUM_PROCESSES) or env.get("JAX_NUM_PROCESSES")
  pid = env.get(ENV_PROCESS_ID) or env.get("JAX_PROCESS_ID")
  multi_host_tpu = len(env.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1
  slurm = int(env.get("SLURM_NTASKS", "1") or 1) > 1
  if env.get("TALKJAX_DISTRIBUTED") == "auto" or multi_host_tpu or slurm:
    jax.distributed.initialize()
    return
  if coordinator is None and num is None:
    return  # single process
  if coordinator is None or num is None or pid is None:
    raise ConfigError(
        "multi-process run is half-configured: coordinator, process count and process id "
        f"are {coordinator!r}, {num!r}, {pid!r}",
        fix=f"set all of {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID} "
            "(launch/local.py does this for you)")
  if int(num) == 1:
    return
  if env.get("JAX_PLATFORMS", "").startswith("cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=int(num),
                             process_id=int(pid))


def peak_device_bytes() -> int | None:
  """The most memory any local device has held at once (its allocator's peak, GPU and TPU),
  or None where the backend does not report it (CPU)."""
  peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
  peaks = [int(p) for p in peaks if p is not None]
  return max(peaks) if peaks else None
