"""Start multi-process and multi-host runs.

`local` starts N JAX processes on this machine (CPU, fake devices, gloo collectives) to
rehearse a pod or cluster run: each process gets the coordinator address, the process
count and its id, and its own log; the launch fails loudly if any process fails. On a real
cluster, start one process per host with TALKJAX_COORDINATOR, TALKJAX_NUM_PROCESSES and
TALKJAX_PROCESS_ID set (or TALKJAX_DISTRIBUTED=auto on TPU pods / SLURM).
"""

from __future__ import annotations

import pathlib

from talkjax.commands import add_subcommand

EXAMPLES = """\
  talkjax launch local --processes 2 --devices-per-process 2 -- talkjax train --config testbed/tiny --workdir /tmp/tb
  talkjax launch local --processes 4 --log-dir logs/ -- python my_script.py
"""


def add_arguments(parser):
  parser.epilog = "examples:\n" + EXAMPLES
  targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
  from talkjax_launch import local
  sub = add_subcommand(targets, "local", help="N processes on this machine",
                       description=local.__doc__.split("\n\n")[0], examples=EXAMPLES)
  local.add_arguments(sub)


def run(args):
  from talkjax_launch import local
  cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
  return local.launch(cmd, args.processes, args.devices_per_process, pathlib.Path(args.log_dir),
                      args.timeout)
