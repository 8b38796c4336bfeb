"""Model files: one msgpack file with everything a generator needs, for any family.

    {"format": "talkjax.model/1", "family": ..., "config": JSON of the final stage's config,
     "linked": {name: JSON of another stage's config}, "params": the generation parameters}

Parameters are stored as float16 (half the file; loading computes in float32 again), except
the paths the family keeps at full precision (`hook.full_precision`: statistics, say).
`int8=True` stores every weight matrix of INT8_MIN_SIZE values or more as int8 with one
float32 scale per output channel (its last axis) under "quantized" (a quarter of float32;
format talkjax.model/2): reading restores float32 q * scale. A family's model quality must
be re-measured on such a file (the shipped INFP's is, in experiments/infp/README.md).
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
FORMAT_INT8 = "talkjax.model/2"   # /1 + the "quantized" entry
INT8_MIN_SIZE = 4096


@dataclasses.dataclass
class ModelFile:
  family: str
  config: ml_collections.ConfigDict | None
  linked: dict
  params: dict | None
  raw: dict            # the decoded file (for families that read older layouts)


def _quantize(x: np.ndarray) -> dict:
  """Symmetric int8 with one scale per entry of the last axis."""
  x = np.asarray(x, np.float32)
  scale = np.abs(x).reshape(-1, x.shape[-1]).max(0) / 127.0
  scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
  return {"q": np.clip(np.round(x / scale), -127, 127).astype(np.int8), "scale": scale}


def save(path, hook, params, dtype=np.float16, *, int8: bool = False) -> int:
  """Writes `hook`'s configs and `params` to `path`; returns the file's size in bytes."""
  import flax.serialization
  keep = [re.compile(p) for p in getattr(hook, "full_precision", ())]
  stored, quantized = {}, {}
  for name, v in trees.flatten(params).items():
    v = np.asarray(v)
    full = any(p.search(name) for p in keep)
    if int8 and not full and v.ndim >= 2 and v.size >= INT8_MIN_SIZE:
      quantized[name] = _quantize(v)
    else:
      stored[name] = np.asarray(v, np.float32 if full else dtype)
  payload = {"format": FORMAT_INT8 if int8 else FORMAT, "family": hook.config.family,
             "config": hook.config.to_json(),
             "linked": {k: c.to_json() for k, c in hook.linked.items()},
             "params": trees.unflatten(stored)}
  if int8:
    payload["quantized"] = quantized
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
    if data.get("format") in (FORMAT, FORMAT_INT8):
      config = ml_collections.ConfigDict(json.loads(data["config"]))
      linked = {k: ml_collections.ConfigDict(json.loads(v)) for k, v in data["linked"].items()}
      flat = {k: np.asarray(v, np.float32) for k, v in trees.flatten(data["params"]).items()}
      for name, entry in data.get("quantized", {}).items():
        flat[name] = np.asarray(entry["q"], np.float32) * np.asarray(entry["scale"], np.float32)
      params = trees.unflatten(flat)
      return ModelFile(data["family"], config, linked, params, data)
    # An older layout: the family named in its config reads it.
    family = json.loads(data["config"])["family"]
    return ModelFile(family, None, {}, None, data)
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise TalkjaxError(f"not a talkjax model file ({type(e).__name__})", path=path,
                       fix="write one with `talkjax convert bundle --src TRAINING_DIR --out FILE`") from e
