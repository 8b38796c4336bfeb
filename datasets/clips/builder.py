"""TFDS builder for a folder of talking clips (datasets/clips/README.md)."""

from __future__ import annotations

from talkjax_datasets.real.tfds_builder import RecordedClips


class Clips(RecordedClips):
  """Talking-face clips from any folder of videos with sound, cropped around the face."""
  name = "clips"


def build(raw, out, options, *, seed=0, val=0.05, test=0.05, split_file=None, **kwargs):
  from talkjax_datasets.clips.layout import scan
  from talkjax_datasets.real.build import build as run
  items, skips = scan(raw, seed=seed, val=val, test=test, split_file=split_file)
  return run(Clips, items, skips, out, options, raw=raw,
             extra={"seed": seed, "val": val, "test": test,
                    "split_file": str(split_file) if split_file else None}, **kwargs)
