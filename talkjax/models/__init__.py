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


# family of the final training stage -> "module:class" of its generator. The class has
# `from_workdir(dir)`, `from_bundle(file)`, `resolution`, `fps`, `window`, `knobs(**kw)` (a
# hashable settings object whose `compiled_part()` is what a batch must share), `accepts`
# (the optional inputs it takes) and `generate(images, audio, seed=, knobs=, chunks=)`.
GENERATORS = {
    "ifmdm_stage2": "talkjax.models.ifmdm_generate:IFMDMGenerator",
}


def load_generator(checkpoint):
  """The generator saved in a training folder or a single-file bundle."""
  import json
  import pathlib
  from talkjax.errors import TalkjaxError
  path = pathlib.Path(checkpoint).expanduser()
  if not path.exists():
    raise TalkjaxError("checkpoint not found", path=path,
                       fix="pass a training folder (the last stage's --workdir) or a model file")
  if path.is_file():
    from flax.serialization import msgpack_restore
    try:
      family = json.loads(msgpack_restore(path.read_bytes())["config"])["family"]
    except Exception as e:  # any undecodable file: msgpack and json raise many types
      raise TalkjaxError(f"not a talkjax model file ({type(e).__name__})", path=path,
                         fix="write one with `talkjax convert bundle`") from e
  else:
    from talkjax.train.restore import checkpoint_config
    family = checkpoint_config(path)[0].family
  if family not in GENERATORS:
    raise TalkjaxError(f"a {family!r} checkpoint does not generate videos", path=path,
                       fix="pass the folder of a generator's last stage (IF-MDM: stage 2); "
                           f"generators: {sorted(GENERATORS)}")
  module_name, cls = GENERATORS[family].split(":")
  gen_cls = getattr(importlib.import_module(module_name), cls)
  return gen_cls.from_bundle(path) if path.is_file() else gen_cls.from_workdir(path)
