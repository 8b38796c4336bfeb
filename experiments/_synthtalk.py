"""SynthTalk data settings the families' experiments share (not an experiment itself)."""

import ml_collections


def synthtalk_data(path: str, *, identities: int, clips: int, seconds: float, resolution: int):
  d = ml_collections.ConfigDict()
  d.kind = "synthtalk"
  d.path = path
  d.mixture = ()              # ("PATH:WEIGHT", ...): several built datasets (talkjax.data.prepare)
  d.build_if_missing = True   # SynthTalk is built on first use from the settings below
  d.synthtalk = ml_collections.ConfigDict(dict(
      identities=identities, clips=clips, seconds=seconds, resolution=resolution, fps=25, seed=0))
  return d


def tiny_synthtalk():
  """The 64 px set the tiny configs train on: 400 clips of 4 s (room for a stage-2 window
  or a MEMO clip with its past frames), one cache for every family."""
  return synthtalk_data("~/.cache/talkjax/synthtalk_tiny_i200", identities=200, clips=400,
                        seconds=4.0, resolution=64)
