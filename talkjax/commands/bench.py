"""Measure speed. Results print as a table and, with --json FILE, are written as JSON.

Speed and memory goals are measured here, never in the test suite.
"""

from talkjax.commands import missing

EXAMPLES = """\
examples:
  talkjax bench train --config testbed/tiny --json bench.json
  talkjax bench audio
  talkjax bench sample --config experiments/ifmdm/synthtalk_tiny_stage2.py
"""


def add_arguments(parser):
  parser.add_argument("what", choices=["train", "audio", "sample"], help="what to measure")
  parser.add_argument("--config", help="experiment config (train, sample)")
  parser.add_argument("--json", help="write the results to this JSON file")


def run(args):
  raise missing("bench", "the benchmark for this target", "the matching issue's work")
