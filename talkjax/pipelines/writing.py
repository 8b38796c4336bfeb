"""Writing a pipeline result: mp4 (H.264 + AAC, audio muxed in sync), PNG frames, GIF preview.

`ResultWriter` takes a video's frames piece by piece as the sampler makes them, so writing
a ten-minute video holds no more than one piece; the mp4 appears under its name only when
complete (it is written as NAME.partial.mp4 first). Its sound is the user's own track when
the audio came from a file (re-encoded as AAC at the file's sample rate and channels, cut
or padded to the video), else the audio the model heard.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from talkjax.data.video_io import Mp4Writer
from talkjax.errors import TalkjaxError

MAX_VIEW_SIZE = 2048      # --view-size above this is refused: frames are kept in memory per piece
GIF_MAX_SECONDS = 30.0    # a GIF is a preview: its first 30 s at most


def upscale(frames: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of uint8 (T, R, R, 3) frames to (T, size, size, 3) for viewing."""
  if size <= 0 or size == frames.shape[1]:
    return frames
  from PIL import Image
  return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in frames])


def check_view_size(view_size: int) -> int:
  if view_size != 0 and not 16 <= view_size <= MAX_VIEW_SIZE:
    raise TalkjaxError(f"--view-size {view_size} is out of range",
                       fix=f"give 0 (the model's size) or 16..{MAX_VIEW_SIZE} pixels")
  return view_size


def check_writable(path) -> None:
  """Fails now, with the path, if a file cannot be created at `path` (before any sampling)."""
  path = pathlib.Path(path)
  parent = path.parent
  try:
    if path.is_dir():
      raise TalkjaxError("the output path is a folder", path=path, fix="name an output file")
    parent.mkdir(parents=True, exist_ok=True)
    probe = parent / f".{path.name}.talkjax-write-test"
    probe.write_bytes(b"")
    probe.unlink()
  except OSError as e:
    raise TalkjaxError(f"cannot write there ({e.strerror or type(e).__name__})", path=path,
                       fix="choose an output folder you can write to") from None


class ResultWriter:
  def __init__(self, mp4_path, fps: int, *, audio=None, track=None, png_dir=None, gif_path=None,
               view_size: int = 0):
    self.mp4_path = pathlib.Path(mp4_path)
    self.partial = self.mp4_path.with_name(self.mp4_path.stem + ".partial.mp4")
    self.fps, self.view_size = int(fps), check_view_size(view_size)
    self.png_dir = pathlib.Path(png_dir) if png_dir else None
    self.gif_path, self.gif_frames, self.gif_step = gif_path, [], max(1, self.fps // 12)
    self.count = 0
    self.notes: list[str] = []
    self.mp4 = Mp4Writer(self.partial, self.fps, audio=audio, track=track)
    if self.png_dir:
      self.png_dir.mkdir(parents=True, exist_ok=True)

  def write(self, frames: np.ndarray) -> None:
    from PIL import Image
    frames = upscale(frames, self.view_size)
    self.mp4.write(frames)
    if self.png_dir:
      for i, frame in enumerate(frames, self.count):
        Image.fromarray(frame).save(self.png_dir / f"{i:05d}.png")
    if self.gif_path:
      limit = int(GIF_MAX_SECONDS * self.fps)
      for i in range(self.count, min(self.count + len(frames), limit)):
        if i % self.gif_step == 0:
          self.gif_frames.append(Image.fromarray(frames[i - self.count]))
    self.count += len(frames)

  def close(self) -> list[str]:
    """Finishes every file; returns their paths."""
    self.mp4.close()
    os.replace(self.partial, self.mp4_path)  # never leave a half-written mp4 under the final name
    written = [str(self.mp4_path)]
    if self.png_dir:
      written.append(str(self.png_dir))
    if self.gif_path:
      if self.count > GIF_MAX_SECONDS * self.fps:
        self.notes.append(f"the GIF preview holds the first {GIF_MAX_SECONDS:.0f} s")
      first, *rest = self.gif_frames
      first.save(self.gif_path, save_all=True, append_images=rest,
                 duration=int(1000 * self.gif_step / self.fps), loop=0)
      written.append(str(self.gif_path))
    return written

  def abort(self) -> None:
    self.mp4.abort()


def write_result(result, mp4_path, *, png_dir=None, gif_path=None, view_size: int = 0) -> list[str]:
  """Writes a result held in memory; returns the paths. The mp4 holds exactly len(frames)
  frames and the result's sound track (the user's file, else the audio the model heard)."""
  writer = ResultWriter(mp4_path, result.fps, audio=result.audio, track=result.track,
                        png_dir=png_dir, gif_path=gif_path, view_size=view_size)
  try:
    writer.write(result.frames)
    return writer.close()
  except BaseException:
    writer.abort()
    raise
