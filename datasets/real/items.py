"""What a dataset layout hands the build: one `Item` per example to make, and `Skip`s.

A layout (datasets/mead/layout.py, ...) only reads folder names and annotation files; it
never decodes media. Everything it finds wrong before any decoding (an unreadable archive,
a clip whose annotation is malformed) it reports as a `Skip`, which the build counts in its
report beside the skips found while decoding.
"""

from __future__ import annotations

import dataclasses
import os

SPLITS = ("train", "val", "test")

# Why an input was skipped: the build report counts skips by these reasons.
SKIP_REASONS = {
    "unreadable video": "the video cannot be opened or decoded (corrupt or truncated file)",
    "no video stream": "the file holds no video",
    "missing audio": "no audio file and no audio stream in the video",
    "unreadable audio": "the audio cannot be decoded",
    "silent audio": "the speech track is silent",
    "audio/video length mismatch": "audio and video durations differ by more than the tolerance",
    "no face found": "the face detector found no face in the clip",
    "face lost": "no face in too many of the sampled frames",
    "unsupported frame rate": "the video's frame rate is outside the accepted range",
    "resolution too small": "the frames are smaller than the accepted minimum",
    "too short": "the clip is shorter than the minimum length",
    "unreadable archive": "a tar archive cannot be read",
    "bad annotation": "an annotation line cannot be parsed or names a clip that is missing",
    "missing video": "an annotation or pairing names a video that is not there",
}


@dataclasses.dataclass(frozen=True)
class Media:
  """A file, or a member of an uncompressed tar archive (MEAD ships per-speaker tars)."""
  path: str
  member: str | None = None

  def __str__(self):
    return f"{self.path}:{self.member}" if self.member else self.path


@dataclasses.dataclass(frozen=True)
class Item:
  """One example to make. `key` is unique and stable (it orders the records and names the
  staged result); `identity` names the person (split- and label-bearing)."""
  key: str
  split: str
  identity: str
  video: Media
  audio: Media | None = None           # a separate speech track; None: the video's own
  partner_audio: Media | None = None   # dyadic: the other participant's track
  span: tuple[float, float] | None = None   # seconds of the video to keep (HDTF's clips)
  # A fixed square (left, top, side) in pixels of a video `crop_height` pixels high, used
  # instead of the face detector (HDTF's annotated crops). Scaled to the real height.
  crop: tuple[float, float, float] | None = None
  crop_height: int | None = None
  emotion: int = -1                    # index into MEAD's 8 emotions; -1 unknown
  intensity: int = -1                  # 0..2 = level_1..level_3; -1 unknown
  turns: tuple[tuple[float, float], ...] | None = None   # the agent's speaking intervals (s)
  labels: tuple[tuple[str, str], ...] = ()   # extra string labels kept in the index

  def describe(self) -> str:
    return str(self.video) if self.span is None else f"{self.video} [{self.span[0]:g}-{self.span[1]:g} s]"


@dataclasses.dataclass(frozen=True)
class Skip:
  """An input left out, and why (a key of SKIP_REASONS, plus the particulars)."""
  source: str
  reason: str
  detail: str = ""

  def __post_init__(self):
    if self.reason not in SKIP_REASONS:
      raise ValueError(f"unknown skip reason {self.reason!r}")

  def as_dict(self):
    return {"source": self.source, "reason": self.reason, "detail": self.detail}


def split_by_hash(names, *, seed: int, val: float, test: float) -> dict:
  """name -> split for a list of group names (videos, speakers, conversations): sorted by
  a seeded hash, the first ceil(test * n) go to test, the next ceil(val * n) to val (at
  least one each when there are three or more groups), the rest to train. Deterministic,
  and adding a group moves no other group."""
  import hashlib
  import math
  names = sorted(set(names))
  order = sorted(names, key=lambda n: hashlib.sha1(f"{seed}:{n}".encode()).hexdigest())
  n = len(order)
  n_test = max(1 if n >= 3 and test > 0 else 0, math.ceil(test * n)) if n else 0
  n_val = max(1 if n >= 3 and val > 0 else 0, math.ceil(val * n)) if n else 0
  n_test, n_val = min(n_test, n), min(n_val, max(0, n - n_test))
  out = {}
  for i, name in enumerate(order):
    out[name] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
  return out


def read_split_file(path) -> dict:
  """`NAME SPLIT` per line (whitespace or comma separated; # comments): name -> split."""
  from talkjax.errors import TalkjaxError
  if not os.path.isfile(path):
    raise TalkjaxError("the split file does not exist", path=path, fix="check the path")
  out = {}
  with open(path) as f:
    for number, line in enumerate(f, 1):
      line = line.split("#", 1)[0].replace(",", " ").strip()
      if not line:
        continue
      parts = line.split()
      if len(parts) != 2 or parts[1] not in SPLITS:
        raise TalkjaxError(f"line {number} is not `NAME SPLIT` with SPLIT one of {SPLITS}: "
                           f"{line!r}", path=path, fix="write one `name split` pair per line")
      out[parts[0]] = parts[1]
  return out


def media_exists(media: Media) -> bool:
  return media.member is not None or os.path.isfile(media.path)
