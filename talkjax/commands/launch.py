"""Start multi-process and multi-host runs: on this machine, on a Cloud TPU slice, or on N GPU
nodes of any cloud.

- `local`: N JAX processes on this machine (CPU, fake devices, gloo collectives) to rehearse a
  pod or cluster run; each process gets the coordinator address, the process count and its
  id, and its own log; the launch fails loudly if any process fails.
- `tpu`: a TPU VM slice through gcloud (queued resources): code copied to every worker, the
  same `talkjax train` started on all of them, per-worker logs streamed and kept.
- `gpu`: N nodes x G GPUs through a SkyPilot task file generated from the experiment.
`--dry-run` prints every file, environment variable and command without calling any cloud
API. The mesh comes from the experiment config's preset for the topology (or a default,
or --mesh), checked against the slice and the batch before anything is created. A relaunch
with the same --workdir resumes from its last checkpoint, also on another number of hosts.
Details and worked examples: launch/README.md. On a cluster started by other means, set
TALKJAX_COORDINATOR, TALKJAX_NUM_PROCESSES and TALKJAX_PROCESS_ID per host (or
TALKJAX_DISTRIBUTED=auto on TPU pods / SLURM).
"""

from __future__ import annotations

import pathlib
import sys

from talkjax.commands import add_subcommand
from talkjax.errors import TalkjaxError

EXAMPLES = """\
  talkjax launch local --processes 2 --devices-per-process 2 -- talkjax train --config testbed/tiny --workdir /tmp/tb
  talkjax launch tpu --config memo/paper_512_stage2 --accelerator v5p-64 --zone us-east5-a \\
      --name memo-s2 --workdir gs://my-bucket/memo-s2 --env WANDB_API_KEY --dry-run
  talkjax launch gpu --config ifmdm/hdtf_512_stage2 --nodes 2 --gpus H100:8 --cloud gcp \\
      --name ifmdm-s2 --workdir gs://my-bucket/ifmdm-s2 --dry-run
  talkjax launch tpu --name memo-s2 --zone us-east5-a --delete
"""


def _cloud_arguments(sub):
  sub.add_argument("--config", help="experiment config (a shipped name or a path inside the project)")
  sub.add_argument("--name", required=True, help="the run's name: the slice or cluster is named after it")
  sub.add_argument("--workdir", help="checkpoints and metrics: gs://BUCKET/PATH (mounted on every "
                                     "host; needed for several hosts) or a path on a single host")
  sub.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides for the hosts' `talkjax train`")
  sub.add_argument("--mesh", nargs="+", default=[], metavar="AXIS=SIZE",
                   help="override the mesh (data, fsdp, tensor; one may be -1)")
  sub.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                   help="environment for every host; NAME alone forwards your own value "
                        "(for credentials: never written to a file, a log or the screen)")
  sub.add_argument("--spot", action="store_true", help="spot / preemptible capacity")
  sub.add_argument("--log-dir", default="launch-logs", help="local folder for logs and files")
  sub.add_argument("--dry-run", action="store_true",
                   help="print the plan (files, environment, commands); call nothing")
  sub.add_argument("--delete", action="store_true", help="tear the run's slice or cluster down")


def add_arguments(parser):
  parser.epilog = "examples:\n" + EXAMPLES
  targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
  from talkjax_launch import gpu, local, tpu
  sub = add_subcommand(targets, "local", help="N processes on this machine",
                       description=local.__doc__.split("\n\n")[0], examples=EXAMPLES)
  local.add_arguments(sub)
  sub = add_subcommand(targets, "tpu", help="a Cloud TPU VM slice (gcloud)",
                       description=tpu.__doc__, examples=EXAMPLES)
  _cloud_arguments(sub)
  sub.add_argument("--accelerator", help="e.g. v4-8, v5p-8, v5p-64, v5p-256, v6e-8, v6e-256")
  sub.add_argument("--zone", help="e.g. us-east5-a (required)")
  sub.add_argument("--project", help="Google Cloud project (default: gcloud's configured one)")
  sub.add_argument("--runtime-version", help="TPU VM image (default: the generation's)")
  sub = add_subcommand(targets, "gpu", help="N GPU nodes of any cloud (SkyPilot)",
                       description=gpu.__doc__, examples=EXAMPLES)
  _cloud_arguments(sub)
  sub.add_argument("--nodes", type=int, default=1, help="nodes (one JAX process each)")
  sub.add_argument("--gpus", default="H100:8", help="GPU type and count per node (default H100:8)")
  sub.add_argument("--cloud", help="gcp, aws, azure, lambda, kubernetes, ... (default: any)")
  sub.add_argument("--region", help="a region of that cloud")


def _require(args, names):
  missing = [f"--{n.replace('_', '-')}" for n in names if not getattr(args, n, None)]
  if missing:
    raise TalkjaxError(f"talkjax launch {args.target} needs {' '.join(missing)}",
                       fix=f"see talkjax launch {args.target} --help")


def run(args):
  from talkjax_launch import local
  if args.target == "local":
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if args.dry_run:
      print(local.render(cmd, args.processes, args.devices_per_process, pathlib.Path(args.log_dir)))
      return 0
    return local.launch(cmd, args.processes, args.devices_per_process,
                        pathlib.Path(args.log_dir), args.timeout)
  from talkjax_launch import gpu, plan, tpu
  module = tpu if args.target == "tpu" else gpu
  program = "gcloud" if args.target == "tpu" else "sky"
  if args.target == "tpu":
    _require(args, ["zone"])
  if args.delete:
    steps = module.teardown(args)
    if args.dry_run:
      print("\n".join(f"$ {plan.show(s)}" for s in steps))
      return 0
    plan.require_cli(program, module.INSTALL)
    return plan.execute(plan.Plan("", [], {}, (), steps), steps)
  _require(args, ["config", "workdir"] + (["accelerator"] if args.target == "tpu" else []))
  built = module.build(args)
  if args.dry_run:
    print(built.render())
    return 0
  plan.require_cli(program, module.INSTALL)
  code = plan.execute(built)
  if code == 0:
    print(f"launch: the run has ended; logs in {args.log_dir}/{args.name}/. The slice/cluster "
          f"stays up: {built.teardown_command}", file=sys.stderr)
  return code
