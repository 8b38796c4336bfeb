"""TFDS builder for DyConv (datasets/dyconv/README.md)."""

from __future__ import annotations

import hashlib
import json

from talkjax_datasets.real.tfds_builder import RecordedClips


class DyConv(RecordedClips):
  """Dyadic conversations: one example per participant, with its own and its partner's
  speech on its frames and, where turns.csv gives them, its speaking turns."""
  name = "dyconv"


def build(raw, out, options, *, seed=0, val=0.05, test=0.05, split_file=None, **kwargs):
  from talkjax_datasets.dyconv.layout import scan
  from talkjax_datasets.real.build import build as run
  items, skips = scan(raw, seed=seed, val=val, test=test, split_file=split_file)
  # Staged examples keep the split they were made with, so a resume after an edit of
  # conversations.csv (or the split file) must be refused, not mixed: the settings carry
  # a digest of the assignment itself, not only the file's name.
  assignment = json.dumps(sorted((i.key, i.split) for i in items)).encode()
  return run(DyConv, items, skips, out, options, raw=raw, dyadic=True,
             extra={"seed": seed, "val": val, "test": test,
                    "split_file": str(split_file) if split_file else None,
                    "splits_digest": hashlib.sha1(assignment).hexdigest()[:16]}, **kwargs)
