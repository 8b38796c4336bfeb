"""One item -> one example (encoded frames, 16 kHz speech, per-frame labels), or a Skip.

Runs in the build's worker processes. Two passes over the video: the first finds the face
on every `detect_every`-th output frame, the second crops, resizes and encodes every frame,
so memory holds one frame at a time whatever the clip's length. Everything is checked
before the second (expensive) pass: frame rate, size, audio presence and level, the
audio/video durations, the face.
"""

from __future__ import annotations

import io
import re

import numpy as np

from talkjax_datasets.real import media as media_lib
from talkjax_datasets.real import track as track_lib
from talkjax_datasets.real.items import Item, Skip
from talkjax_datasets.real.media import MediaError
from talkjax_datasets.real.options import BuildOptions

SAMPLE_RATE = 16000


def encode(frame: np.ndarray, image_format: str) -> bytes:
  from PIL import Image
  buf = io.BytesIO()
  if image_format == "png":
    Image.fromarray(frame).save(buf, format="PNG", optimize=False)
  else:
    Image.fromarray(frame).save(buf, format="JPEG", quality=92)
  return buf.getvalue()


def rms_dbfs(x: np.ndarray) -> float:
  rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
  return 20 * np.log10(max(rms, 1e-12))


def process(item: Item, options: BuildOptions):
  """-> (example dict, stats dict) or a Skip."""
  try:
    return _process(item, options)
  except MediaError as e:
    detail = e.detail
    for media in (item.video, item.audio, item.partner_audio):
      if media is not None and media.member:   # name the archive member, not its temp copy
        detail = re.sub(r"/\S*talkjax-member-[^/]+/" + re.escape(media.member.rsplit("/", 1)[-1]),
                        str(media), detail)
    return Skip(item.describe(), e.reason, detail)


def _check_video(info, path, options):
  if not options.min_source_fps <= info.fps <= options.max_source_fps:
    raise MediaError("unsupported frame rate",
                     f"{path}: {info.fps:g} fps (accepted {options.min_source_fps:g}-"
                     f"{options.max_source_fps:g})")
  if min(info.width, info.height) < options.min_source_side:
    raise MediaError("resolution too small", f"{path}: {info.width}x{info.height} "
                     f"(the smaller side must be >= {options.min_source_side} px)")


def _track(item, path, info, options):
  """Face squares (frames, 3) and the frame count, from the first pass."""
  from talkjax.data.faces import Framing, detect_faces
  framing = Framing(options.framing_scale, options.framing_center_y)
  at, detections, count = [], [], 0
  for k, frame in media_lib.frames(path, options.fps, item.span, stream_start=info.start):
    count = k + 1
    if item.crop is None and k % options.detect_every == 0:
      at.append(k)
      detections.append(detect_faces(frame, min_face_size=max(20, min(frame.shape[:2]) // 10)))
  if item.crop is not None:
    scale = info.height / item.crop_height if item.crop_height else 1.0
    left, top, side = (v * scale for v in item.crop)
    return np.tile([left + side / 2, top + side / 2, side], (count, 1)), count, 1.0
  picked = track_lib.follow(detections, framing)
  found = [(k, s) for k, s in zip(at, picked) if s is not None]
  if not found:
    raise MediaError("no face found", f"{path}: no face in {len(at)} sampled frames")
  share = len(found) / len(at)
  if share < options.min_face_share:
    raise MediaError("face lost", f"{path}: a face in {len(found)} of {len(at)} sampled frames "
                     f"(at least {options.min_face_share:.0%} needed)")
  squares = track_lib.smooth_squares(np.array([k for k, _ in found], float),
                                     np.stack([s for _, s in found]), count, fps=options.fps,
                                     sigma_s=options.smooth_seconds)
  if options.crop == "fixed":
    squares = np.tile(np.median(squares, axis=0), (count, 1))
  return squares, count, share


def _speech(media, video_path, info, item, *, own_track: bool):
  with media_lib.local_file(media) as path:
    if own_track and not media_lib.has_stream(path, "audio"):
      raise MediaError("missing audio", f"{path}: the video has no audio stream")
    if not own_track and media_lib.has_stream(path, "video"):
      info = media_lib.probe(path)   # another camera's sound: its own streams' offset
    offset = (info.audio_start - info.start) if info.audio_start is not None else 0.0
    if not own_track and not media_lib.has_stream(path, "video"):
      offset = 0.0                   # a plain audio file starts at the video's time 0
    return media_lib.speech(path, offset=offset, span=item.span)


def _process(item: Item, options: BuildOptions):
  from talkjax.audio.load import normalize_loudness
  with media_lib.local_file(item.video) as path:
    info = media_lib.probe(path)
    _check_video(info, item.video, options)
    own = item.audio is None
    audio, audio_seconds = _speech(item.video if own else item.audio, path, info, item, own_track=own)
    partner = partner_seconds = None
    if item.partner_audio is not None:
      partner, partner_seconds = _speech(item.partner_audio, path, info, item, own_track=False)
    level = rms_dbfs(audio)
    if level < options.silence_dbfs and (partner is None or rms_dbfs(partner) < options.silence_dbfs):
      raise MediaError("silent audio", f"{item.describe()}: speech RMS {level:.0f} dBFS "
                       f"(below {options.silence_dbfs:g})")
    squares, count, face_share = _track(item, path, info, options)
    seconds = count / options.fps
    if seconds < options.min_seconds:
      raise MediaError("too short", f"{item.describe()}: {seconds:.2f} s "
                       f"(at least {options.min_seconds:g} s)")
    for which, length in (("audio", audio_seconds), ("partner audio", partner_seconds)):
      if length is not None and abs(length - seconds) > options.max_av_mismatch:
        raise MediaError("audio/video length mismatch",
                         f"{item.describe()}: {which} {length:.2f} s, video {seconds:.2f} s "
                         f"(tolerance {options.max_av_mismatch:g} s)")
    encoded = [b""] * count
    done = 0
    for k, frame in media_lib.frames(path, options.fps, item.span, stream_start=info.start):
      if k >= count:
        break
      encoded[k] = encode(track_lib.crop_frame(frame, squares[k], options.resolution),
                          options.image_format)
      done = k + 1
    if done < count:
      raise MediaError("unreadable video", f"{item.describe()}: the second pass decoded {done} "
                       f"of {count} frames")
  samples = int(round(count * SAMPLE_RATE / options.fps))
  fit = lambda x: np.pad(x, (0, max(0, samples - len(x))))[:samples].astype(np.float32)
  example = {
      "frames": encoded,
      "audio": fit(normalize_loudness(audio)),
      "emotion": np.full(count, item.emotion, np.int32),
      "intensity": np.full(count, item.intensity, np.int32),
      "speaking": _speaking(item.turns, count, options.fps),
  }
  if partner is not None:
    example["partner_audio"] = fit(normalize_loudness(partner))
  stats = {"source_fps": round(info.fps, 3), "source_size": [info.width, info.height],
           "seconds": round(seconds, 3), "face_share": round(face_share, 3),
           "audio_dbfs": round(float(level), 1)}
  return example, stats


def _speaking(turns, count, fps):
  """1 where frame k's time (k + 0.5) / fps falls in one of the agent's turns, 0 outside;
  -1 everywhere when the item has no turn metadata."""
  if turns is None:
    return np.full(count, -1, np.int32)
  t = (np.arange(count) + 0.5) / fps
  on = np.zeros(count, bool)
  for start, end in turns:
    on |= (t >= start) & (t < end)
  return on.astype(np.int32)
