"""One module per `talkjax` subcommand; see talkjax/cli.py for how they are wired."""

from __future__ import annotations

import argparse

from talkjax.errors import MissingCapabilityError


def add_subcommand(subparsers, name: str, *, help: str, description: str = "",
                   examples: str = "") -> argparse.ArgumentParser:
  """A nested subcommand (e.g. `talkjax bench train`) formatted like the top level."""
  from talkjax.cli import _Formatter, _debug_parent  # avoid an import cycle at load time
  return subparsers.add_parser(
      name, help=help, description=description or help,
      epilog=("examples:\n" + examples) if examples else None,
      formatter_class=_Formatter, parents=[_debug_parent()])


def missing(command: str, capability: str, where: str) -> MissingCapabilityError:
  """The error of a command whose implementation has not landed yet (exit 2, no fake result)."""
  return MissingCapabilityError(
      f"`talkjax {command}` needs {capability}, which this version of talkjax does not have yet",
      fix=f"it arrives with {where}; `talkjax --help` lists what works today")
