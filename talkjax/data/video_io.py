"""mp4 in and out with PyAV: H.264 video + AAC audio, muxed in sync.

`write_mp4(path, frames, fps, audio=None)` takes uint8 frames (T, H, W, 3) and float audio
at 16 kHz; `read_mp4(path)` returns (frames uint8 (T, H, W, 3), fps, audio float32 at
16 kHz or None). Used by the data preview, the sampling pipeline and `talkjax eval`.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

from talkjax.errors import TalkjaxError

SAMPLE_RATE = 16000


def write_mp4(path, frames: np.ndarray, fps: int, audio: np.ndarray | None = None, *,
              sample_rate: int = SAMPLE_RATE, crf: int = 18) -> None:
  import av
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise TalkjaxError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}",
                       path=path, fix="convert with np.clip(x * 255, 0, 255).astype(np.uint8)")
  if not (isinstance(fps, (int, np.integer)) and fps > 0):
    raise TalkjaxError(f"fps must be a positive integer, got {fps}", path=path)
  t, h, w, _ = frames.shape
  if h % 2 or w % 2:  # yuv420p needs even sizes
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with av.open(str(path), mode="w", format="mp4") as container:
    video = container.add_stream("libx264", rate=int(fps))
    video.width, video.height = frames.shape[2], frames.shape[1]
    video.pix_fmt = "yuv420p"
    video.options = {"crf": str(crf), "preset": "veryfast"}
    astream = None
    if audio is not None:
      astream = container.add_stream("aac", rate=sample_rate)
      astream.layout = "mono"
    for frame in frames:
      for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in video.encode():
      container.mux(packet)
    if astream is not None:
      samples = np.clip(np.asarray(audio, np.float32), -1, 1)[None, :]
      chunk = 1024
      for start in range(0, samples.shape[1], chunk):
        piece = np.ascontiguousarray(samples[:, start:start + chunk])
        aframe = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
        aframe.sample_rate = sample_rate
        aframe.pts = start
        aframe.time_base = Fraction(1, sample_rate)
        for packet in astream.encode(aframe):
          container.mux(packet)
      for packet in astream.encode():
        container.mux(packet)


def read_mp4(path, *, sample_rate: int = SAMPLE_RATE):
  """(frames uint8 (T, H, W, 3), fps, mono float32 audio at sample_rate or None)."""
  import av
  if not os.path.exists(path):
    raise TalkjaxError("video file not found", path=path, fix="check the path")
  try:
    with av.open(str(path)) as container:
      if not container.streams.video:
        raise TalkjaxError("the file has no video stream", path=path,
                           fix="pass an mp4 with video")
      vstream = container.streams.video[0]
      fps = vstream.average_rate or vstream.guessed_rate
      frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
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

