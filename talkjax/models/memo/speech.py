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

wav2vec2 in sampling (the release's weights): each clip runs the converted wav2vec2 on
its samples with `model.audio.context_s` of audio on each side (normalised over that
window, the CNN features interpolated to one position per video frame), and keeps the
clip's frames. Deviation, labelled: the release runs wav2vec2 once over the whole audio
(normalised over all of it); a clip's transformer here attends to 2 x context_s around it
(features near the clip's edges differ slightly), which keeps the cost per clip flat and
lets a video stream.
"""

from __future__ import annotations

import numpy as np

from talkjax.audio.align import context_windows
from talkjax.audio.mel import MelConfig, log_mel_jax, log_mel_reference
from talkjax.errors import ConfigError

SAMPLE_RATE = 16000


class MemoSpeech:
  def __init__(self, audio_config, fps: float, w2v_config: dict | None = None):
    """`w2v_config` (the HF config dict) replaces reading `model.audio.wav2vec2`'s folder."""
    self.kind = audio_config.get("kind", "wav2vec2")
    self.folder = audio_config.get("wav2vec2", "")
    self.context_frames = int(round(float(audio_config.get("context_s", 1.0)) * fps))
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
    elif self.kind == "wav2vec2":
      from talkjax.audio.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model, read_config
      if w2v_config is not None:
        self.w2v_config = Wav2Vec2Config.from_hf_dict(dict(w2v_config))
      elif self.folder:
        self.w2v_config = read_config(self.folder)
      else:   # random weights (speed measurements): wav2vec2-base
        self.w2v_config = Wav2Vec2Config.base()
      got = (self.w2v_config.num_hidden_layers, self.w2v_config.hidden_size)
      if got != (self.layers, self.channels):
        raise ConfigError(f"the wav2vec2 in {self.folder or 'the model'} has {got[0]} layers "
                          f"x {got[1]}, model.audio says layers={self.layers}, "
                          f"channels={self.channels}", path=self.folder or None,
                          fix="convert the wav2vec2 the model was trained with "
                              "(the release: wav2vec2-base-960h)")
      self.model = Wav2Vec2Model(self.w2v_config)
    else:
      raise ConfigError(f"unknown model.audio.kind {self.kind!r}",
                        fix="use 'wav2vec2' (the release) or 'logmel' (tiny configs)")

  def init(self, rng) -> dict:
    """Random wav2vec2 weights (boxed); {} for log-mel."""
    from talkjax.audio import wav2vec2
    return {} if self.kind == "logmel" else wav2vec2.random_weights(self.model, rng)

  def load(self) -> dict:
    """The converted wav2vec2's weights that model.audio.wav2vec2 names; {} for log-mel."""
    from talkjax.audio import wav2vec2
    return {} if self.kind == "logmel" else wav2vec2.weights_of(self.folder)

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
    """Frames of audio a chunk needs before and after it: log-mel, the window's radius +
    one for the STFT's half window; wav2vec2, `context_s` (at least the radius)."""
    if self.kind == "logmel":
      return self.radius + 1
    return max(self.radius, self.context_frames)

  def chunk(self, samples, frames: int, params=None):
    """(B, (frames + 2 margin) x samples per frame) -> (B, frames, window, layers, channels)
    in JAX; `params` are the wav2vec2's weights (unused for log-mel)."""
    import jax.numpy as jnp
    m, b = self.margin, samples.shape[0]
    if self.kind == "logmel":
      mel = log_mel_jax(samples, self.mel)[:, :2 * (frames + 2 * m)]
      per = jnp.asarray(mel.reshape(b, frames + 2 * m, 1, self.channels))
    else:
      from talkjax.audio.wav2vec2 import normalize_input
      out = self.model.apply({"params": params}, normalize_input(samples),
                             num_frames=frames + 2 * m)
      per = jnp.stack(out["hidden_states"][1:], axis=2)    # (B, T, layers, channels)
    idx = np.arange(m, m + frames)[:, None] + np.arange(-self.radius, self.radius + 1)[None]
    return per[:, idx].astype(jnp.float32)
