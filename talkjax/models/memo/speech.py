"""MEMO's per-frame speech features: (T, window, layers, channels) for T video frames.

`model.audio.kind`:
- "wav2vec2" (the release): the CNN features of a converted wav2vec2-base interpolated to
  exactly T positions before the transformer; the 12 transformer layers' outputs stacked
  (hidden_states[1:]) -> (T, 12, 768);
- "logmel" (the tiny configs): the two 50 Hz log-mel frames of each video frame side by
  side -> (T, 1, 2 n_mels); no weights.
Each frame then takes the frames i-2..i+2, edge-clamped (`window` = 5).

Training computes log-mel features over whole clips (librosa, `features`); sampling
computes them per clip in JAX (`chunk`) from the clip's samples with `margin` frames of
audio on each side: enough for the 5-frame window and the STFT's reach, so a chunk sees
the whole-clip numbers (to log_mel_jax's 1e-4), except at the audio's very end, where
the silence after it stands in for the edge clamp.
"""

from __future__ import annotations

import numpy as np

from talkjax.audio.align import context_windows
from talkjax.audio.mel import MelConfig, log_mel_jax, log_mel_reference
from talkjax.errors import ConfigError

SAMPLE_RATE = 16000


class MemoSpeech:
  def __init__(self, audio_config, fps: float):
    self.kind = audio_config.get("kind", "wav2vec2")
    self.fps = float(fps)
    self.radius = (int(audio_config.window) - 1) // 2
    self.layers, self.channels = int(audio_config.layers), int(audio_config.channels)
    if self.kind == "logmel":
      hop = int(round(SAMPLE_RATE / self.fps / 2))
      self.mel = MelConfig(n_fft=2 * hop, hop_length=hop, win_length=2 * hop,
                           n_mels=self.channels // 2)
      if self.layers != 1 or self.channels % 2:
        raise ConfigError(f"log-mel speech features have 1 layer and 2 x n_mels channels; "
                          f"model.audio says layers={self.layers}, channels={self.channels}",
                          fix="set model.audio.layers=1 and an even model.audio.channels")
    elif self.kind != "wav2vec2":
      raise ConfigError(f"unknown model.audio.kind {self.kind!r}",
                        fix="use 'wav2vec2' (the release) or 'logmel' (tiny configs)")

  def per_frame(self, samples: np.ndarray, frames: int, wav2vec2=None) -> np.ndarray:
    """(N,) 16 kHz samples -> (frames, layers, channels) float32."""
    if self.kind == "logmel":
      mel = log_mel_reference(np.asarray(samples, np.float32), self.mel)    # (n, mels)
      mel = np.pad(mel, ((0, max(0, 2 * frames - len(mel))), (0, 0)), mode="edge")
      return mel[:2 * frames].reshape(frames, 1, self.channels).astype(np.float32)
    if wav2vec2 is None:
      raise ConfigError("wav2vec2 speech features need the converted wav2vec2",
                        fix="convert it with `talkjax convert wav2vec2` and name it in "
                            "model.audio.wav2vec2")
    model, params = wav2vec2
    out = model.apply({"params": params}, np.asarray(samples, np.float32)[None],
                      num_frames=frames)
    return np.stack([np.asarray(h[0]) for h in out["hidden_states"][1:]], axis=1)

  def windows(self, per_frame: np.ndarray) -> np.ndarray:
    """(T, layers, channels) -> (T, window, layers, channels)."""
    return context_windows(per_frame, self.radius)

  def features(self, samples, frames: int, wav2vec2=None) -> np.ndarray:
    return self.windows(self.per_frame(samples, frames, wav2vec2))

  @property
  def margin(self) -> int:
    """Frames of audio a chunk needs before and after it (the window's radius + one for
    the STFT's half window)."""
    return self.radius + 1

  def chunk(self, samples, frames: int):
    """(B, (frames + 2 margin) x samples per frame) -> (B, frames, window, 1, channels),
    in JAX: the sampling path of "logmel" features."""
    import jax.numpy as jnp
    if self.kind != "logmel":
      raise ConfigError("per-clip speech features in sampling exist for model.audio.kind="
                        "'logmel' so far; the release's whole-audio wav2vec2 features come "
                        "with its weight import", fix="sample a logmel model")
    m, b = self.margin, samples.shape[0]
    mel = log_mel_jax(samples, self.mel)[:, :2 * (frames + 2 * m)]
    per = mel.reshape(b, frames + 2 * m, 1, self.channels)
    idx = np.arange(m, m + frames)[:, None] + np.arange(-self.radius, self.radius + 1)[None]
    return jnp.asarray(per)[:, idx]
