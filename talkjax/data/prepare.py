"""Finding (and, for SynthTalk, building on first use) the dataset a config names."""

from __future__ import annotations

import pathlib
import sys

from talkjax.errors import TalkjaxError


def ensure_synthtalk(data_config) -> pathlib.Path:
  """The SynthTalk folder of `data_config.path`, built there from `data_config.synthtalk.*`
  when it does not exist yet (SynthTalk builds in seconds at CI sizes)."""
  import jax
  from jax.experimental import multihost_utils

  kind = data_config.get("kind", "synthtalk")
  if kind != "synthtalk":
    from talkjax.errors import MissingCapabilityError
    raise MissingCapabilityError(
        f"data.kind={kind!r}: this version of talkjax trains on SynthTalk only",
        path=data_config.path, fix="the MEAD/HDTF/DyConv loaders arrive with the real-datasets "
        "work; until then train on SynthTalk (data.kind=synthtalk)")
  path = pathlib.Path(data_config.path).expanduser()
  if jax.process_count() > 1:  # process 0 builds, the others wait for it
    if jax.process_index() == 0:
      _ensure(data_config, path)
    multihost_utils.sync_global_devices(f"synthtalk ready: {path}")
  return _ensure(data_config, path)


def _ensure(data_config, path: pathlib.Path) -> pathlib.Path:
  from talkjax.data.synthtalk import find_dataset_dir

  if path.exists() and any(path.iterdir()):
    return find_dataset_dir(path)
  if not data_config.build_if_missing:
    raise TalkjaxError("the dataset folder does not exist", path=path,
                       fix="build it with `talkjax data build synthtalk --out ...` or set "
                           "data.build_if_missing=true")
  from talkjax_datasets.synthtalk.builder import build
  from talkjax_datasets.synthtalk.spec import BuildSpec

  s = data_config.synthtalk
  spec = BuildSpec(identities=s.identities, clips=s.clips, seconds=s.seconds,
                   resolution=s.resolution, fps=s.fps, seed=s.seed)
  print(f"building SynthTalk ({s.clips} clips, {s.resolution}px) in {path} ...", file=sys.stderr)
  return build(spec, path)
