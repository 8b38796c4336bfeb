"""Random-access windows of T frames with exactly aligned audio, over any clip set: a
SynthTalk split (`SynthTalkClips`) or a real-dataset build (`RecordedClips`, clips of any
length). A Grain-compatible source: `len()`, `source[i]` -> dict of numpy arrays with fixed
shapes, deterministic in i, picklable (records are reopened lazily in each worker).

Alignment rule: frame k of a clip starts at audio sample k * 16000 / fps. Window starts are
multiples of `stride` frames, with stride a multiple of fps / gcd(16000, fps), so the start
sample is an integer; T must make T * 16000 / fps an integer too (always true at 25 fps).
Clips shorter than the window give no windows (and are counted in `short_clips`).
"""

from __future__ import annotations

import math

import numpy as np

from talkjax.errors import TalkjaxError

SAMPLE_RATE = 16000


def pixels(data: bytes, where) -> np.ndarray:
  from talkjax.data.frames import decode_frame
  return decode_frame(data, where).astype(np.float32) / 127.5 - 1.0


class ClipWindows:
  """Output keys: frames (T, H, W, 3) float32, audio (T * 16000 / fps,) float32,
  partner_audio (dyadic sets), reference (H, W, 3) float32 (the clip's first frame: the
  identity image a generator conditions on), identity () int64, and the per-frame labels
  the set has (SynthTalk: its ground truth; real sets: emotion, intensity, speaking, -1
  where unknown)."""

  def __init__(self, clips, *, window: int = 16, stride: int | None = None):
    self.clips = clips
    fps = self.fps = clips.fps
    step = fps // math.gcd(SAMPLE_RATE, fps)   # smallest frame step with integer samples
    stride = stride or step
    lengths = np.asarray([clips.num_frames(i) for i in range(len(clips))], np.int64)
    if window < 1 or window > lengths.max(initial=0):
      raise TalkjaxError(f"window {window} must be 1..{lengths.max(initial=0)} frames "
                         "(the longest clip)", path=clips.path,
                         fix="pick a shorter window or build longer clips")
    if (window * SAMPLE_RATE) % fps or stride % step:
      raise TalkjaxError(
          f"at {fps} fps, window ({window}) and stride ({stride}) must be multiples of {step} "
          "frames so audio samples align exactly", path=clips.path,
          fix=f"use a window that is a multiple of {step}")
    self.window, self.stride = window, stride
    self.samples = window * SAMPLE_RATE // fps
    counts = np.maximum(0, (lengths - window) // stride + 1)
    self.short_clips = int(np.sum(counts == 0))
    self.ends = np.cumsum(counts)

  def __len__(self):
    return int(self.ends[-1]) if len(self.ends) else 0

  def __repr__(self):
    return f"ClipWindows({self.clips!r}, window={self.window}, stride={self.stride})"

  def locate(self, index: int) -> tuple[int, int]:
    """(clip, first frame) of window `index`."""
    clip = int(np.searchsorted(self.ends, index, side="right"))
    before = int(self.ends[clip - 1]) if clip else 0
    return clip, (index - before) * self.stride

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(index)
    clip, start = self.locate(index)
    rec = self.clips.read(clip, start, start + self.window)
    where = self.clips.path
    out = {k: v for k, v in rec.items() if k not in ("frames", "reference")}
    out["frames"] = np.stack([pixels(b, where) for b in rec["frames"]])
    out["reference"] = pixels(rec["reference"], where)
    for key in ("audio", "partner_audio"):
      if key in out:
        out[key] = _fit(out[key], self.samples)
    return out


def _fit(piece, length):
  piece = np.asarray(piece, np.float32)
  if len(piece) < length:   # only when a clip's audio was rounded short (fps not dividing 16k)
    piece = np.pad(piece, (0, length - len(piece)))
  return piece[:length]
