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


def _cut(rgb, box) -> np.ndarray:
  """`cut_square` of the box, or the whole image for None (crop "none")."""
  from talkjax.data.faces import cut_square
  return rgb if box is None else cut_square(rgb, box)


def _crop_box(rgb, crop: str, framing: Framing, where, notes: list, name: str):
  """(the square of `rgb` the crop takes — (left, top, side), None for the whole image —,
  a line saying how it was chosen); `crop` is one of CROPS (checked by the callers)."""
  h, w = rgb.shape[:2]
  if min(h, w) < MIN_SIDE:
    raise TalkjaxError(f"the {name} is {w}x{h} pixels, too small to show a face (the short "
                       f"side must be at least {MIN_SIDE} px)", path=where,
                       fix=f"pass a larger {name}")
  if crop in ("auto", "face"):
    from talkjax.data.faces import detect_faces, face_box
    faces = detect_faces(rgb)
    if faces:
      box = face_box(faces[0], framing)
      return box, (f"face {box[2]}x{box[2]} at ({box[0]}, {box[1]})"
                   + (f", largest of {len(faces)} faces" if len(faces) > 1 else ""))
    if crop == "face":
      raise TalkjaxError(f"no face found in the {name}", path=where,
                         fix="pass one with a visible, roughly frontal face, or use --crop center")
    notes.append(f"no face found in {os.path.basename(where) if where else 'the ' + name}: "
                 "the whole image is used, padded to a square")
    s = max(h, w)
    return (-((s - w) // 2), -((s - h) // 2), s), "whole image (no face found)"
  if crop == "center":
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return (left, top, s), (f"center square {s}x{s} at ({left}, {top})" if h != w
                            else "center (already square)")
  return None, "none (whole image resized)"


def _resized(rgb, resolution: int) -> np.ndarray:
  from PIL import Image
  if rgb.shape[0] != resolution or rgb.shape[1] != resolution:
    rgb = np.asarray(Image.fromarray(rgb).resize((resolution, resolution), Image.LANCZOS))
  return rgb


def load_image(source, resolution: int, crop: str = "auto",
               framing: Framing = SYNTHTALK_FRAMING) -> Portrait:
  """The portrait of a path or an array (H, W[, C]), cropped and resized to `resolution`."""
  if crop not in CROPS:
    raise TalkjaxError(f"unknown crop {crop!r}", fix=f"use one of {', '.join(CROPS)}")
  notes: list[str] = []
  where = source if isinstance(source, (str, os.PathLike)) else None
  rgb = _open(where, notes) if where is not None else _from_array(source)
  name = os.path.basename(where) if where is not None else "the image"
  box, method = _crop_box(rgb, crop, framing, where, notes, "image")
  rgb = _cut(rgb, box)
  if min(rgb.shape[:2]) < resolution:
    notes.append(f"{name}: the portrait is {rgb.shape[1]}x{rgb.shape[0]} px, upscaled to the "
                 f"model's {resolution}x{resolution}: expect a soft video")
  return Portrait(_resized(rgb, resolution), method, notes)


def load_reference_clip(source, resolution: int, crop: str = "auto",
                        framing: Framing = SYNTHTALK_FRAMING, *, fps: int = 25,
                        frames: int) -> Portrait:
  """`frames` frames of a reference video (a path PyAV reads, or uint8 frames (T, H, W, 3)
  taken to be at `fps`) from its start, at `fps`, each cropped like a portrait and resized
  to `resolution`: (uint8 (frames, R, R, 3), how they were cropped, warnings). The crop is
  chosen on the first frame and kept for all (a crop that followed the face would hide the
  head motion the clip is there to show). A clip shorter than `frames` is repeated from its
  start, as training does with a short reference stretch (with a warning)."""
  from talkjax.data.video_io import read_frames
  if crop not in CROPS:
    raise TalkjaxError(f"unknown crop {crop!r}", fix=f"use one of {', '.join(CROPS)}")
  notes: list[str] = []
  where = source if isinstance(source, (str, os.PathLike)) else None
  if where is not None:
    clip = read_frames(where, fps=fps, count=frames)[0]
  else:
    clip = np.asarray(source)
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8 or not len(clip):
      raise TalkjaxError(f"a reference clip array must be uint8 frames (T, H, W, 3), got "
                         f"{clip.dtype} {clip.shape}", fix="pass a video file's path or its frames")
    clip = clip[:frames]
  name = os.path.basename(where) if where is not None else "the reference clip"
  box, method = _crop_box(clip[0], crop, framing, where, notes, "reference clip")
  if len(clip) < frames:
    notes.append(f"{name} holds {len(clip)} frames at {fps} fps; the style is read from "
                 f"{frames} ({frames / fps:.1f} s): its frames are repeated")
  cut = np.stack([_resized(np.ascontiguousarray(_cut(f, box)), resolution) for f in clip])
  return Portrait(cut[np.resize(np.arange(len(cut)), frames)], method, notes)


def style_request(hook, source, resolution: int, crop: str, framing: Framing = SYNTHTALK_FRAMING,
                  *, fps: int) -> tuple[dict, list]:
  """({"style_video": the reference clip's frames} for `hook.request_inputs` — {} without a
  clip —, its warnings); a clip for a hook that takes none is a one-line error."""
  if source is None:
    return {}, []
  if "style_video" not in hook.accepts:
    raise TalkjaxError(f"this {hook.config.family} model takes no style video",
                       fix=getattr(hook, "refusals", {}).get(
                           "style_video", "drop it, or use a family that takes it"))
  clip = load_reference_clip(source, resolution, crop, framing, fps=fps,
                             frames=int(hook.style_frames))
  return {"style_video": clip.image}, list(clip.warnings)


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
