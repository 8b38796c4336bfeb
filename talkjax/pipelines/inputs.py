"""Request inputs -> what a generator takes: a square RGB uint8 portrait and 16 kHz audio.

Images: any mode Pillow reads (RGB, RGBA and LA composited over white, grayscale, palette,
16-bit), any size. The portrait is cropped to a square and resized to the model's resolution.
`crop="auto"` (the default) centres the square on the face when a face detector is
available and on the image otherwise; this version ships no detector, so auto means centre.
`crop="center"` takes the largest centred square; `crop="face"` insists on the detector and
stops with a clear error rather than silently cropping somewhere else; `crop="none"`
resizes the whole image. Every result says which crop was used.
Audio: anything `talkjax.audio.load.load_audio` reads (it names the file on any problem).
"""

from __future__ import annotations

import os

import numpy as np

from talkjax.errors import MissingCapabilityError, TalkjaxError

CROPS = ("auto", "center", "face", "none")


def to_rgb(image) -> np.ndarray:
  """A PIL image of any mode -> uint8 RGB array; transparency is composited over white."""
  from PIL import Image
  if image.mode in ("P", "PA"):
    image = image.convert("RGBA")
  if image.mode in ("RGBA", "LA"):
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(background, image.convert("RGBA"))
  if image.mode in ("I;16", "I;16B", "I;16L", "I"):
    arr = np.asarray(image, np.float64)
    arr = arr / max(arr.max(), 1.0) * 255.0
    image = Image.fromarray(arr.astype(np.uint8))
  return np.asarray(image.convert("RGB"))


def load_image(source, resolution: int, crop: str = "auto") -> tuple[np.ndarray, str]:
  """(uint8 (R, R, 3), how it was cropped) from a path or an array (H, W[, C])."""
  from PIL import Image, UnidentifiedImageError
  if crop not in CROPS:
    raise TalkjaxError(f"unknown crop {crop!r}", fix=f"use one of {', '.join(CROPS)}")
  where = source if isinstance(source, (str, os.PathLike)) else None
  if where is not None:
    if not os.path.exists(where):
      raise TalkjaxError("image file not found", path=where, fix="check the path")
    try:
      with Image.open(where) as im:
        im.load()
        rgb = to_rgb(im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
      raise TalkjaxError(f"the image cannot be read ({type(e).__name__}: {e})", path=where,
                         fix="pass a PNG, JPEG, WebP, BMP or TIFF portrait") from e
  else:
    arr = np.asarray(source)
    if arr.ndim == 2:
      arr = np.repeat(arr[..., None], 3, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
      raise TalkjaxError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.dtype != np.uint8:
      arr = np.clip(np.round(arr * 255.0 if arr.max() <= 1.0 else arr), 0, 255).astype(np.uint8)
    rgb = to_rgb(Image.fromarray(arr if arr.shape[-1] != 1 else arr[..., 0]))
  h, w = rgb.shape[:2]
  if min(h, w) < 8:
    raise TalkjaxError(f"the image is {w}x{h} pixels, too small to hold a face", path=where,
                       fix="pass a portrait of at least the model's resolution")
  if crop == "face":
    raise MissingCapabilityError(
        "crop='face' needs a face detector, which this version of talkjax does not ship",
        path=where, fix="use --crop center (a centred square) with a face-centred portrait; "
                        "the detector arrives with the real-datasets work")
  method = "none (whole image resized)"
  if crop in ("center", "auto"):
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    rgb = rgb[top:top + s, left:left + s]
    method = f"center square {s}x{s} at ({left}, {top})" if h != w else "center (already square)"
    if crop == "auto":
      method += "; no face detector in this version"
  if rgb.shape[0] != resolution or rgb.shape[1] != resolution:
    rgb = np.asarray(Image.fromarray(rgb).resize((resolution, resolution), Image.LANCZOS))
  return rgb, method


def load_request_audio(source, *, what: str = "audio") -> np.ndarray:
  """16 kHz mono float32 from a path (any format the audio front-end reads) or an array."""
  from talkjax.audio.load import load_audio
  if isinstance(source, (str, os.PathLike)):
    return load_audio(source)
  audio = np.asarray(source, np.float32).reshape(-1)
  if audio.size < 640:
    raise TalkjaxError(f"the {what} has {audio.size} samples, shorter than one video frame "
                       "(640 at 16 kHz, 25 fps)", fix="give at least 40 ms of audio")
  if not np.all(np.isfinite(audio)):
    raise TalkjaxError(f"the {what} contains NaN or infinite samples", fix="clean the signal")
  return audio
