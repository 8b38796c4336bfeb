"""Model files: one msgpack file with everything a generator needs, for any family.

    {"format": "talkjax.model/1", "family": ..., "config": JSON of the final stage's config,
     "linked": {name: JSON of another stage's config}, "params": the generation parameters}

Parameters are stored as float16 (half the file; loading computes in float32 again), except
the paths the family keeps at full precision (`hook.full_precision`: statistics, say).
Writing is atomic: a half-written file never takes the model's name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re

import ml_collections
import numpy as np

from talkjax import trees
from talkjax.errors import TalkjaxError

FORMAT = "talkjax.model/1"


@dataclasses.dataclass
class ModelFile:
  family: str
  config: ml_collections.ConfigDict | None
  linked: dict
  params: dict | None
  raw: dict            # the decoded file (for families that read older layouts)


def save(path, hook, params, dtype=np.float16) -> int:
  """Writes `hook`'s configs and `params` to `path`; returns the file's size in bytes."""
  import flax.serialization
  keep = [re.compile(p) for p in getattr(hook, "full_precision", ())]
  stored = {name: np.asarray(v, np.float32 if any(p.search(name) for p in keep) else dtype)
            for name, v in trees.flatten(params).items()}
  payload = {"format": FORMAT, "family": hook.config.family, "config": hook.config.to_json(),
             "linked": {k: c.to_json() for k, c in hook.linked.items()},
             "params": trees.unflatten(stored)}
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_bytes(flax.serialization.msgpack_serialize(payload))
  os.replace(tmp, path)
  return path.stat().st_size


def read(path) -> ModelFile:
  import flax.serialization
  path = pathlib.Path(path)
  try:
    data = flax.serialization.msgpack_restore(path.read_bytes())
    if data.get("format") == FORMAT:
      config = ml_collections.ConfigDict(json.loads(data["config"]))
      linked = {k: ml_collections.ConfigDict(json.loads(v)) for k, v in data["linked"].items()}
      params = trees.unflatten({k: np.asarray(v, np.float32)
                                for k, v in trees.flatten(data["params"]).items()})
      return ModelFile(data["family"], config, linked, params, data)
    # An older layout: the family named in its config reads it.
    family = json.loads(data["config"])["family"]
    return ModelFile(family, None, {}, None, data)
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise TalkjaxError(f"not a talkjax model file ({type(e).__name__})", path=path,
                       fix="write one with `talkjax convert bundle --src TRAINING_DIR --out FILE`") from e
