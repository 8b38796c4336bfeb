"""The JAX mel path against librosa (float64), for both parameter sets."""

import jax
import librosa
import numpy as np
import pytest

from talkjax.audio import mel
from talkjax.audio.load import normalize_loudness


def _speechlike(seconds=2.0, seed=0):
  """Harmonic 'voice' with moving pitch and syllable-rate envelope, noise, and a pause."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(16000 * seconds)) / 16000
  phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.7 * t)) / 16000
  voice = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.5 + 0.5 * np.sin(6 * np.pi * t))
  x = voice + 0.05 * rng.standard_normal(t.size)
  x[8000:12000] = 0
  return normalize_loudness(x.astype(np.float32))


SIGNALS = {
    "speechlike": _speechlike(),
    "tone": normalize_loudness(np.sin(2 * np.pi * 1000 * np.arange(24000) / 16000).astype(np.float32)),
    "silence": np.zeros(8000, np.float32),
    "odd_length": _speechlike(0.537, seed=1),
}


@pytest.mark.parametrize("config", [mel.SYNCNET_MEL, mel.DEFAULT_MEL], ids=["syncnet", "default"])
@pytest.mark.parametrize("name", list(SIGNALS))
def test_log_mel_jax_matches_librosa(config, name):
  x = SIGNALS[name]
  ref = mel.log_mel_reference(x.astype(np.float64), config)
  out = np.asarray(jax.jit(mel.log_mel_jax, static_argnums=1)(x, config))
  assert out.shape == ref.shape == (mel.num_mel_frames(x.size, config), config.n_mels)
  assert np.abs(out - ref).max() < 1e-4
  mf_ref = mel.mfcc_reference(x.astype(np.float64), config)
  mf = np.asarray(mel.mfcc_jax(x, config))
  # MFCC c0 sums all mel bands (sqrt(80) x the mean), so the bound is relative to its scale.
  assert np.abs(mf - mf_ref).max() < 1e-4 * max(1.0, np.abs(mf_ref).max())


@pytest.mark.parametrize("config", [mel.SYNCNET_MEL, mel.DEFAULT_MEL,
                                    mel.MelConfig(sample_rate=22050, n_fft=1024, n_mels=128,
                                                  fmin=20.0, fmax=11025.0)])
def test_filterbank_and_window_equal_librosa(config):
  ref = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                            fmin=config.fmin, fmax=config.fmax, dtype=np.float64)
  np.testing.assert_allclose(mel.mel_filterbank(config), ref, rtol=1e-10, atol=1e-14)
  win = librosa.filters.get_window("hann", config.win_length, fftbins=True)
  np.testing.assert_allclose(mel._window(config),
                             librosa.util.pad_center(win, size=config.n_fft), atol=1e-15)


def test_reference_is_librosa_melspectrogram():
  x = SIGNALS["speechlike"].astype(np.float64)
  s = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=400, hop_length=160, n_mels=80,
                                     fmin=0, fmax=8000, power=2.0, pad_mode="constant")
  librosa_log = np.log(np.maximum(s, 1e-5)).T
  # librosa builds its filters in float32 by default; our reference keeps float64
  assert np.abs(mel.log_mel_reference(x) - librosa_log).max() < 1e-6
  assert np.abs(np.asarray(mel.log_mel_jax(x.astype(np.float32))) - librosa_log).max() < 1e-4


def test_syncnet_set_is_wav2lip_scaled():
  cfg = mel.SYNCNET_MEL
  assert cfg.frame_rate == 80.0  # 16 mel frames per 25 fps video frame
  out = mel.log_mel_reference(SIGNALS["speechlike"].astype(np.float64), cfg)
  assert out.min() >= -4 and out.max() <= 4 and out.max() > 0
  silent = mel.log_mel_reference(np.zeros(1600), cfg)
  assert np.all(silent == -4)


def test_batched_log_mel():
  x = np.stack([SIGNALS["speechlike"][:16000], SIGNALS["tone"][:16000]])
  out = np.asarray(mel.log_mel_jax(x))
  assert out.shape == (2, 101, 80)
  np.testing.assert_allclose(out[1], np.asarray(mel.log_mel_jax(x[1])), atol=1e-6)
