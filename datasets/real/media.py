"""Decoding one item's media with PyAV: frames resampled to the target frame rate by their
timestamps and turned upright as players show them (a rotation in the file's display
matrix), and speech as 16 kHz mono through talkjax's audio front-end.

Frame-rate rule: output frame k shows time start + (k + 0.5) / fps and takes the source
frame on screen at that moment (the last one whose timestamp is <= that time), so 30 fps
becomes 25 by dropping every sixth frame and variable-rate video comes out evenly spaced.
Frames are never held in memory as a whole clip: each pass decodes and hands them on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import tarfile
import tempfile

import numpy as np

from talkjax.data.video_io import upright
from talkjax_datasets.real.items import Media

SAMPLE_RATE = 16000


class MediaError(Exception):
  """A media problem that skips the item: `reason` is a key of items.SKIP_REASONS."""

  def __init__(self, reason: str, detail: str):
    super().__init__(detail)
    self.reason, self.detail = reason, detail


@functools.lru_cache(maxsize=8)
def _tar_members(path: str) -> dict:
  try:
    with tarfile.open(path, "r:") as tar:   # uncompressed only: members are found by seeking
      return {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
  except (tarfile.TarError, OSError) as e:
    raise MediaError("unreadable archive", f"{path}: {e}") from e


@contextlib.contextmanager
def local_file(media: Media):
  """A path to read `media` from: the file itself, or a tar member copied to a temp file."""
  if media.member is None:
    yield media.path
    return
  member = _tar_members(media.path).get(media.member.removeprefix("./"))
  if member is None:
    raise MediaError("unreadable archive", f"{media.path} has no member {media.member}")
  folder = tempfile.mkdtemp(prefix="talkjax-member-")
  try:
    target = os.path.join(folder, os.path.basename(media.member))
    try:
      with tarfile.open(media.path, "r:") as tar, tar.extractfile(member) as src, \
          open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    except (tarfile.TarError, OSError) as e:
      raise MediaError("unreadable archive", f"{media}: {e}") from e
    yield target
  finally:
    shutil.rmtree(folder, ignore_errors=True)


@dataclasses.dataclass
class VideoInfo:
  width: int
  height: int
  fps: float            # the stream's average rate
  duration: float       # seconds, from the container (may be 0 when unknown)
  start: float          # the video stream's start time, seconds
  audio_start: float | None   # the audio stream's start time; None without audio


def probe(path: str) -> VideoInfo:
  import av
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise MediaError("no video stream", path)
      v = container.streams.video[0]
      rate = v.average_rate or v.guessed_rate or v.base_rate
      start = float(v.start_time * v.time_base) if v.start_time is not None else 0.0
      duration = (float(v.duration * v.time_base) if v.duration
                  else float(container.duration or 0) / 1e6)
      audio_start = None
      if container.streams.audio:
        a = container.streams.audio[0]
        audio_start = float(a.start_time * a.time_base) if a.start_time is not None else start
      width, height = v.codec_context.width, v.codec_context.height
      # the size as shown: a phone's portrait video is stored sideways with a rotation that
      # every decoded frame carries (frames() turns them)
      first = next(container.decode(v), None)
      if first is not None and round(float(first.rotation or 0) / 90.0) % 2:
        width, height = height, width
  except MediaError:
    raise
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise MediaError("unreadable video", f"{path}: {e}") from e
  if not rate or not width or not height:
    raise MediaError("unreadable video", f"{path}: no frame rate or size in its header")
  return VideoInfo(int(width), int(height), float(rate), duration, start, audio_start)


def frames(path: str, fps: int, span: tuple[float, float] | None = None, *,
           stream_start: float = 0.0):
  """Yield (k, uint8 RGB frame) for output frames k = 0, 1, ... at `fps`, over the span
  (seconds from the stream's start) or the whole video. Raises MediaError('unreadable
  video') when decoding fails part-way (a truncated or corrupt file)."""
  import av
  begin = 0.0 if span is None else float(span[0])
  end = np.inf if span is None else float(span[1])
  k, current, last_time, src_step = 0, None, None, None
  try:
    with av.open(path) as container:
      stream = container.streams.video[0]
      stream.thread_type = "AUTO"
      if begin > 1.0:   # seek near the span (to the keyframe before it), then decode on
        container.seek(int((begin + stream_start - 1.0) / stream.time_base), stream=stream,
                       backward=True)
      for frame in container.decode(stream):
        if frame.pts is None:
          continue
        t = float(frame.pts * stream.time_base) - stream_start
        if last_time is not None and t > last_time:
          src_step = t - last_time if src_step is None else min(src_step, t - last_time)
        # Every output time before this frame's timestamp shows the frame before it.
        while current is not None and begin + (k + 0.5) / fps < t and begin + (k + 0.5) / fps < end:
          yield k, current
          k += 1
        if t >= end:
          current = None
          break
        current, last_time = upright(frame), t
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise MediaError("unreadable video", f"{path}: decoding stopped after {k} frames ({e})") from e
  if current is not None:   # the last frame stays on screen for one source frame period
    shown_until = min(end, last_time + (src_step or 1.0 / fps))
    while begin + (k + 0.5) / fps < shown_until:
      yield k, current
      k += 1


def speech(media_path: str, *, offset: float = 0.0, span=None) -> tuple[np.ndarray, float]:
  """Mono float32 at 16 kHz (not yet loudness-normalised) and its duration in seconds,
  starting at `offset` seconds of the video's clock (the audio stream's start time minus
  the video's), cut to the span. MediaError when it cannot be decoded."""
  from talkjax.audio.load import decode, resample
  from talkjax.errors import TalkjaxError
  try:
    data, rate = decode(media_path)
  except TalkjaxError as e:
    no_stream = "no audio stream" in str(e)
    raise MediaError("missing audio" if no_stream else "unreadable audio", e.one_line()) from e
  if data.shape[0] == 0:
    raise MediaError("missing audio", f"{media_path}: the audio decodes to no samples")
  mono = resample(data.mean(axis=1), rate, SAMPLE_RATE)
  if offset:   # put sample 0 at the video's time 0
    shift = int(round(offset * SAMPLE_RATE))
    mono = np.pad(mono, (shift, 0)) if shift > 0 else mono[-shift:]
  if span is not None:
    mono = mono[int(round(span[0] * SAMPLE_RATE)):int(round(span[1] * SAMPLE_RATE))]
  return mono.astype(np.float32), len(mono) / SAMPLE_RATE


def has_stream(path: str, kind: str) -> bool:
  """Whether a file holds a `kind` ("audio" / "video") stream; False when unreadable."""
  import av
  try:
    with av.open(path) as container:
      return bool(getattr(container.streams, kind))
  except (av.error.FFmpegError, OSError):
    return False
