"""What the TPU and GPU launchers share: the experiment, its mesh on the slice, the workdir,
the training command every host runs, and the project's code as one archive."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shlex

from talkjax import parallel
from talkjax.errors import TalkjaxError
from talkjax_launch import topologies
from talkjax_launch.plan import split_env

MOUNT_ROOT = "/mnt/talkjax"     # buckets are mounted here on every host
REMOTE_CODE = "~/talkjax"       # where the project is unpacked on a TPU VM
PROJECT = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Run:
  name: str
  config_arg: str               # as the hosts will name it (a shipped name or a project path)
  config: object
  topology: topologies.Topology
  mesh: dict
  mesh_source: str
  overrides: list[str]          # --set items for the hosts' `talkjax train`
  workdir: str                  # as the user gave it
  host_workdir: str             # as the hosts see it
  bucket: str | None            # "gs://name" when the workdir is in a bucket
  mounts: dict                  # every bucket the run names -> where the hosts mount it
  env: dict
  secret_env: tuple
  log_dir: str


def check_name(name: str) -> str:
  if not re.fullmatch(r"[a-z]([-a-z0-9]{0,48}[a-z0-9])?", name or ""):
    raise TalkjaxError(f"--name {name!r}: cloud resource names are lowercase letters, digits "
                       "and dashes, starting with a letter (at most 50)", fix="e.g. --name memo-s2-run1")
  return name


def config_for_hosts(config_arg: str, overrides: list[str]):
  """Loads the config here (every mistake shows now) and names it as the hosts will find it."""
  from talkjax.config import load_config
  config = load_config(config_arg, overrides)
  path = pathlib.Path(config_arg)
  if path.suffix == ".py":
    resolved = path.resolve()
    try:
      return resolved.relative_to(PROJECT).as_posix(), config
    except ValueError:
      raise TalkjaxError(f"--config {config_arg} is outside the project, so the hosts would not "
                         "have it", path=config_arg,
                         fix=f"put it under {PROJECT / 'experiments'} (it is copied with the code)"
                         ) from None
  return config_arg, config


def workdir_on_hosts(workdir: str, topology, schemes=("gs://",)) -> tuple[str, str | None]:
  """(the path every host writes to, the bucket mounted there or None)."""
  for scheme in schemes:
    if workdir.startswith(scheme):
      rest = workdir[len(scheme):].strip("/")
      bucket, _, path = rest.partition("/")
      if not bucket:
        raise TalkjaxError(f"--workdir {workdir} names no bucket", fix=f"e.g. {scheme}my-bucket/runs/run1")
      mount = mount_point(f"{scheme}{bucket}")
      return (f"{mount}/{path}" if path else mount), f"{scheme}{bucket}"
  if "://" in workdir:
    raise TalkjaxError(f"--workdir {workdir}: this launcher mounts {', '.join(schemes)} buckets",
                       fix=f"e.g. {schemes[0]}my-bucket/runs/run1")
  if topology.hosts > 1:
    raise TalkjaxError(f"--workdir {workdir} is a local path, but the run spans "
                       f"{topology.hosts} hosts: each would keep its own checkpoints",
                       fix=f"use a bucket every host mounts, e.g. {schemes[0]}my-bucket/runs/run1")
  return workdir, None


def prepare(args, topology, schemes=("gs://",)) -> Run:
  name = check_name(args.name)
  config_arg, config = config_for_hosts(args.config, list(args.overrides))
  mesh, source = topologies.mesh_for(config, topology, dict(parallel.parse_mesh(args.mesh, {})))
  preset = dict(config.launch.presets.get(topology.name, {})) \
      if source.startswith("the config") else {}
  overrides = list(args.overrides)
  if "batch_size" in preset and not any(o.startswith("data.batch_size=") for o in overrides):
    overrides.append(f"data.batch_size={int(preset['batch_size'])}")
    config.data.batch_size = int(preset["batch_size"])
  topologies.check_batch(config, mesh)
  host_workdir, bucket = workdir_on_hosts(args.workdir, topology, schemes)
  mounts = {bucket: mount_point(bucket)} if bucket else {}
  # A bucket path in an override (e.g. init_from.workdir=gs://b/stage1) is read through the
  # same kind of mount.
  for i, item in enumerate(overrides):
    key, eq, value = item.partition("=")
    if eq and value.startswith(schemes):
      path, other = workdir_on_hosts(value, topologies.Topology("", 1, 1), schemes)
      mounts[other] = mount_point(other)
      overrides[i] = f"{key}={path}"
  env, secret = split_env(args.env)
  return Run(name, config_arg, config, topology, mesh, source,
             overrides + [f"mesh.{a}={mesh[a]}" for a in topologies.MESH_AXES],
             args.workdir, host_workdir, bucket, mounts, env, secret,
             os.path.join(args.log_dir, name))


def mount_point(bucket: str) -> str:
  return f"{MOUNT_ROOT}/{bucket.split('://', 1)[1]}"


def train_command(run: Run) -> str:
  """What every host runs (after its environment is set)."""
  argv = ["python3", "-m", "talkjax.cli", "train", "--config", run.config_arg,
          "--workdir", run.host_workdir, "--set", *run.overrides]
  return " ".join(shlex.quote(a) for a in argv)


def summary(run: Run, where: str) -> list[tuple[str, str]]:
  t = run.topology
  lines = [("run", f"{run.name} on {t.name}: {t.devices} devices, {t.hosts} host(s) x "
                   f"{t.devices_per_host}{where}"),
           ("config", f"{run.config_arg} ({run.config.family}, global batch "
                      f"{run.config.data.batch_size})"),
           ("mesh", " ".join(f"{a}={run.mesh[a]}" for a in topologies.MESH_AXES)
                    + f"  ({run.mesh_source})"),
           ("workdir", run.workdir + (f"  (mounted at {run.host_workdir} on every host)"
                                      if run.bucket else "  (on the host's own disk: it goes "
                                      "with the machine; copy it off before --delete)")),
           ("resume", "relaunching with the same --workdir resumes from its last checkpoint, "
                      "on any slice (parameters are resharded)"),
           ("logs", f"{run.log_dir}/")]
  return lines


def pack_step(run: Run):
  from talkjax_launch.plan import Step
  archive = f"{run.log_dir}/source.tar.gz"
  return archive, Step("pack the project's code (the files git tracks, and new ones it does "
                       "not ignore)", ["python3", "-m", "talkjax_launch.pack", archive])
