"""MEMO's per-frame speech features: (T, window, layers, channels) for T video frames.

`model.audio.kind`:
- "wav2vec2" (the release): the CNN features of a converted wav2vec2-base interpolated to
  exactly T positions before the transformer; the 12 transformer layers' outputs stacked
  (hidden_states[1:]) -> (T, 12, 768);
- "logmel" (the tiny configs): the two 50 Hz log-mel frames of each video frame side by
  side -> (T, 1, 2 n_mels); no weights.
Each frame then takes the frames i-2..i+2, edge-clamped (`window` = 5).
"""

from __future__ import annotations

import numpy as np

from talkjax.audio.align import context_windows
from talkjax.audio.mel import MelConfig, log_mel_reference
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
