"""Start multi-process and multi-host runs.

`local` starts N JAX processes on this machine (CPU, fake devices, gloo collectives) to
rehearse a pod or cluster run; each process gets its own log and the launch fails loudly if
any process fails.
"""

from talkjax.commands import missing

EXAMPLES = """\
examples:
  talkjax launch local --processes 2 --devices-per-process 2 -- talkjax train --config testbed/tiny --workdir /tmp/tb
"""


def add_arguments(parser):
  parser.add_argument("target", choices=["local"], help="where to launch")
  parser.add_argument("--processes", type=int, default=2)
  parser.add_argument("--devices-per-process", type=int, default=1)
  parser.add_argument("cmd", nargs="*", help="the command each process runs (after --)")


def run(args):
  raise missing("launch", "the multi-process launcher", "the scale-out training work (launch/local.py)")
