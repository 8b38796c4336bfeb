"""The one exception family for user mistakes.

Anything a user can get wrong (a bad path, unreadable audio, a wrong shape, a config key
that does not exist, missing weights) raises `TalkjaxError`. The CLI prints its message as
one line and exits with status 2; programming errors keep their traceback.
"""

from __future__ import annotations

import os
from typing import Optional


class TalkjaxError(Exception):
  """A user mistake: says what is wrong, with which file, and how to fix it."""

  exit_code = 2

  def __init__(self, what: str, *, path: Optional[os.PathLike | str] = None,
               fix: Optional[str] = None):
    self.what = what
    self.path = None if path is None else os.fspath(path)
    self.fix = fix
    super().__init__(self.one_line())

  def one_line(self) -> str:
    parts = [f"{self.path}: {self.what}" if self.path else self.what]
    if self.fix:
      parts.append(f"fix: {self.fix}")
    return " -- ".join(parts)


class ConfigError(TalkjaxError):
  """A config file or a --set override is wrong."""


class MissingCapabilityError(TalkjaxError):
  """A command needs a part of talkjax that is not built yet."""


def first_line(error: BaseException, limit: int = 300) -> str:
  """The first line of an exception's message, cut to `limit` characters (tensorstore's
  read errors run to kilobytes of JSON spec after it), or its type's name when empty."""
  text = str(error).strip()
  return text.splitlines()[0][:limit] if text else type(error).__name__
