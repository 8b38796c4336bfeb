"""The `talkjax` command: the one place that wires the library together.

Each subcommand lives in `talkjax/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`; this file only builds the parser and turns user mistakes
(`TalkjaxError`) into one line on stderr and exit status 2. `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap

import talkjax
from talkjax.errors import TalkjaxError

# name -> (module, one-line summary). Modules are imported only to build their parser;
# they import JAX inside run(), so `talkjax --help` stays instant.
COMMANDS = {
    "demo": ("talkjax.commands.demo", "make a talking-head video from the built-in SynthTalk model"),
    "train": ("talkjax.commands.train", "train a model from an experiment config"),
    "sample": ("talkjax.commands.sample", "image + audio -> talking-head mp4 (one request or a manifest)"),
    "eval": ("talkjax.commands.eval", "judge a model against ground truth, or score a video"),
    "data": ("talkjax.commands.data", "build and inspect datasets (SynthTalk, MEAD, HDTF, DyConv)"),
    "convert": ("talkjax.commands.convert", "import pretrained weights (e.g. wav2vec2) into talkjax"),
    "serve": ("talkjax.commands.serve", "an HTTP API and web page that batch requests into sharded sampling"),
    "bench": ("talkjax.commands.bench", "measure speed: training, audio features, sampling"),
    "launch": ("talkjax.commands.launch", "start multi-process / multi-host runs"),
}

DESCRIPTION = """\
talkjax: audio-driven talking-head generation in JAX/Flax.

Model families: memo (latent video diffusion with linear-attention memory), ifmdm
(implicit motion autoencoder + motion diffusion transformer) and infp (dyadic
speaking/listening). Runs on TPU pods, GPU clusters and, small, on a laptop CPU.
"""

EPILOG = """\
examples:
  talkjax demo                                      # a talking video in minutes
  talkjax train --config testbed/tiny --dry-run     # resolved config + parameter count
  talkjax train --config experiments/testbed/tiny.py --set train.steps=50 --workdir /tmp/tb
  talkjax <command> --help                          # every command teaches with an example
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
  def __init__(self, prog):
    super().__init__(prog, max_help_position=32, width=100)


def _debug_parent() -> argparse.ArgumentParser:
  parent = argparse.ArgumentParser(add_help=False)
  # SUPPRESS keeps a subcommand's default from overwriting `talkjax --debug <cmd>`.
  parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                      help="show the full traceback on errors")
  return parent


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="talkjax", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
  parser.add_argument("--version", action="version", version=f"talkjax {talkjax.__version__}")
  parser.add_argument("--debug", action="store_true", default=False,
                      help="show the full traceback on errors")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  for name, (module_name, summary) in COMMANDS.items():
    module = importlib.import_module(module_name)
    sub = subparsers.add_parser(
        name, help=summary, description=textwrap.dedent(module.__doc__ or summary).strip(),
        epilog=textwrap.dedent(getattr(module, "EXAMPLES", "")).strip() or None,
        formatter_class=_Formatter, parents=[_debug_parent()])
    module.add_arguments(sub)
    sub.set_defaults(_run=module.run)
  return parser


def enable_compilation_cache() -> str | None:
  """Turns on JAX's persistent compilation cache, so a command's second run skips XLA
  compilation. TALKJAX_COMPILATION_CACHE=DIR picks the folder, =off disables it."""
  import os
  where = os.environ.get("TALKJAX_COMPILATION_CACHE", "~/.cache/talkjax/xla")
  if where.lower() in ("off", "0", "false", "none", ""):
    return None
  import jax
  where = os.path.expanduser(where)
  jax.config.update("jax_compilation_cache_dir", where)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return where


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if not getattr(args, "_run", None):
    parser.print_help()
    return 2
  try:
    enable_compilation_cache()
    return int(args._run(args) or 0)
  except TalkjaxError as e:
    if args.debug:
      raise
    print(f"talkjax {args.command}: error: {e.one_line()}", file=sys.stderr)
    return e.exit_code
  except KeyboardInterrupt:
    print(f"talkjax {args.command}: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
