"""Aligning audio and audio features to video frames.

The pad/trim rule: the video decides the length. A video of `num_frames` frames at `fps`
needs exactly `round(num_frames * sample_rate / fps)` samples; audio that is shorter is
padded with silence (zeros) at the end, audio that is longer is cut at the end. When no video
length is given, the audio decides: `frames_for_audio` counts every frame that starts before
the audio ends (ceil), and the last, partial frame is padded the same way.

Feature sequences at any rate are mapped to frames by linear interpolation at frame-centre
times (the convention of `F.interpolate(..., align_corners=False)`), edge-clamped.
"""

from __future__ import annotations

import math

import numpy as np

from talkjax.audio.load import SAMPLE_RATE


def frames_for_audio(num_samples: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
  """Number of video frames an audio clip covers: every frame that starts inside the audio."""
  # The small tolerance keeps exact multiples (e.g. 1 s at 25 fps) from rounding up.
  return max(1, math.ceil(num_samples * fps / sample_rate - 1e-9))


def samples_for_frames(num_frames: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
  return int(round(num_frames * sample_rate / fps))


def pad_or_trim(samples: np.ndarray, num_frames: int, fps: float,
                sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """Samples for exactly `num_frames` video frames: zero-padded or cut at the end."""
  n = samples_for_frames(num_frames, fps, sample_rate)
  if samples.shape[0] >= n:
    return samples[:n]
  pad = [(0, n - samples.shape[0])] + [(0, 0)] * (samples.ndim - 1)
  return np.pad(samples, pad)


def with_context(samples: np.ndarray, start: int, length: int, context: int) -> np.ndarray:
  """samples[start - context : start + length] along axis 0, silence (zeros) where that
  range leaves the array: a chunk of audio with the `context` samples before it, cut the
  way the sampling pipelines cut every chunk (silence before the first)."""
  lo, hi = start - context, start + length
  piece = samples[max(lo, 0):max(min(hi, samples.shape[0]), 0)]
  pad = [(max(0, -lo), hi - lo - max(0, -lo) - piece.shape[0])] + [(0, 0)] * (samples.ndim - 1)
  return np.pad(piece, pad)


def interpolate_linear(features: np.ndarray, size: int, *, align_corners: bool = False,
                       axis: int = 0) -> np.ndarray:
  """Linear interpolation of `features` along `axis` to `size` entries.

  align_corners=False samples at centre-aligned positions (i + 0.5) * n / size - 0.5,
  clamped to the ends; True maps first to first and last to last (what MEMO and Hallo use
  for wav2vec2 CNN features).
  """
  x = np.moveaxis(np.asarray(features), axis, 0)
  n = x.shape[0]
  pos = _positions(n, size, align_corners)
  lo = np.floor(pos).astype(np.int64)
  hi = np.minimum(lo + 1, n - 1)
  w = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1))
  out = x[lo] * (1 - w) + x[hi] * w
  return np.moveaxis(out.astype(x.dtype, copy=False), 0, axis)


def _positions(n: int, size: int, align_corners: bool) -> np.ndarray:
  if align_corners:
    if size == 1:
      return np.zeros(1)
    return np.arange(size) * ((n - 1) / (size - 1))
  pos = (np.arange(size) + 0.5) * (n / size) - 0.5
  return np.clip(pos, 0, n - 1)


def features_per_frame(features: np.ndarray, feature_rate: float, num_frames: int,
                       fps: float) -> np.ndarray:
  """One feature vector per video frame from a sequence at `feature_rate` Hz.

  Feature k describes time (k + 0.5) / feature_rate; frame i is sampled at (i + 0.5) / fps.
  The feature sequence is first padded (edge) or cut to the video's duration, so audio
  longer than the video never shifts the mapping.
  """
  return resample_to_times(features, feature_rate, (np.arange(num_frames) + 0.5) / fps)


def features_50hz_per_frame(features_50hz: np.ndarray, num_frames: int, fps: float,
                            per_frame: int = 2) -> np.ndarray:
  """IF-MDM layout: `per_frame` features for each frame, (num_frames, per_frame, ...).

  At 25 fps and 50 Hz this is an exact reshape (features 2i and 2i+1 go to frame i); at
  other rates the 50 Hz sequence is linearly interpolated at the centres of `per_frame`
  equal sub-intervals of each frame.
  """
  times = (np.arange(num_frames * per_frame) + 0.5) / (fps * per_frame)
  out = resample_to_times(features_50hz, 50.0, times)
  return out.reshape((num_frames, per_frame) + out.shape[1:])


def resample_to_times(features: np.ndarray, feature_rate: float, times: np.ndarray) -> np.ndarray:
  x = np.asarray(features)
  pos = np.clip(np.asarray(times) * feature_rate - 0.5, 0, x.shape[0] - 1)
  lo = np.floor(pos).astype(np.int64)
  hi = np.minimum(lo + 1, x.shape[0] - 1)
  w = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1))
  # Exact integer positions (the common 25 fps / 50 Hz case) copy the feature untouched.
  return (x[lo] * (1 - w) + x[hi] * w).astype(x.dtype, copy=False)


def context_windows(per_frame: np.ndarray, radius: int = 2):
  """MEMO's window: frame i gets frames i-radius..i+radius, edge-clamped -> (T, 2r+1, ...).

  Works on numpy and jax arrays alike (pure indexing).
  """
  t = per_frame.shape[0]
  idx = np.clip(np.arange(t)[:, None] + np.arange(-radius, radius + 1)[None, :], 0, t - 1)
  return per_frame[idx]
