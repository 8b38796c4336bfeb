"""The face square of every frame of a clip, from detections on every few frames.

Detections (MTCNN, talkjax/data/faces.py) give the eyes and mouth; each becomes the square
the training framing puts around them (centre x, centre y, side). The largest face starts
the track and later detections follow the face nearest the previous one, so a second
person in the background does not pull the crop away. Squares are interpolated between
detections, held before the first and after the last, and smoothed over time with a
Gaussian. `fixed` crops use one square for the whole clip (the median of the smoothed
track, as HDTF's annotated crops are fixed): the head then moves inside the frame, which is
the motion the generators learn; `track` crops follow the smoothed track.
"""

from __future__ import annotations

import numpy as np

CROP_MODES = ("fixed", "track")


def square_of(face, framing) -> np.ndarray:
  """(cx, cy, side) of the framing's square around a detected face."""
  eyes = face.landmarks[0:2].mean(0)
  mouth = face.landmarks[3:5].mean(0)
  middle = (eyes + mouth) / 2
  side = framing.scale * float(np.linalg.norm(mouth - eyes))
  return np.array([middle[0], middle[1] + (0.5 - framing.center_y) * side, side])


def follow(detections: list, framing) -> list:
  """Per detected frame: the square of the tracked face, or None (no face there)."""
  out, previous = [], None
  for faces in detections:
    if not faces:
      out.append(None)
      continue
    squares = [square_of(f, framing) for f in faces]
    if previous is None:
      pick = squares[0]   # detect_faces lists the largest first
    else:
      pick = min(squares, key=lambda s: np.hypot(*(s[:2] - previous[:2])) / previous[2])
    out.append(pick)
    previous = pick
  return out


def smooth_squares(at: np.ndarray, squares: np.ndarray, frames: int, *, fps: float,
                   sigma_s: float) -> np.ndarray:
  """(frames, 3) squares: linear interpolation of the detected ones (frame numbers `at`),
  held at the ends, then a Gaussian of `sigma_s` seconds along time (edges reflected)."""
  t = np.arange(frames)
  track = np.stack([np.interp(t, at, squares[:, j]) for j in range(3)], axis=1)
  sigma = sigma_s * fps
  if sigma <= 0 or frames < 2:
    return track
  radius = int(np.ceil(3 * sigma))
  kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  kernel /= kernel.sum()
  padded = np.pad(track, ((radius, radius), (0, 0)), mode="reflect" if frames > radius else "edge")
  return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(3)], axis=1)


def crop_frame(frame: np.ndarray, square, resolution: int) -> np.ndarray:
  """The square (cx, cy, side) of a uint8 frame resized to resolution^2 (Lanczos), the
  border pixels repeated where the square leaves the frame. Sub-pixel positions are kept,
  so a tracked crop does not jitter by whole pixels."""
  from PIL import Image
  cx, cy, side = (float(v) for v in square)
  left, top = cx - side / 2, cy - side / 2
  h, w = frame.shape[:2]
  pad = int(np.ceil(max(0.0, -left, -top, left + side - w, top + side - h))) + 1
  if pad > 1:
    frame = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    left, top = left + pad, top + pad
  image = Image.fromarray(frame)
  return np.asarray(image.resize((resolution, resolution), Image.Resampling.LANCZOS,
                                 box=(left, top, left + side, top + side)))
