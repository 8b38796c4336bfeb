"""Request inputs -> what a generator takes: a square RGB uint8 portrait and 16 kHz audio.

Images: any mode Pillow reads (RGB, RGBA and LA composited over white, grayscale, palette,
16-bit and float, CMYK), any size; EXIF rotation is applied; an animated image gives its
first frame (with a warning). Images declaring more than `MAX_IMAGE_PIXELS` pixels are
refused before they are decoded. Crops (`crop=`):
- "auto" (the default): the square around the largest face that puts it where the model's
  training data has it (talkjax/data/faces.py); with no face found, a warning and the whole
  image, padded to a square with its border pixels.
- "face": the same, but no face is an error.
- "center": the largest centred square; "none": the whole image resized (may distort).
Every result says which crop was used, and lists its warnings.

Audio: anything `talkjax.audio.load.load_audio` reads (it names the file on any problem);
a file whose header promises more than it holds, and silence, are warned about.
"""

from __future__ import annotations

import os
import warnings as py_warnings
from typing import NamedTuple

import numpy as np

from talkjax.data.faces import Framing
from talkjax.errors import TalkjaxError

CROPS = ("auto", "center", "face", "none")
MIN_SIDE = 32                 # a smaller portrait cannot show a recognisable face
MAX_IMAGE_PIXELS = int(os.environ.get("TALKJAX_MAX_IMAGE_PIXELS", 64_000_000))
# Where SynthTalk (the training data of every shipped model) puts the face: its renderer
# draws the eyes at -0.12 and the mouth at +0.45 face heights (mean height 0.58) from a
# centre at y = 0.02, in a frame that spans [-0.8, 0.8]: the crop is 1.6 / (0.57 * 0.58)
# eye-to-mouth distances wide and their midpoint sits at (0.1157 / 0.8 + 1) / 2 of its
# height. tests/pipelines/test_inputs.py checks these against the renderer.
SYNTHTALK_FRAMING = Framing(scale=4.840, center_y=0.572)


class Portrait(NamedTuple):
  image: np.ndarray           # uint8 (R, R, 3)
  crop: str                   # how it was made, for the result line
  warnings: list


def to_rgb(image) -> np.ndarray:
  """A PIL image of any mode -> uint8 RGB array; transparency is composited over white."""
  from PIL import Image
  if image.mode in ("P", "PA"):
    image = image.convert("RGBA")
  if image.mode in ("RGBA", "LA", "La", "RGBa"):
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(background, image.convert("RGBA"))
  if image.mode.startswith("I;16"):   # 16-bit grey: its full range onto 8 bits
    arr = np.asarray(image).astype(np.float64) / 257.0
    image = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))
  elif image.mode in ("I", "F"):      # 32-bit int or float grey: its own range
    arr = np.asarray(image, np.float64)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    arr = (np.nan_to_num(arr, nan=lo) - lo) / max(hi - lo, 1e-12) * 255.0
    image = Image.fromarray(np.round(arr).astype(np.uint8))
  return np.asarray(image.convert("RGB"))


def _open(path, notes: list) -> np.ndarray:
  from PIL import Image, ImageOps, UnidentifiedImageError
  if os.path.isdir(path):
    raise TalkjaxError("is a folder, not an image", path=path, fix="pass an image file")
  if not os.path.exists(path):
    raise TalkjaxError("image file not found", path=path, fix="check the path")
  previous = Image.MAX_IMAGE_PIXELS
  Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
  try:
    with py_warnings.catch_warnings():
      py_warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(path) as im:
        if getattr(im, "n_frames", 1) > 1:
          notes.append(f"{os.path.basename(path)} is animated ({im.n_frames} frames): the "
                       "first frame is used")
          im.seek(0)
        im.load()
        return to_rgb(ImageOps.exif_transpose(im))
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise TalkjaxError(f"the image declares more pixels than the limit of {MAX_IMAGE_PIXELS:,} "
                       f"({e})", path=path,
                       fix="pass a smaller portrait (or raise TALKJAX_MAX_IMAGE_PIXELS for a "
                           "trusted file)") from None
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
    raise TalkjaxError(f"the image cannot be read ({type(e).__name__}: {e})", path=path,
                       fix="pass a PNG, JPEG, WebP, BMP or TIFF portrait") from e
  finally:
    Image.MAX_IMAGE_PIXELS = previous


def _from_array(source) -> np.ndarray:
  from PIL import Image
  arr = np.asarray(source)
  if arr.ndim == 2:
    arr = np.repeat(arr[..., None], 3, -1)
  if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
    raise TalkjaxError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
  if arr.dtype != np.uint8:
    if not np.all(np.isfinite(arr)):
      raise TalkjaxError("the image array holds NaN or infinite values", fix="clean it")
    arr = np.clip(np.round(arr * 255.0 if arr.max() <= 1.0 else arr), 0, 255).astype(np.uint8)
  return to_rgb(Image.fromarray(arr if arr.shape[-1] != 1 else arr[..., 0]))


