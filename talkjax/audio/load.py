"""Loading any common audio file as mono float32 at 16 kHz, loudness normalised.

Decoding: libsndfile (via soundfile) reads wav, flac and ogg (and mp3 where the system
library supports it); everything else, or whatever libsndfile refuses (m4a/aac, mp3 on old
libsndfile), is decoded with FFmpeg through PyAV. Resampling uses soxr at its very-high
quality setting (linear phase, steep anti-alias filter), so a tone above the new Nyquist
frequency is removed instead of folding back into the speech band.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np

from talkjax.errors import TalkjaxError

SAMPLE_RATE = 16000
# Loudness target: RMS level of the whole clip in dB relative to full scale. -20 dBFS keeps
# typical speech peaks below full scale; the peak limit below handles the rest.
DEFAULT_LOUDNESS_DBFS = -20.0
PEAK_LIMIT = 0.99
# RMS below this (about -140 dBFS) is treated as silence and left untouched: scaling it up
# would only amplify dither and rounding noise.
SILENCE_RMS = 1e-7

Channel = Union[str, int]


def _decode_soundfile(path: str):
  import soundfile as sf
  data, rate = sf.read(path, dtype="float32", always_2d=True)
  return data, int(rate)


def _decode_pyav(path: str):
  import av
  with av.open(path) as container:
    if not container.streams.audio:
      raise ValueError("the file has no audio stream")
    stream = container.streams.audio[0]
    # Convert every decoded frame to planar float32 at its own rate and layout.
    resampler = av.AudioResampler(format="fltp")
    chunks, rate = [], None
    for frame in container.decode(stream):
      rate = frame.sample_rate
      for out in resampler.resample(frame):
        chunks.append(out.to_ndarray())
    for out in resampler.resample(None):
      chunks.append(out.to_ndarray())
  if not chunks or rate is None:
    return np.zeros((0, 1), np.float32), rate or SAMPLE_RATE
  data = np.concatenate(chunks, axis=1).T  # (samples, channels)
  return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def decode(path: os.PathLike | str) -> tuple[np.ndarray, int]:
  """(samples, channels) float32 in [-1, 1] and the file's sample rate, or TalkjaxError."""
  path = os.fspath(path)
  if os.path.isdir(path):
    raise TalkjaxError("is a folder, not an audio file", path=path,
                       fix="pass an audio file (wav, flac, mp3, m4a, ogg)")
  if not os.path.isfile(path):
    raise TalkjaxError("audio file not found", path=path, fix="check the path")
  if os.path.getsize(path) == 0:
    raise TalkjaxError("audio file is empty (0 bytes)", path=path,
                       fix="re-export the audio; the file holds no data")
  reasons = []
  for decoder in (_decode_soundfile, _decode_pyav):
    try:
      return decoder(path)
    except Exception as e:  # each decoder signals unreadable input with its own types
      reasons.append(f"{decoder.__name__[8:]}: {type(e).__name__}: {str(e)[:120]}")
  raise TalkjaxError("cannot decode audio (" + "; ".join(reasons) + ")", path=path,
                     fix="convert it to wav, flac, mp3, m4a or ogg, e.g. "
                         "`ffmpeg -i IN -ac 1 -ar 16000 out.wav`")


def wav_shortfall(path: str) -> tuple[float, float] | None:
  """(seconds a WAV header promises, seconds the file holds) when the file is shorter than
  its header says (a cut-off download or copy); None otherwise or when it is no WAV."""
  import struct
  try:
    with open(path, "rb") as f:
      head = f.read(1 << 16)
    if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
      return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
      chunk, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
      if chunk == b"fmt " and pos + 16 <= len(head):
        byte_rate = struct.unpack("<I", head[pos + 16:pos + 20])[0]
      if chunk == b"data":
        if not byte_rate or size == 0xFFFFFFFF:   # streamed WAVs leave the size open
          return None
        held = os.path.getsize(path) - (pos + 8)
        return (size / byte_rate, held / byte_rate) if held < 0.99 * size else None
      pos += 8 + size + (size & 1)
  except (OSError, struct.error):
    return None
  return None


def select_channel(data: np.ndarray, channel: Channel, path: str = "") -> np.ndarray:
  """Mono from (samples, channels): 'mix' averages the channels, an int picks one."""
  if channel == "mix":
    return data.mean(axis=1)
  if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
    if not -data.shape[1] <= channel < data.shape[1]:
      raise TalkjaxError(f"channel {channel} requested but the file has {data.shape[1]}",
                         path=path or None, fix=f"use 'mix' or a channel in 0..{data.shape[1] - 1}")
    return data[:, channel]
  raise TalkjaxError(f"channel must be 'mix' or an integer, got {channel!r}", path=path or None,
                     fix="pass channel='mix' or channel=0")


def resample(x: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
  if rate_in == rate_out:
    return x.astype(np.float32, copy=False)
  import soxr
  return soxr.resample(x.astype(np.float32, copy=False), rate_in, rate_out,
                       quality="VHQ").astype(np.float32, copy=False)


def normalize_loudness(x: np.ndarray, target_dbfs: float = DEFAULT_LOUDNESS_DBFS) -> np.ndarray:
  """Scale to an RMS of `target_dbfs`, then down (never up) so no sample exceeds PEAK_LIMIT.

  Silence (RMS below SILENCE_RMS) is returned unchanged: it is valid input.
  """
  rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
  if rms < SILENCE_RMS:
    return x.astype(np.float32, copy=False)
  y = x * (10.0 ** (target_dbfs / 20.0) / rms)
  peak = float(np.max(np.abs(y)))
  if peak > PEAK_LIMIT:
    y = y * (PEAK_LIMIT / peak)
  return y.astype(np.float32)


def load_audio(path: os.PathLike | str, *, sample_rate: int = SAMPLE_RATE,
               channel: Channel = "mix", loudness_dbfs: float | None = DEFAULT_LOUDNESS_DBFS,
               min_seconds: float = 1.0 / 25.0, notes: list | None = None) -> np.ndarray:
  """Mono float32 samples at `sample_rate`.

  Args:
    channel: 'mix' (average of all channels) or the index of one channel.
    loudness_dbfs: RMS target of the whole clip (see `normalize_loudness`); None keeps levels.
    min_seconds: shorter files raise TalkjaxError; the default is one video frame at 25 fps.
    notes: if given, warnings about the file (a header promising more than it holds) are
      appended to it.
  """
  path = os.fspath(path)
  data, rate = decode(path)
  short = wav_shortfall(path)
  if short is not None and notes is not None:
    notes.append(f"{os.path.basename(path)}: the header promises {short[0]:.2f} s but the file "
                 f"holds {short[1]:.2f} s (cut off?): only what is there is used")
  if data.shape[0] == 0:
    raise TalkjaxError("audio file decodes to no samples", path=path,
                       fix="check the file plays; re-export it")
  if data.shape[0] < min_seconds * rate:
    raise TalkjaxError(f"audio is {data.shape[0] / rate * 1000:.1f} ms long, shorter than one "
                       f"video frame ({min_seconds * 1000:.1f} ms)", path=path,
                       fix="use a longer audio clip")
  if not np.all(np.isfinite(data)):
    raise TalkjaxError("audio contains NaN or infinite samples", path=path,
                       fix="re-export the audio as 16-bit PCM wav")
  x = resample(select_channel(data, channel, path), rate, sample_rate)
  if loudness_dbfs is not None:
    x = normalize_loudness(x, loudness_dbfs)
  return x
