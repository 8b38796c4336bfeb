"""What a cloud accelerator request means in JAX devices and hosts, and its device mesh.

TPU slices (Cloud TPU accelerator types, from the Cloud TPU system-architecture pages):
- v4 and v5p names count TensorCores: v5p-64 is 32 chips. Each chip is one JAX device
  (megacore), and each TPU VM host holds 4 chips: v5p-64 has 8 hosts, v5p-256 32, v4-8 one.
- v5e (v5litepod) and v6e names count chips (one TensorCore each): up to 8 chips is one host
  (v6e-8: one VM with 8 chips); larger slices are made of 4-chip VMs (v6e-256: 64 hosts).
The host counts here are what a dry run shows; a real launch reads the slice's own hosts
(`gcloud compute tpus tpu-vm describe`) before it starts one process on each.
GPU clusters: N nodes x G GPUs, one JAX process per node seeing its G GPUs.

The mesh of a run: the experiment config's preset for the topology
(`config.launch.presets["v5p-64"] = {"data": 1, "fsdp": 32, "tensor": 1}`, -1 allowed once,
optionally with a "batch_size" for that slice),
else the default: FSDP over all devices within a host and data parallelism across hosts
(fsdp = devices per host, data = hosts), the layout whose collectives stay on the fastest
links. `--mesh` overrides both.
"""

from __future__ import annotations

import dataclasses
import re

from talkjax import parallel
from talkjax.errors import ConfigError, TalkjaxError
from talkjax.parallel import MESH_AXES
# Preset names the experiment configs may carry (any other valid name works too).
PRESETS = ("v4-8", "v5p-8", "v5p-64", "v5p-256", "v6e-8", "v6e-256")


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str              # e.g. "v5p-64" or "gpu-2x8"
  devices: int           # JAX devices in the whole run
  hosts: int             # processes (one per host)

  @property
  def devices_per_host(self) -> int:
    return self.devices // self.hosts


def tpu(accelerator: str) -> Topology:
  m = re.fullmatch(r"(v4|v5p|v5litepod|v5e|v6e)-(\d+)", accelerator or "")
  if not m:
    raise TalkjaxError(f"unknown TPU accelerator type {accelerator!r}",
                       fix="e.g. --accelerator v4-8, v5p-8, v5p-64, v5p-256, v6e-8 or v6e-256")
  generation, count = m.group(1), int(m.group(2))
  if generation in ("v4", "v5p"):
    if count < 8 or count % 8:
      raise TalkjaxError(f"{accelerator}: {generation} slices have a multiple of 8 TensorCores",
                         fix=f"e.g. {generation}-8, {generation}-64")
    chips = count // 2
    hosts = chips // 4
  else:
    if count not in (1, 4, 8) and (count < 16 or count % 16):
      raise TalkjaxError(f"{accelerator}: {generation} slices have 1, 4, 8 or a multiple of 16 "
                         "chips", fix=f"e.g. {generation}-8, {generation}-256")
    chips = count
    hosts = 1 if chips <= 8 else chips // 4
  return Topology(accelerator, chips, hosts)


def gpu(nodes: int, gpus_per_node: int) -> Topology:
  if nodes < 1 or gpus_per_node < 1:
    raise TalkjaxError(f"{nodes} node(s) x {gpus_per_node} GPU(s) is not a cluster",
                       fix="e.g. --nodes 2 --gpus H100:8")
  return Topology(f"gpu-{nodes}x{gpus_per_node}", nodes * gpus_per_node, nodes)


def resolve(sizes: dict, devices: int, where: str) -> dict:
  """Mesh sizes with the -1 filled in (the trainer's own rule, parallel.mesh_shape), checked
  to use exactly the slice's `devices`."""
  sizes = {a: int(sizes.get(a, 1)) for a in MESH_AXES}
  try:
    return dict(zip(MESH_AXES, parallel.mesh_shape(sizes, devices)))
  except ConfigError as e:
    raise TalkjaxError(f"{where}: {e.what} (the slice has {devices} devices)", fix=e.fix) from None


def mesh_for(config, topology: Topology, override: dict | None = None) -> tuple[dict, str]:
  """(mesh sizes, where they came from) for this config on this topology."""
  if override:
    return resolve(override, topology.devices, "--mesh"), "--mesh"
  presets = config.launch.presets if "launch" in config else {}
  if topology.name in presets:
    where = f"the config's launch.presets[{topology.name!r}]"
    sizes = {a: v for a, v in dict(presets[topology.name]).items() if a in MESH_AXES}
    return resolve(sizes, topology.devices, where), where
  default = {"data": topology.hosts, "fsdp": topology.devices_per_host, "tensor": 1}
  return resolve(default, topology.devices, "default"), \
      "the default: FSDP within each host, data parallel across hosts"


def check_batch(config, mesh: dict) -> None:
  """The global batch must split evenly over the batch axes (data x fsdp)."""
  batch = int(config.data.batch_size) if "data" in config and "batch_size" in config.data else None
  ways = mesh["data"] * mesh["fsdp"]
  if batch is not None and batch % ways:
    raise TalkjaxError(f"the global batch of {batch} does not split over data x fsdp = {ways} "
                       "devices", fix=f"--set data.batch_size={ways * max(1, batch // ways)} "
                                      "(or another mesh)")
