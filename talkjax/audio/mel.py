"""Log-mel spectrograms and MFCC: a librosa reference path and a jit-able JAX path.

Two parameter sets:
- `SYNCNET_MEL`: the SyncNet/Wav2Lip set (16 kHz, n_fft 800, hop 200 -> 80 frames/s, i.e.
  16 mel frames per 25 fps video frame; 80 mels 55-7600 Hz; pre-emphasis 0.97; magnitude mel
  in dB, -100 dB floor, scaled to [-4, 4]).
- `MelConfig()` defaults: a plain log-power mel (n_fft 400, hop 160 -> 100 frames/s,
  80 mels 0-8000 Hz, natural log with a 1e-5 floor) used by the small trainable encoder.

Accuracy contract: `log_mel_jax` matches `log_mel_reference` (librosa in float64) within
1e-4 absolute on the returned log-mel values, for audio at the loudness `load_audio`
produces. The FFT runs in float32 on device; the floors (1e-5 magnitude, 1e-5 power) sit
far above float32 FFT round-off for normalised audio, which is what makes the bound hold.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass(frozen=True)
class MelConfig:
  sample_rate: int = 16000
  n_fft: int = 400
  hop_length: int = 160
  win_length: int = 400
  n_mels: int = 80
  fmin: float = 0.0
  fmax: float = 8000.0
  power: float = 2.0          # 1: magnitude mel, 2: power mel
  preemphasis: float = 0.0    # y[n] = x[n] - a x[n-1] before the STFT
  scale: str = "ln"           # "ln": natural log; "db_wav2lip": Wav2Lip's dB + [-4, 4] scaling
  floor: float = 1e-5         # clamp before the log
  ref_level_db: float = 20.0  # db_wav2lip only
  min_level_db: float = -100.0

  @property
  def frame_rate(self) -> float:
    return self.sample_rate / self.hop_length


SYNCNET_MEL = MelConfig(n_fft=800, hop_length=200, win_length=800, n_mels=80, fmin=55.0,
                        fmax=7600.0, power=1.0, preemphasis=0.97, scale="db_wav2lip",
                        floor=1e-5)
DEFAULT_MEL = MelConfig()


def num_mel_frames(num_samples: int, config: MelConfig = DEFAULT_MEL) -> int:
  """Frames of a centred STFT: one per hop, the first centred on sample 0."""
  return 1 + num_samples // config.hop_length


def _hz_to_mel(f):
  """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
  f = np.asarray(f, np.float64)
  log_region = f >= 1000.0
  mel = f * 3.0 / 200.0
  return np.where(log_region, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0),
                  mel)


def _mel_to_hz(m):
  m = np.asarray(m, np.float64)
  return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(config: MelConfig) -> np.ndarray:
  """(n_mels, n_fft // 2 + 1) Slaney-normalised triangular filters (float64).

  The same construction as `librosa.filters.mel(htk=False, norm="slaney")`, written out so
  the on-device path does not import librosa (whose import alone takes seconds).
  """
  fft_freqs = np.linspace(0.0, config.sample_rate / 2.0, 1 + config.n_fft // 2)
  edges = _mel_to_hz(np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.fmax),
                                 config.n_mels + 2))
  widths = np.diff(edges)
  ramps = edges[:, None] - fft_freqs[None, :]
  lower = -ramps[:-2] / widths[:-1, None]
  upper = ramps[2:] / widths[1:, None]
  weights = np.maximum(0.0, np.minimum(lower, upper))
  return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


@functools.lru_cache(maxsize=16)
def _window(config: MelConfig) -> np.ndarray:
  """Periodic Hann of win_length, centred in n_fft (librosa's `pad_center`)."""
  n = np.arange(config.win_length)
  win = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / config.win_length)
  left = (config.n_fft - config.win_length) // 2
  return np.pad(win, (left, config.n_fft - config.win_length - left))


def _preemphasis_np(x: np.ndarray, a: float) -> np.ndarray:
  if a == 0.0:
    return x
  return np.concatenate([x[:1], x[1:] - a * x[:-1]])


def _to_log(mel, config: MelConfig, xp):
  if config.scale == "ln":
    return xp.log(xp.maximum(mel, config.floor))
  if config.scale == "db_wav2lip":
    db = 20.0 * xp.log10(xp.maximum(mel, config.floor)) - config.ref_level_db
    return xp.clip(8.0 * (db - config.min_level_db) / (-config.min_level_db) - 4.0, -4.0, 4.0)
  raise ValueError(f"unknown mel scale {config.scale!r}")


def log_mel_reference(samples: np.ndarray, config: MelConfig = DEFAULT_MEL) -> np.ndarray:
  """(frames, n_mels) float64 log-mel computed with librosa: the reference path."""
  import librosa
  x = _preemphasis_np(np.asarray(samples, np.float64), config.preemphasis)
  spec = np.abs(librosa.stft(x, n_fft=config.n_fft, hop_length=config.hop_length,
                             win_length=config.win_length, window="hann", center=True,
                             pad_mode="constant", dtype=np.complex128)) ** config.power
  mel = mel_filterbank(config) @ spec
  return _to_log(mel, config, np).T


def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
  """(n_mels, n_mfcc) orthonormal DCT-II, the transform librosa's MFCC uses."""
  import scipy.fft
  return scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc].T


def mfcc_reference(samples: np.ndarray, config: MelConfig = DEFAULT_MEL,
                   n_mfcc: int = 13) -> np.ndarray:
  """(frames, n_mfcc) MFCC: DCT-II (ortho) of the log-mel, via librosa."""
  import librosa
  return librosa.feature.mfcc(S=log_mel_reference(samples, config).T, n_mfcc=n_mfcc,
                              dct_type=2, norm="ortho").T


def log_mel_jax(samples, config: MelConfig = DEFAULT_MEL):
  """(..., frames, n_mels) float32 log-mel of (..., samples); jit-able, batchable."""
  import jax
  import jax.numpy as jnp
  x = jnp.asarray(samples, jnp.float32)
  if config.preemphasis:
    x = jnp.concatenate([x[..., :1], x[..., 1:] - config.preemphasis * x[..., :-1]], axis=-1)
  pad = config.n_fft // 2
  x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)])
  n_frames = 1 + (x.shape[-1] - config.n_fft) // config.hop_length
  idx = np.arange(config.n_fft)[None, :] + config.hop_length * np.arange(n_frames)[:, None]
  frames = x[..., idx] * jnp.asarray(_window(config), jnp.float32)
  spec = jnp.fft.rfft(frames, axis=-1)
  power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
  mag = power if config.power == 2.0 else power ** (config.power / 2.0)
  # HIGHEST: accelerators would otherwise run this float32 matmul in reduced precision.
  mel = jnp.matmul(mag, jnp.asarray(mel_filterbank(config).T, jnp.float32),
                   precision=jax.lax.Precision.HIGHEST)
  return _to_log(mel, config, jnp)


def mfcc_jax(samples, config: MelConfig = DEFAULT_MEL, n_mfcc: int = 13):
  import jax
  import jax.numpy as jnp
  dct = jnp.asarray(dct_matrix(config.n_mels, n_mfcc), jnp.float32)
  return jnp.matmul(log_mel_jax(samples, config), dct, precision=jax.lax.Precision.HIGHEST)
