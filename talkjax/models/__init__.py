"""Model families and the registry that finds one by `config.family`.

Adding a family touches its package here, its experiments and the lines of this registry;
never the trainer, the pipelines or the commands (see talkjax/models/README.md). Families
are imported only when asked for, so importing the registry costs nothing.
"""

from __future__ import annotations

import difflib
import importlib
import json
import pathlib

from talkjax.errors import ConfigError, TalkjaxError

# family name -> "module:factory"; the factory takes the config and returns a Task.
FAMILIES = {
    "testbed": "talkjax.models.testbed:TestbedTask",
    "testbed_talker": "talkjax.models.testbed_talker:TalkerTask",
    "ifmdm_stage1": "talkjax.models.ifmdm.tasks:Stage1Task",
    "ifmdm_stage2": "talkjax.models.ifmdm.tasks:Stage2Task",
    "memo": "talkjax.models.memo.tasks:MemoTask",
    "infp_stage1": "talkjax.models.infp.tasks:Stage1Task",
    "infp_stage2": "talkjax.models.infp.tasks:Stage2Task",
    "vae": "talkjax.models.vae.tasks:VAETask",
    "audio_emotion": "talkjax.models.audio_emotion.tasks:AudioEmotionTask",
}

# family of a generator's final training stage -> "module:class" of its generation hook
# (talkjax/family.py). The class has `from_workdir(dir) -> (hook, params)`,
# `from_config(config, linked=None, resolution=None) -> hook` and, optionally,
# `from_legacy_file(data) -> (hook, params)` for model files of an older layout.
GENERATORS = {
    "testbed_talker": "talkjax.models.testbed_talker:TalkerGeneration",
    "ifmdm_stage2": "talkjax.models.ifmdm.generate:IFMDMGeneration",
    "memo": "talkjax.models.memo.generate:MemoGeneration",
    "infp_stage2": "talkjax.models.infp.generate:INFPGeneration",
}

# What `talkjax demo --family F` shows and how `talkjax demo --family F --train` remakes
# it: the shipped model file (talkjax/assets/), and the stages to train in order, each
# with the overrides that point it at an earlier stage's training folder
# ({config key: stage name}). The first entry is the default.
DEMOS = {
    "ifmdm": {
        "model": "ifmdm_synthtalk_tiny.msgpack",
        "stages": (
            ("stage1", "ifmdm/synthtalk_tiny_stage1", {}),
            ("stage2", "ifmdm/synthtalk_tiny_stage2", {"stage1.workdir": "stage1"}),
        ),
    },
    "infp": {
        "model": "infp_synthtalk_tiny.msgpack",
        "stages": (
            ("stage1", "infp/synthtalk_tiny_stage1", {}),
            ("stage2", "infp/synthtalk_tiny_stage2", {"stage1.workdir": "stage1"}),
        ),
    },
    "memo": {
        "model": "memo_synthtalk_tiny.msgpack",
        "stages": (
            ("vae", "memo/synthtalk_tiny_vae", {}),
            ("stage1", "memo/synthtalk_tiny_stage1", {"model.weights.vae": "vae"}),
            ("emotion", "memo/synthtalk_tiny_emotion", {}),
            ("warmup", "memo/synthtalk_tiny_stage2:warmup",
             {"model.weights.vae": "vae", "init_from.workdir": "stage1",
              "model.emotion.classifier": "emotion"}),
            ("stage2", "memo/synthtalk_tiny_stage2",
             {"model.weights.vae": "vae", "init_from.workdir": "warmup",
              "model.emotion.classifier": "emotion"}),
        ),
    },
}


def _load(entry: str):
  module_name, attr = entry.split(":")
  return getattr(importlib.import_module(module_name), attr)


def make_task(config):
  family = config.get("family")
  if family not in FAMILIES:
    close = difflib.get_close_matches(str(family), list(FAMILIES), n=1)
    raise ConfigError(f"unknown model family {family!r}",
                      fix=f"set family to one of {sorted(FAMILIES)}"
                      + (f" (did you mean {close[0]!r}?)" if close else ""))
  return _load(FAMILIES[family])(config)


def generator_class(family: str, path=None):
  if family not in GENERATORS:
    raise TalkjaxError(f"a {family!r} model does not generate videos", path=path,
                       fix="pass the training folder of a generator's last stage (IF-MDM: "
                           f"stage 2) or a model file; generators: {sorted(GENERATORS)}")
  return _load(GENERATORS[family])


def load_generator(checkpoint, *, ema: bool = True):
  """(hook, params) of a training folder (a generator's last stage) or a model file."""
  from talkjax import bundle, stages
  path = pathlib.Path(checkpoint).expanduser()
  if not path.exists():
    raise TalkjaxError("checkpoint not found", path=path,
                       fix="pass a training folder (the last stage's --workdir) or a model file")
  if path.is_file():
    model = bundle.read(path)
    cls = generator_class(model.family, path)
    if model.params is None:
      if not hasattr(cls, "from_legacy_file"):
        raise TalkjaxError("this model file has a layout this talkjax cannot read", path=path,
                           fix="write it again with `talkjax convert bundle`")
      return cls.from_legacy_file(model.raw)
    return cls.from_config(model.config, model.linked), model.params
  converted = converted_family(path)
  if converted:    # imported weights (e.g. `talkjax convert memo`), not a training folder
    return generator_class(converted, path).from_converted(path)
  family = stages.checkpoint_config(path)[0].family
  return generator_class(family, path).from_workdir(path, ema=ema)


def converted_family(path: pathlib.Path) -> str | None:
  """The family of a folder of converted weights (its config.json names one), else None."""
  meta = path / "config.json"
  if (path / "checkpoints").is_dir() or not meta.is_file():
    return None
  try:
    return json.loads(meta.read_text()).get("family") or None
  except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
    return None


def random_generator(config, *, resolution: int | None = None, seed: int = 0):
  """(hook, random params) of a generator's final-stage config (speed measurements)."""
  import flax.linen as nn
  import jax
  hook = generator_class(config.family).from_config(config, resolution=resolution)
  params = nn.meta.unbox(jax.jit(hook.init)(jax.random.PRNGKey(seed)))
  return hook, params


def demo_recipe(family: str | None = None) -> dict:
  family = family or next(iter(DEMOS))
  if family not in DEMOS:
    raise TalkjaxError(f"no demo for the family {family!r}", fix=f"use one of {sorted(DEMOS)}")
  return DEMOS[family]


def shipped_demo_model(family: str | None = None) -> pathlib.Path:
  """The model file talkjax ships for `family`'s demo (the default demo without one)."""
  return pathlib.Path(__file__).resolve().parent.parent / "assets" / demo_recipe(family)["model"]
