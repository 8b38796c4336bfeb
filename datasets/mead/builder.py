"""TFDS builder for MEAD (datasets/mead/README.md)."""

from __future__ import annotations

import sys

from talkjax_datasets.real.tfds_builder import RecordedClips


class Mead(RecordedClips):
  """MEAD talking faces with per-frame emotion and intensity, cropped around the face."""
  name = "mead"


def build(raw, out, options, *, views=("front",), split_file=None, **kwargs):
  from talkjax_datasets.mead.layout import scan
  from talkjax_datasets.real.build import build as run
  notes = {}
  items, skips = scan(raw, views=views, split_file=split_file, notes=notes)
  if notes.get("speakers_outside_standard_split"):
    print("mead: speakers outside the standard split go to train: "
          + " ".join(notes["speakers_outside_standard_split"]), file=sys.stderr)
  if notes.get("speakers_not_in_split_file"):
    print("mead: speakers not in the split file are left out: "
          + " ".join(notes["speakers_not_in_split_file"]), file=sys.stderr)
  # Lists, not tuples: the settings are compared with their JSON copy when resuming.
  return run(Mead, items, skips, out, options, raw=raw,
             extra={"views": list(views), "split_file": str(split_file) if split_file else None,
                    **notes}, **kwargs)
