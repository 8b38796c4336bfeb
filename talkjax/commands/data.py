"""Build and inspect datasets.

SynthTalk, the built-in procedural talking-head dataset, builds in seconds; MEAD, HDTF and
DyConv builders read the real datasets' folder layouts.
"""

from talkjax.commands import missing

EXAMPLES = """\
examples:
  talkjax data build synthtalk --out data/synthtalk --identities 16 --clips 64 --seconds 2 --resolution 64
  talkjax data build synthtalk --out data/dyadic --dyadic
"""


def add_arguments(parser):
  parser.add_argument("action", choices=["build"], help="what to do")
  parser.add_argument("dataset", help="dataset name: synthtalk, mead, hdtf, dyconv")
  parser.add_argument("--out", required=True, help="output folder")


def run(args):
  raise missing("data", "the dataset builders", "the SynthTalk work (datasets/synthtalk/)")
