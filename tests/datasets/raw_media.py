"""Real media files for the real-dataset tests: H.264 mp4 (with or without an AAC track),
m4a and wav speech, all written with PyAV / soundfile. The face is a real photograph
(scikit-image's astronaut) moved about a plain background, so the real face detector runs
on it; the speech is a voiced, syllable-modulated signal (loud enough not to be silence)."""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

SAMPLE_RATE = 16000


@functools.lru_cache(maxsize=4)
def face(size: int) -> np.ndarray:
  import skimage.data
  from PIL import Image
  photo = skimage.data.astronaut()[20:320, 100:400]   # head and shoulders, 300 x 300
  return np.asarray(Image.fromarray(photo).resize((size, size), Image.Resampling.BILINEAR))


def frame_at(t: float, width: int, height: int, face_size: int, *, with_face=True,
             drift: float = 0.0, background=(70, 90, 110)) -> np.ndarray:
  """The frame at time t: the face moving on a slow circle (+ a steady drift in px/s)."""
  img = np.full((height, width, 3), background, np.uint8)
  if not with_face:
    return img
  f = face(face_size)
  cx = width / 2 + 0.06 * width * np.sin(2 * np.pi * 0.4 * t) + drift * t
  cy = height / 2 + 0.04 * height * np.cos(2 * np.pi * 0.3 * t)
  x0, y0 = int(round(cx - face_size / 2)), int(round(cy - face_size / 2))
  xs, ys = max(0, x0), max(0, y0)
  xe, ye = min(width, x0 + face_size), min(height, y0 + face_size)
  img[ys:ye, xs:xe] = f[ys - y0:ye - y0, xs - x0:xe - x0]
  return img


def speech(seconds: float, rate: int = SAMPLE_RATE, *, seed: int = 0, level: float = 0.3,
           channels: int = 1) -> np.ndarray:
  """(samples, channels) float32: a 120-220 Hz voice in 4 Hz syllables."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(round(seconds * rate))) / rate
  pitch = 120 + 100 * rng.random()
  voice = sum(np.sin(2 * np.pi * pitch * h * t) / h for h in (1, 2, 3))
  syllables = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.random() * 6))
  x = (level * voice * syllables / 1.8).astype(np.float32)
  return np.repeat(x[:, None], channels, axis=1)


def write_video(path, *, seconds: float = 1.2, fps: float = 25, size=(160, 120),
                face_size: int = 64, audio: np.ndarray | None = None,
                audio_rate: int = SAMPLE_RATE, with_face=True, drift: float = 0.0,
                background=(70, 90, 110)) -> None:
  """An mp4: H.264 frames and, when `audio` (samples, channels) is given, an AAC track."""
  import av
  width, height = size
  rate = Fraction(fps).limit_denominator(1001)
  with av.open(str(path), "w", format="mp4") as out:
    v = out.add_stream("libx264", rate=rate)
    v.width, v.height, v.pix_fmt = width, height, "yuv420p"
    v.options = {"crf": "20", "preset": "veryfast"}
    a = None
    if audio is not None:
      a = out.add_stream("aac", rate=audio_rate)
      a.layout = "mono" if audio.shape[1] == 1 else "stereo"
    for k in range(int(round(seconds * float(rate)))):
      frame = av.VideoFrame.from_ndarray(
          frame_at(k / float(rate), width, height, face_size, with_face=with_face, drift=drift,
                   background=background),
          format="rgb24")
      for packet in v.encode(frame):
        out.mux(packet)
    for packet in v.encode():
      out.mux(packet)
    if a is not None:
      _encode_audio(out, a, audio, audio_rate)


def _encode_audio(container, stream, audio, rate):
  import av
  planar = np.ascontiguousarray(audio.T.astype(np.float32))
  for offset in range(0, planar.shape[1], 1024):
    frame = av.AudioFrame.from_ndarray(planar[:, offset:offset + 1024].copy(), format="fltp",
                                       layout=stream.layout.name)
    frame.sample_rate, frame.pts = rate, offset
    frame.time_base = Fraction(1, rate)
    for packet in stream.encode(frame):
      container.mux(packet)
  for packet in stream.encode():
    container.mux(packet)


def write_m4a(path, audio: np.ndarray, rate: int = 48000) -> None:
  """AAC in an MPEG-4 audio file, as MEAD ships its speech."""
  import av
  with av.open(str(path), "w", format="ipod") as out:
    stream = out.add_stream("aac", rate=rate)
    stream.layout = "mono" if audio.shape[1] == 1 else "stereo"
    _encode_audio(out, stream, audio, rate)


def write_wav(path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
  import soundfile as sf
  sf.write(str(path), audio, rate, subtype="PCM_16")


def truncate(path, keep: float = 0.5) -> None:
  """Cut a file to a share of its bytes (a download that stopped)."""
  data = open(path, "rb").read()
  open(path, "wb").write(data[:int(len(data) * keep)])
