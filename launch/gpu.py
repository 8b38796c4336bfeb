"""Training on N GPU nodes through SkyPilot: one task file, generated from the experiment,
that SkyPilot provisions on any cloud it knows (GCP, AWS, Azure, Lambda, Kubernetes, ...).
SkyPilot gives each node its rank and the nodes' addresses; the task turns them into JAX's
coordinator address, process count and process id (TALKJAX_COORDINATOR, ...), one process
per node seeing its GPUs. A gs:// or s3:// workdir is mounted on every node by SkyPilot.

Why SkyPilot and not gcloud + ssh: it provisions, retries across zones, syncs the code, runs
the setup and the command on every node and streams their logs, on every major cloud, with
one file; by hand that is a cloud-specific scheduler to write and keep working.

  talkjax launch gpu --config ifmdm/hdtf_512_stage2 --nodes 2 --gpus H100:8 --cloud gcp \\
      --name ifmdm-s2 --workdir gs://my-bucket/ifmdm-s2 --dry-run
  talkjax launch gpu --name ifmdm-s2 --delete
"""

from __future__ import annotations

import json
import re

from talkjax.errors import TalkjaxError
from talkjax_launch import cloud, topologies
from talkjax_launch.plan import Plan, Step

COORDINATOR_PORT = 8476
INSTALL = "SkyPilot: pip install 'skypilot[gcp]' (or [aws], [azure], ...), then `sky check`"


def parse_gpus(text: str) -> tuple[str, int]:
  m = re.fullmatch(r"([A-Za-z][\w-]*):(\d+)", text or "")
  if not m or int(m.group(2)) < 1:
    raise TalkjaxError(f"--gpus {text!r} must be TYPE:COUNT per node", fix="e.g. --gpus H100:8")
  return m.group(1), int(m.group(2))


def teardown(args) -> list[Step]:
  return [Step(f"tear down the cluster {args.name}", ["sky", "down", args.name, "--yes"])]


def _yaml(value) -> str:
  return json.dumps(value)   # a JSON string is a YAML string


def task_file(run, args, gpu_type: str, gpus: int) -> str:
  lines = [f"# SkyPilot task written by `talkjax launch gpu` for {run.name}: `sky launch` reads it.",
           f"name: {run.name}", f"num_nodes: {run.topology.hosts}", "resources:",
           f"  accelerators: {gpu_type}:{gpus}"]
  if args.cloud:
    lines.append(f"  cloud: {args.cloud}")
  if args.region:
    lines.append(f"  region: {args.region}")
  if args.spot:
    lines.append("  use_spot: true")
  lines.append(f"workdir: {_yaml(str(cloud.PROJECT))}")   # SkyPilot syncs it to every node
  if run.mounts:
    lines.append("file_mounts:")
    for bucket, mount in run.mounts.items():
      lines += [f"  {mount}:", f"    source: {bucket}", "    mode: MOUNT"]
  if run.env or run.secret_env:
    lines.append("envs:")
    lines += [f"  {k}: {_yaml(v)}" for k, v in run.env.items()]
    # Forwarded ones get their value from `sky launch --env NAME`, never from this file.
    lines += [f"  {k}: null" for k in run.secret_env]
  lines += ["setup: |", "  bash launch/remote_setup.sh gpu", "run: |",
            '  export TALKJAX_COORDINATOR="$(echo "$SKYPILOT_NODE_IPS" | head -n1):'
            f'{COORDINATOR_PORT}"',
            '  export TALKJAX_NUM_PROCESSES="$SKYPILOT_NUM_NODES"',
            '  export TALKJAX_PROCESS_ID="$SKYPILOT_NODE_RANK"',
            f"  {cloud.train_command(run)}"]
  return "\n".join(lines) + "\n"


def build(args) -> Plan:
  gpu_type, gpus = parse_gpus(args.gpus)
  topology = topologies.gpu(args.nodes, gpus)
  run = cloud.prepare(args, topology, schemes=("gs://", "s3://"))
  task = f"{run.log_dir}/{run.name}.sky.yaml"
  forwarded = [a for name in run.secret_env for a in ("--env", name)]
  steps = [Step("write the SkyPilot task file", file=(task, task_file(run, args, gpu_type, gpus))),
           Step(f"provision {args.nodes} node(s) x {gpus} {gpu_type}, sync the code, set up "
                "every node and start the run (detached)",
                ["sky", "launch", "--cluster", run.name, task, "--yes", "--detach-run",
                 *forwarded]),
           Step("stream every node's output (kept in the log file)",
                ["sky", "logs", run.name], log=f"{run.log_dir}/nodes.log")]
  where = f", {args.cloud or 'any cloud'}{' ' + args.region if args.region else ''}, " \
          f"{gpu_type}"
  return Plan("talkjax launch gpu", cloud.summary(run, where), dict(run.env), run.secret_env,
              steps, teardown(args), f"talkjax launch gpu --name {run.name} --delete")
