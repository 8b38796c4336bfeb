"""mp4 in and out with PyAV: H.264 video + AAC audio, muxed in sync.

`write_mp4(path, frames, fps, audio=None)` takes uint8 frames (T, H, W, 3) and float audio
at 16 kHz; `read_mp4(path)` returns (frames uint8 (T, H, W, 3), fps, audio float32 at
16 kHz or None); `read_frames(path, fps=25, count=50)` decodes only the first `count`
frames a `fps` video would show (a reference clip's, however long the file). Both give
frames upright, as players show them (a phone's sideways video with a rotation in its
display matrix is turned). Used by the data preview, the sampling pipeline and `talkjax
eval`.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

from talkjax.errors import TalkjaxError

SAMPLE_RATE = 16000


# FFmpeg's channel layout for a channel count (AAC takes these); other counts are mixed
# down to stereo.
LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# Sample rates FFmpeg's AAC encoder takes; another rate is resampled to 48 kHz.
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
             7350)


def audio_format(path) -> tuple[int, int]:
  """(sample rate, channels) of an audio file's first stream, without decoding it."""
  import av
  with av.open(str(path)) as container:
    if not container.streams.audio:
      raise TalkjaxError("the file has no audio stream", path=path, fix="pass an audio file")
    stream = container.streams.audio[0]
    return int(stream.rate or stream.sample_rate), int(stream.channels or 1)


class Mp4Writer:
  """H.264 video written frame batch by frame batch (memory does not grow with length), then
  an AAC track: an array at 16 kHz, or an audio file re-encoded at its own sample rate and
  channels (`track=`), cut or padded with silence to the video's duration.

      with Mp4Writer(path, fps, track="speech.m4a") as w:
        for frames in pieces: w.write(frames)
  """

  def __init__(self, path, fps: int, *, audio: np.ndarray | None = None, track=None,
               sample_rate: int = SAMPLE_RATE, crf: int = 18):
    import av
    if not (isinstance(fps, (int, np.integer)) and fps > 0):
      raise TalkjaxError(f"fps must be a positive integer, got {fps}", path=path)
    self.path, self.fps, self.crf = str(path), int(fps), crf
    self.audio, self.track = audio, track
    self.rate, self.channels = sample_rate, 1
    if track is not None:
      self.rate, self.channels = audio_format(track)
      self.rate = self.rate if self.rate in AAC_RATES else 48000
      self.channels = self.channels if self.channels in LAYOUTS else 2
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.container = av.open(self.path, mode="w", format="mp4")
    self.video = self.astream = None
    self.frames = 0

  def _open_streams(self, h: int, w: int):
    self.video = self.container.add_stream("libx264", rate=self.fps)
    self.video.width, self.video.height = w + w % 2, h + h % 2   # yuv420p needs even sizes
    self.video.pix_fmt = "yuv420p"
    self.video.options = {"crf": str(self.crf), "preset": "veryfast"}
    if self.audio is not None or self.track is not None:
      self.astream = self.container.add_stream("aac", rate=self.rate)
      self.astream.layout = LAYOUTS[self.channels]

  def write(self, frames: np.ndarray) -> None:
    import av
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise TalkjaxError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}",
                         path=self.path, fix="convert with np.clip(x * 255, 0, 255).astype(np.uint8)")
    if self.video is None:
      self._open_streams(frames.shape[1], frames.shape[2])
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
      frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    for frame in frames:
      for packet in self.video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        self.container.mux(packet)
    self.frames += len(frames)

  def _encode_audio(self, planar: np.ndarray, start: int) -> None:
    """(channels, n) float32 samples at self.rate, starting at sample `start`."""
    import av
    layout = LAYOUTS[self.channels]
    for offset in range(0, planar.shape[1], 1024):
      piece = np.ascontiguousarray(np.clip(planar[:, offset:offset + 1024], -1, 1), np.float32)
      frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
      frame.sample_rate, frame.pts = self.rate, start + offset
      frame.time_base = Fraction(1, self.rate)
      for packet in self.astream.encode(frame):
        self.container.mux(packet)

  def _audio_from_track(self, total: int) -> int:
    import av
    written = 0
    resampler = av.AudioResampler(format="fltp", layout=LAYOUTS[self.channels],
                                  rate=self.rate)
    with av.open(str(self.track)) as source:
      for frame in source.decode(audio=0):
        for out in resampler.resample(frame):
          samples = out.to_ndarray()[:, :total - written]
          if samples.shape[1]:
            self._encode_audio(samples, written)
            written += samples.shape[1]
        if written >= total:
          break
    return written

  def close(self) -> None:
    if self.video is None:
      raise TalkjaxError("no frames were written", path=self.path, fix="write at least one frame")
    for packet in self.video.encode():
      self.container.mux(packet)
    if self.astream is not None:
      total = int(round(self.frames / self.fps * self.rate))
      if self.track is not None:
        written = self._audio_from_track(total)
      else:
        samples = np.asarray(self.audio, np.float32).reshape(1, -1)[:, :total]
        self._encode_audio(samples, 0)
        written = samples.shape[1]
      if written < total:   # shorter than the video: silence to the end
        self._encode_audio(np.zeros((self.channels, total - written), np.float32), written)
      for packet in self.astream.encode():
        self.container.mux(packet)
    self.container.close()

  def abort(self) -> None:
    try:
      self.container.close()
    except Exception:  # the container may be half-initialised; the file is removed anyway
      pass
    if os.path.exists(self.path):
      os.remove(self.path)

  def __enter__(self):
    return self

  def __exit__(self, kind, value, traceback):
    if kind is None:
      self.close()
    else:
      self.abort()


