"""Settings shared by the IF-MDM experiments (not an experiment itself)."""

import ml_collections


def synthtalk_data(path: str, *, identities: int, clips: int, seconds: float, resolution: int):
  d = ml_collections.ConfigDict()
  d.path = path
  d.build_if_missing = True   # SynthTalk is built on first use from the settings below
  d.synthtalk = ml_collections.ConfigDict(dict(
      identities=identities, clips=clips, seconds=seconds, resolution=resolution, fps=25, seed=0))
  return d