def _pad_square(rgb) -> np.ndarray:
  h, w = rgb.shape[:2]
  s = max(h, w)
  top, left = (s - h) // 2, (s - w) // 2
  return np.pad(rgb, ((top, s - h - top), (left, s - w - left), (0, 0)), mode="edge")


def load_image(source, resolution: int, crop: str = "auto",
               framing: Framing = SYNTHTALK_FRAMING) -> Portrait:
  """The portrait of a path or an array (H, W[, C]), cropped and resized to `resolution`."""
  from PIL import Image
  if crop not in CROPS:
    raise TalkjaxError(f"unknown crop {crop!r}", fix=f"use one of {', '.join(CROPS)}")
  notes: list[str] = []
  where = source if isinstance(source, (str, os.PathLike)) else None
  rgb = _open(where, notes) if where is not None else _from_array(source)
  name = os.path.basename(where) if where is not None else "the image"
  h, w = rgb.shape[:2]
  if min(h, w) < MIN_SIDE:
    raise TalkjaxError(f"the image is {w}x{h} pixels, too small to show a face (the short side "
                       f"must be at least {MIN_SIDE} px)", path=where,
                       fix=f"pass a portrait of at least {resolution}x{resolution}")
  if crop in ("auto", "face"):
    from talkjax.data.faces import detect_faces, face_square
    faces = detect_faces(rgb)
    if faces:
      rgb, (left, top, side) = face_square(rgb, faces[0], framing)
      method = (f"face {side}x{side} at ({left}, {top})"
                + (f", largest of {len(faces)} faces" if len(faces) > 1 else ""))
    elif crop == "face":
      raise TalkjaxError("no face found in the image", path=where,
                         fix="pass a portrait with a visible, roughly frontal face, or use "
                             "--crop center")
    else:
      notes.append(f"no face found in {name}: the whole image is used, padded to a square")
      rgb, method = _pad_square(rgb), "whole image (no face found)"
  elif crop == "center":
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    rgb = rgb[top:top + s, left:left + s]
    method = f"center square {s}x{s} at ({left}, {top})" if h != w else "center (already square)"
  else:
    method = "none (whole image resized)"
  if min(rgb.shape[:2]) < resolution:
    notes.append(f"{name}: the portrait is {rgb.shape[1]}x{rgb.shape[0]} px, upscaled to the "
                 f"model's {resolution}x{resolution}: expect a soft video")
  if rgb.shape[0] != resolution or rgb.shape[1] != resolution:
    rgb = np.asarray(Image.fromarray(rgb).resize((resolution, resolution), Image.LANCZOS))
  return Portrait(rgb, method, notes)


def load_request_audio(source, *, what: str = "audio", notes: list | None = None,
                       separator=None) -> np.ndarray:
  """16 kHz mono float32 from a path (any format the audio front-end reads) or an array.
  Warnings (a truncated file, silence) are appended to `notes`. With `separator` (a
  `talkjax.audio.separate.VocalSeparator`), the vocal stem: separated from the file at the
  separator's rate (an array is separated from its 16 kHz samples), then loudness-normalised
  like any input."""
  from talkjax.audio.load import SILENCE_RMS, load_audio, normalize_loudness, resample
  if isinstance(source, (str, os.PathLike)):
    if os.path.isdir(source):
      raise TalkjaxError(f"is a folder, not an {what} file", path=source,
                         fix=f"pass an {what} file (wav, flac, mp3, m4a, ogg)")
    if separator is None:
      audio = load_audio(source, notes=notes)
    else:
      from talkjax.audio.separate import RATE
      full = load_audio(source, sample_rate=RATE, loudness_dbfs=None, notes=notes)
      audio = normalize_loudness(resample(separator(full, RATE), RATE))
  else:
    audio = np.asarray(source, np.float32).reshape(-1)
    if audio.size < 640:
      raise TalkjaxError(f"the {what} has {audio.size} samples, shorter than one video frame "
                         "(640 at 16 kHz, 25 fps)", fix="give at least 40 ms of audio")
    if not np.all(np.isfinite(audio)):
      raise TalkjaxError(f"the {what} contains NaN or infinite samples", fix="clean the signal")
    if separator is not None:
      audio = normalize_loudness(separator(audio, 16000))
  if notes is not None and float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < SILENCE_RMS:
    notes.append(f"the {what} is silent: the face will barely move")
  return audio