def write_mp4(path, frames: np.ndarray, fps: int, audio: np.ndarray | None = None, *,
              sample_rate: int = SAMPLE_RATE, crf: int = 18) -> None:
  """uint8 frames (T, H, W, 3) and float audio at `sample_rate` (or None) -> an mp4."""
  with Mp4Writer(path, fps, audio=audio, sample_rate=sample_rate, crf=crf) as writer:
    writer.write(frames)


def upright(frame) -> np.ndarray:
  """A decoded PyAV frame as RGB the way players show it: turned by the rotation its file's
  display matrix asks for (phones store portrait video sideways with such a matrix; the
  angle is counterclockwise, as FFmpeg's autorotate applies it)."""
  rgb = frame.to_ndarray(format="rgb24")
  turns = int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) % 4
  return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _check_video_path(path) -> None:
  if not os.path.exists(path):
    raise TalkjaxError("video file not found", path=path, fix="check the path")
  if os.path.isdir(path):
    raise TalkjaxError("is a folder, not a video", path=path, fix="pass a video file")


def _video_stream(container, path):
  if not container.streams.video:
    raise TalkjaxError("the file has no video stream", path=path,
                       fix="pass a video (mp4, mov, webm, ...)")
  return container.streams.video[0]


def read_mp4(path, *, sample_rate: int = SAMPLE_RATE):
  """(frames uint8 (T, H, W, 3), fps, mono float32 audio at sample_rate or None)."""
  import av
  _check_video_path(path)
  try:
    with av.open(str(path)) as container:
      vstream = _video_stream(container, path)
      fps = vstream.average_rate or vstream.guessed_rate
      frames = [upright(f) for f in container.decode(video=0)]
    audio = None
    with av.open(str(path)) as container:
      if container.streams.audio:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pieces = []
        for frame in container.decode(audio=0):
          for out in resampler.resample(frame):
            pieces.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
          pieces.append(out.to_ndarray().reshape(-1))
        audio = np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
  except av.error.FFmpegError as e:
    raise TalkjaxError(f"the video cannot be decoded ({e})", path=path,
                       fix="pass a readable mp4 (H.264/AAC)") from e
  if not frames:
    raise TalkjaxError("the video has no frames", path=path, fix="pass a non-empty video")
  if audio is not None:  # AAC pads its last frame; keep the video's duration
    audio = audio[:int(round(len(frames) / float(fps) * sample_rate))]
  return np.stack(frames), float(fps), audio


def read_frames(path, *, fps: int, count: int) -> tuple[np.ndarray, float]:
  """The first `count` frames of a video as a `fps` video would show them (frame i: the
  source frame on screen at i / fps; a 50 fps file gives every other frame, a 12.5 fps file
  each frame twice), decoding no further: (uint8 (n <= count, H, W, 3), the file's fps)."""
  import av
  _check_video_path(path)
  out: list[np.ndarray] = []
  try:
    with av.open(str(path)) as container:
      stream = _video_stream(container, path)
      rate = float(stream.average_rate or stream.guessed_rate or fps)
      shown, index, start, end = None, 0, 0.0, 0.0
      for frame in container.decode(video=0):
        # where this frame sits (its timestamp, or its index at the file's rate)
        at = (float(frame.pts * frame.time_base) if frame.pts is not None
              and frame.time_base is not None else index / rate)
        if shown is None:
          start = at
        index += 1
        end = at - start + 1.0 / rate
        # every output frame whose moment comes before this frame's shows the frame before
        while shown is not None and len(out) < count and (len(out) / fps) < at - start - 1e-6:
          out.append(shown)
        shown = upright(frame)
        if len(out) >= count:
          break
      # the last frame stays on screen for one source frame
      while shown is not None and len(out) < count and len(out) / fps < end - 1e-6:
        out.append(shown)
  except av.error.FFmpegError as e:
    raise TalkjaxError(f"the video cannot be decoded ({e})", path=path,
                       fix="pass a readable video (e.g. H.264 mp4)") from e
  if not out:
    raise TalkjaxError("the video has no frames", path=path, fix="pass a non-empty video")
  return np.stack(out), rate

