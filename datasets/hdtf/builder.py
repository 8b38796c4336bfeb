"""TFDS builder for HDTF (datasets/hdtf/README.md)."""

from __future__ import annotations

import sys

from talkjax_datasets.real.tfds_builder import RecordedClips


class Hdtf(RecordedClips):
  """HDTF talking faces, cut and cropped as the official annotation files say."""
  name = "hdtf"


def build(raw, out, options, *, seed=0, val=0.05, test=0.05, split_file=None, **kwargs):
  from talkjax_datasets.hdtf.layout import scan
  from talkjax_datasets.real.build import build as run
  notes = {}
  items, skips = scan(raw, seed=seed, val=val, test=test, split_file=split_file, notes=notes)
  if notes.get("videos_not_in_split_file"):
    print(f"hdtf: {len(notes['videos_not_in_split_file'])} annotated videos are not in the "
          "split file and are left out", file=sys.stderr)
  return run(Hdtf, items, skips, out, options, raw=raw,
             extra={"seed": seed, "val": val, "test": test,
                    "split_file": str(split_file) if split_file else None, **notes}, **kwargs)
