"""Writing a pipeline result: mp4 (H.264 + AAC, audio muxed in sync), PNG frames, GIF preview."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from talkjax.data.video_io import write_mp4


def upscale(frames: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of uint8 (T, R, R, 3) frames to (T, size, size, 3) for viewing."""
  if size <= 0 or size == frames.shape[1]:
    return frames
  from PIL import Image
  return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in frames])


def write_result(result, mp4_path, *, png_dir=None, gif_path=None, view_size: int = 0) -> list[str]:
  """Writes the result's files; returns their paths. The mp4 holds exactly len(frames)
  frames and the audio that drove them (padded or cut to the same duration)."""
  from PIL import Image
  frames = upscale(result.frames, view_size)
  written = []
  mp4_path = pathlib.Path(mp4_path)
  tmp = mp4_path.with_name(mp4_path.stem + ".partial.mp4")
  write_mp4(tmp, frames, int(result.fps), result.audio)
  os.replace(tmp, mp4_path)  # never leave a half-written mp4 under the final name
  written.append(str(mp4_path))
  if png_dir:
    png_dir = pathlib.Path(png_dir)
    png_dir.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
      Image.fromarray(frame).save(png_dir / f"{i:05d}.png")
    written.append(str(png_dir))
  if gif_path:
    step = max(1, int(result.fps) // 12)   # a light preview: ~12 frames per second
    images = [Image.fromarray(f) for f in frames[::step]]
    images[0].save(gif_path, save_all=True, append_images=images[1:],
                   duration=int(1000 * step / result.fps), loop=0)
    written.append(str(gif_path))
  return written
