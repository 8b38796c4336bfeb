"""Reading a built real dataset (MEAD, HDTF, DyConv, any folder of clips): whole clips of
any length, stored as segments of at most `segment_frames` frames (datasets/real/).

`RecordedClips(path, split)` answers the same questions as `SynthTalkClips`: how many
clips, how long each is (`num_frames`), and any frame range of a clip with its audio and
labels (`read`), reading only the one or two records the range touches. The index
(`clips.json`) is read once; records are opened lazily in each worker process (tfds_split.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from talkjax.data.tfds_split import TfdsSplit
from talkjax.errors import TalkjaxError

SAMPLE_RATE = 16000
FORMAT = "talkjax.recorded/1"
KINDS = ("mead", "hdtf", "dyconv", "clips")


def find_recorded_dir(path) -> Path | None:
  """The versioned dataset folder of a real-dataset build at `path` (the --out folder or
  the folder itself), or None when there is none."""
  path = Path(path)
  if (path / "clips.json").exists():
    return path
  found = sorted(p.parent for kind in KINDS for p in path.glob(f"{kind}/*/*/clips.json"))
  if len(found) > 1:
    raise TalkjaxError(f"{len(found)} builds here; name one", path=path,
                       fix="pass the folder of one of: " + ", ".join(map(str, found)))
  return found[0] if found else None


class RecordedClips:
  """The clips of one split of a real-dataset build."""

  def __init__(self, path, split: str = "train"):
    found = find_recorded_dir(path)
    if found is None:
      raise TalkjaxError("no built dataset here", path=path,
                         fix="build one with talkjax data build {mead,hdtf,dyconv,clips} "
                             f"--raw RAW --out {path}")
    self.path, self.split = found, split
    index = json.loads((found / "clips.json").read_text())
    self.meta = json.loads((found / "metadata.json").read_text())
    if self.meta.get("format") != FORMAT:
      raise TalkjaxError(f"unknown dataset format {self.meta.get('format')!r}", path=found,
                         fix="rebuild it with this version's talkjax data build")
    if split not in index["splits"] or not index["splits"][split]:
      have = sorted(s for s, c in index["splits"].items() if c)
      raise TalkjaxError(f"split {split!r} has no clips in this build (it has {have})",
                         path=found, fix="use one of those splits, or add data for this one")
    self.index = index["splits"][split]
    self.identities = index["identities"]
    self.fps = int(self.meta["fps"])
    self.segment = int(self.meta["segment_frames"])
    self.dyadic = bool(self.meta.get("dyadic"))
    self._records = TfdsSplit(found, split)

  def __len__(self):
    return len(self.index)

  def __repr__(self):
    return f"RecordedClips({self.path}, {self.split!r}, clips={len(self)})"

  def num_frames(self, clip: int) -> int:
    return int(self.index[clip]["frames"])

  def _record(self, number: int) -> dict:
    try:
      return self._records[number]
    except (ValueError, OSError, RuntimeError, IndexError) as e:
      raise TalkjaxError(f"record {number} of split {self.split!r} cannot be read ({e})",
                         path=self.path, fix="the dataset is corrupt; rebuild it") from e

  def read(self, clip: int, start: int, stop: int) -> dict:
    """Frames start..stop-1 of a clip: encoded frames (list of bytes), their audio (and
    partner_audio), per-frame labels, the clip's reference frame and identity."""
    n = self.num_frames(clip)
    if not 0 <= start < stop <= n:
      raise TalkjaxError(f"frames {start}..{stop} asked of clip {clip}, which has {n}",
                         path=self.path, fix="ask for a range inside the clip")
    first = self.index[clip]["record"]
    pieces = [self._record(first + s) for s in range(start // self.segment,
                                                     (stop - 1) // self.segment + 1)]
    offset = (start // self.segment) * self.segment
    a, b = start - offset, stop - offset
    spf = SAMPLE_RATE / self.fps
    cat = lambda key: np.concatenate([np.asarray(p[key]) for p in pieces])
    out = {"frames": list(cat("frames")[a:b]), "reference": pieces[0]["reference"],
           "identity": np.int64(self.index[clip]["identity"])}
    for key in ("emotion", "intensity", "speaking"):
      out[key] = cat(key)[a:b].astype(np.int32)
    for key in ("audio", "partner_audio") if self.dyadic else ("audio",):
      samples = cat(key)
      out[key] = samples[int(round(a * spf)):int(round(b * spf))].astype(np.float32)
    return out

  def clip(self, index: int) -> dict:
    """A whole clip, frames decoded to uint8 (T, H, W, 3) (long clips take memory: use
    `read` in pieces for those)."""
    from talkjax.data.frames import decode_frame
    rec = self.read(index, 0, self.num_frames(index))
    rec["frames"] = np.stack([decode_frame(b, self.path) for b in rec["frames"]])
    return rec
