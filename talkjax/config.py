"""Experiment configs: Python files under experiments/ and `--set key=value` overrides.

A config file defines `get_config(arg=None)` returning an `ml_collections.ConfigDict`; its
module docstring holds the exact command that runs it. A config is named either by path
(`experiments/testbed/tiny.py`) or, because experiments ship with the package, by its name
below experiments/ (`testbed/tiny`). `path.py:arg` passes `arg` to `get_config`.

Overrides are typed: the new value is parsed as the type the config already holds there, so
`--set train.steps=abc` fails before anything runs, and an unknown key fails with the
closest valid names.
"""

from __future__ import annotations

import ast
import difflib
import importlib.resources
import importlib.util
import os
import pathlib
from typing import Any, Iterable

import ml_collections

from talkjax.errors import ConfigError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def packaged_experiments_dir() -> pathlib.Path:
  """The experiments/ folder as installed (editable or not)."""
  return pathlib.Path(str(importlib.resources.files("talkjax_experiments")))


def list_experiments() -> list[str]:
  """Names of every shipped experiment config, e.g. 'testbed/tiny'."""
  root = packaged_experiments_dir()
  return sorted(
      str(p.relative_to(root).with_suffix(""))
      for p in root.rglob("*.py") if not p.name.startswith("_"))  # _shared.py: helpers


def resolve_config_path(spec: str) -> tuple[pathlib.Path, str | None]:
  """Splits 'path.py:arg' and finds the file on disk or among shipped experiments."""
  path_part, arg = spec, None
  if ":" in spec and not os.path.exists(spec):
    path_part, arg = spec.rsplit(":", 1)
  path = pathlib.Path(path_part).expanduser()
  if path.is_file():
    return path, arg
  name = path_part[:-3] if path_part.endswith(".py") else path_part
  if name.startswith("experiments/"):
    name = name[len("experiments/"):]
  shipped = packaged_experiments_dir() / f"{name}.py"
  if shipped.is_file():
    return shipped, arg
  known = list_experiments()
  close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
  hint = f"did you mean {', '.join(close)}?" if close else (
      f"shipped configs: {', '.join(known)}")
  raise ConfigError("config file not found", path=path_part,
                    fix=f"give a path to a config .py file or a shipped name; {hint}")


def load_config(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
  """Loads a config file, applies `key=value` overrides and locks the result."""
  path, arg = resolve_config_path(spec)
  module_name = f"talkjax_config_{abs(hash(str(path.resolve())))}"
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f"config file has a syntax error at line {e.lineno}: {e.msg}",
                      path=path, fix="correct the Python syntax") from e
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ConfigError("config file defines no get_config() function", path=path,
                      fix="define get_config(arg=None) returning an ml_collections.ConfigDict")
  config = get_config(arg) if arg is not None else get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(
        f"get_config() returned {type(config).__name__}, not an ml_collections.ConfigDict",
        path=path, fix="return ml_collections.ConfigDict(...) from get_config()")
  config.lock()
  apply_overrides(config, overrides, source=str(path))
  return config


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """Dotted leaf keys -> values (nested ConfigDicts are walked, not leaves)."""
  out = {}
  for key, value in config.items():
    dotted = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      out.update(flatten(value, dotted + "."))
    else:
      out[dotted] = value
  return out


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str],
                    source: str = "config") -> ml_collections.ConfigDict:
  """Applies 'a.b=value' strings in place, parsing each value as the existing type."""
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"override {item!r} is not of the form key=value",
                        fix="write --set train.steps=100")
    key, raw = item.split("=", 1)
    key = key.strip()
    leaves = flatten(config)
    if key not in leaves:
      _raise_unknown_key(key, leaves, config, source)
    new = parse_value(key, raw, leaves[key])
    parent = config
    *parents, leaf = key.split(".")
    for p in parents:
      parent = parent[p]
    with parent.unlocked():
      try:
        parent[leaf] = new
      except TypeError as e:  # ConfigDict's own type guard, e.g. FieldReference types
        raise ConfigError(f"--set {key}={raw}: {e}", fix="give a value of the existing type") from e
  return config


def _raise_unknown_key(key, leaves, config, source):
  groups = set()
  for k in leaves:
    parts = k.split(".")
    groups.update(".".join(parts[:i]) for i in range(1, len(parts)))
  if key in groups:
    raise ConfigError(f"--set {key}=... names a group, not a value", path=source,
                      fix=f"set one of its keys, e.g. {sorted(k for k in leaves if k.startswith(key + '.'))[:3]}")
  close = difflib.get_close_matches(key, list(leaves), n=3, cutoff=0.5)
  if not close:  # a typo in the last component only is the common case
    last = key.rsplit(".", 1)[-1]
    close = [k for k in leaves if difflib.get_close_matches(last, [k.rsplit(".", 1)[-1]], cutoff=0.6)][:3]
  hint = f"closest valid keys: {', '.join(close)}" if close else (
      "run with --dry-run to list every key")
  raise ConfigError(f"unknown config key {key!r}", path=source, fix=hint)


def parse_value(key: str, raw: str, current: Any) -> Any:
  """Parses `raw` as the type of `current`; raises ConfigError naming the key."""
  text = raw.strip()

  def bad(expected: str):
    return ConfigError(f"--set {key}={raw!r}: expected {expected} (the config holds {current!r})",
                       fix=f"give {expected}")

  if isinstance(current, bool):
    if text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise bad("true or false")
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      try:
        as_float = float(text)
      except ValueError:
        raise bad("an integer") from None
      if as_float.is_integer():  # accepts 1e3 for an integer field
        return int(as_float)
      raise bad("an integer") from None
  if isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      raise bad("a number") from None
  if isinstance(current, str):
    return raw
  if isinstance(current, (tuple, list)):
    value = _literal(text)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
      value = (value,)
    if not isinstance(value, (tuple, list)):
      raise bad("a list such as (1, 2)")
    return type(current)(value)
  if isinstance(current, dict):
    raise ConfigError(f"--set {key}=...: cannot replace a whole mapping",
                      fix=f"set single entries as {key}.NAME=VALUE")
  if current is None:  # untyped field: a Python literal, else the raw string
    value = _literal(text)
    return raw if value is _NOT_LITERAL else value
  raise bad(type(current).__name__)


_NOT_LITERAL = object()


def _literal(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return _NOT_LITERAL


def to_text(config: ml_collections.ConfigDict) -> str:
  """The resolved config as sorted `key = value` lines (what --dry-run prints)."""
  return "\n".join(f"{k} = {v!r}" for k, v in sorted(flatten(config).items()))


def with_resolution(config: ml_collections.ConfigDict, resolution: int | None
                    ) -> ml_collections.ConfigDict:
  """A copy of `config` with model.resolution set (None or the same size: `config` itself);
  a generation hook's `from_config(..., resolution=)` for benchmarks at other sizes."""
  if resolution is None or int(resolution) == int(config.model.resolution):
    return config
  return apply_overrides(ml_collections.ConfigDict(config.to_dict()),
                         [f"model.resolution={int(resolution)}"])
