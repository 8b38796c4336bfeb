"""Model families and the registry that finds one by `config.family`.

Adding a family touches its module here, its experiments and one line of `FAMILIES`;
never the trainer or the pipelines.
"""

from __future__ import annotations

import difflib
import importlib

from talkjax.errors import ConfigError

# family name -> "module:factory"; the factory takes the config and returns a Task.
FAMILIES = {
    "testbed": "talkjax.models.testbed:TestbedTask",
    "ifmdm_stage1": "talkjax.models.ifmdm:Stage1Task",
    "ifmdm_stage2": "talkjax.models.ifmdm:Stage2Task",
}


def make_task(config):
  family = config.get("family")
  if family not in FAMILIES:
    close = difflib.get_close_matches(str(family), list(FAMILIES), n=1)
    raise ConfigError(f"unknown model family {family!r}",
                      fix=f"set family to one of {sorted(FAMILIES)}"
                      + (f" (did you mean {close[0]!r}?)" if close else ""))
  module_name, factory = FAMILIES[family].split(":")
  return getattr(importlib.import_module(module_name), factory)(config)
