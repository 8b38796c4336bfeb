"""Finding the dataset a config names (and, for SynthTalk, building it on first use), and
opening it as clips or as a Grain window source, alone or as a weighted mixture.

`data.kind`: synthtalk (built from data.synthtalk.* when missing), mead, hdtf, dyconv or
clips (built beforehand with `talkjax data build KIND --raw ... --out data.path`).
`data.mixture`: ("PATH:WEIGHT", ...) trains on several built datasets at once (any kinds,
same fps and resolution), each window drawn from dataset i with probability WEIGHT_i /
sum(WEIGHTs); empty (the default) reads data.path alone.
"""

from __future__ import annotations

import pathlib
import sys

from talkjax.errors import ConfigError, TalkjaxError

REAL_KINDS = ("mead", "hdtf", "dyconv", "clips")


def ensure_synthtalk(data_config) -> pathlib.Path:
  """The SynthTalk folder of `data_config.path`, built there from `data_config.synthtalk.*`
  when it does not exist yet (SynthTalk builds in seconds at CI sizes)."""
  kind = data_config.get("kind", "synthtalk")
  if kind != "synthtalk":
    raise ConfigError(f"this step reads SynthTalk (its ground truth), not data.kind={kind!r}",
                      fix="point it at a SynthTalk config")
  return ensure_dataset(data_config)


def ensure_dataset(data_config) -> pathlib.Path:
  """The built dataset folder of `data_config.path` (SynthTalk is built when missing)."""
  import jax
  from jax.experimental import multihost_utils

  kind = data_config.get("kind", "synthtalk")
  path = pathlib.Path(data_config.path).expanduser()
  if kind in REAL_KINDS:
    return _real(path, kind)
  if kind != "synthtalk":
    raise ConfigError(f"unknown data.kind {kind!r}",
                      fix=f"use one of: synthtalk, {', '.join(REAL_KINDS)}")
  if jax.process_count() > 1:  # process 0 builds, the others wait for it
    if jax.process_index() == 0:
      _ensure(data_config, path)
    multihost_utils.sync_global_devices(f"synthtalk ready: {path}")
  return _ensure(data_config, path)


def _real(path: pathlib.Path, kind: str) -> pathlib.Path:
  from talkjax.data.recorded import find_recorded_dir
  found = find_recorded_dir(path) if path.exists() else None
  if found is None:
    raise TalkjaxError(f"no built {kind} dataset here", path=path,
                       fix=f"build it: talkjax data build {kind} --raw RAW_{kind.upper()} "
                           f"--out {path} (see datasets/{kind}/README.md)")
  import json
  built = json.loads((found / "metadata.json").read_text()).get("source")
  if built != kind:
    raise ConfigError(f"data.kind is {kind!r} but {found} holds a {built} build",
                      path=path, fix=f"set data.kind={built} (or point data.path at a {kind} build)")
  return found


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
                   resolution=s.resolution, fps=s.fps, seed=s.seed,
                   dyadic=bool(s.get("dyadic", False)))
  print(f"building SynthTalk ({s.clips} clips, {s.resolution}px) in {path} ...", file=sys.stderr)
  return build(spec, path)


def open_clips(path, split: str):
  """SynthTalkClips or RecordedClips, whichever is built at `path`."""
  from talkjax.data.recorded import RecordedClips, find_recorded_dir
  from talkjax.data.synthtalk import SynthTalkClips
  path = pathlib.Path(path)
  if path.exists() and find_recorded_dir(path) is not None:
    return RecordedClips(path, split)
  return SynthTalkClips(path, split)


def mixture(data_config) -> list[tuple[pathlib.Path, float]]:
  """[(dataset folder, weight)]: the mixture's entries, or data.path with weight 1."""
  entries = tuple(data_config.get("mixture", ()) or ())
  if not entries:
    return [(ensure_dataset(data_config), 1.0)]
  out = []
  for entry in entries:
    where, _, weight = str(entry).rpartition(":")
    try:
      w = float(weight)
    except ValueError:
      w = -1.0
    if not where or not w > 0:
      raise ConfigError(f"data.mixture entry {entry!r} is not PATH:WEIGHT with WEIGHT > 0",
                        fix="write e.g. data.mixture=('data/hdtf:3','data/mead:1')")
    path = pathlib.Path(where).expanduser()
    from talkjax.data.recorded import find_recorded_dir
    from talkjax.data.synthtalk import find_dataset_dir
    found = find_recorded_dir(path) if path.exists() else None
    out.append((found or find_dataset_dir(path), w))
  return out


def clip_sets(data_config, split: str) -> list:
  """The clips of every dataset the config reads, for `split`."""
  return [open_clips(path, split) for path, _ in mixture(data_config)]


def windows(data_config, split: str, *, window: int, stride: int | None = None, seed: int = 0):
  """The Grain window source of the config's data (one dataset or the weighted mixture)."""
  from talkjax.data.windows import ClipWindows
  entries = mixture(data_config)
  sources = [ClipWindows(open_clips(p, split), window=window, stride=stride) for p, _ in entries]
  if len(sources) == 1:
    return sources[0]
  return Mixture(sources, [w for _, w in entries], seed=seed)


class Mixture:
  """Several random-access sources drawn by weight: Grain's MapDataset.mix over each source
  shuffled and repeated, cut to one epoch of (sum of the sources' lengths) examples, so
  every source is read through rather than only its first examples."""

  def __init__(self, sources, weights, *, seed: int = 0):
    import grain
    sizes = {(s.clips.fps, _resolution(s)) for s in sources}
    if len(sizes) > 1:
      raise ConfigError(f"the mixture's datasets differ in fps / resolution: {sorted(sizes)}",
                        fix="build them at one --fps and --resolution")
    self.sources, self.weights, self.seed = sources, list(weights), seed
    parts = [grain.MapDataset.source(s).shuffle(seed=seed + i).repeat()
             for i, s in enumerate(sources)]
    self.length = sum(len(s) for s in sources)
    self._mixed = grain.MapDataset.mix(parts, self.weights)

  def __len__(self):
    return self.length

  def __getitem__(self, index):
    return self._mixed[int(index)]

  def __repr__(self):
    return f"Mixture({[repr(s) for s in self.sources]}, weights={self.weights}, seed={self.seed})"


def _resolution(source) -> int:
  meta = source.clips.meta
  return int(meta.get("resolution", 0))
