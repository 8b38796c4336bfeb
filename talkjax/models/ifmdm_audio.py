"""IF-MDM's speech features: two 50 Hz vectors per 25 fps video frame, from raw audio.

`model.audio.kind`:
- "logmel": log-mel with a 40 ms window and 20 ms hop (n_mels bins), computed in JAX
  (talkjax.audio.mel), no parameters; the tiny SynthTalk configs use it.
- "wav2vec2": a hidden state of a converted wav2vec2 (`talkjax convert wav2vec2`), as in the
  paper (768-d at 50 Hz); `model.audio.wav2vec2` names the converted folder.

Features are computed per chunk of audio with `context_s` of the preceding audio in front
(the first chunk gets silence), so offline chunked generation and streaming see the same
numbers.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.audio.mel import MelConfig, log_mel_jax
from talkjax.errors import ConfigError

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS   # 640
HOP = SAMPLES_PER_FRAME // 2             # 50 Hz


class SpeechFeatures:
  """(B, N) samples (N a multiple of 640) -> (B, N / 640, 2 * F) per-frame features."""

  def __init__(self, audio_config, random_init: bool = False):
    self.kind = audio_config.kind
    self.context = int(round(float(audio_config.context_s) * SAMPLE_RATE / SAMPLES_PER_FRAME)) \
        * SAMPLES_PER_FRAME
    if self.kind == "logmel":
      self.mel = MelConfig(n_fft=2 * HOP, hop_length=HOP, win_length=2 * HOP,
                           n_mels=int(audio_config.n_mels))
      self.dim = 2 * int(audio_config.n_mels)
      self.params = None
    elif self.kind == "wav2vec2":
      from talkjax.audio.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model, load_pretrained
      if audio_config.wav2vec2:
        w2v_config, self.params = load_pretrained(audio_config.wav2vec2)
      elif random_init:  # speed measurements only: same shapes, random weights
        w2v_config = Wav2Vec2Config.base()
        self.params = None
      else:
        raise ConfigError("model.audio.kind is 'wav2vec2' but model.audio.wav2vec2 is empty",
                          fix="convert one with `talkjax convert wav2vec2` and set "
                              "model.audio.wav2vec2=FOLDER")
      if w2v_config.hidden_size != int(audio_config.hidden_size):
        raise ConfigError(f"the wav2vec2 in {audio_config.wav2vec2} has hidden size "
                          f"{w2v_config.hidden_size}, model.audio.hidden_size says "
                          f"{audio_config.hidden_size}",
                          fix=f"set model.audio.hidden_size={w2v_config.hidden_size}")
      self.model = Wav2Vec2Model(w2v_config)
      if self.params is None:
        self.params = jax.jit(self.model.init)(jax.random.PRNGKey(0),
                                               jnp.zeros((1, SAMPLE_RATE), jnp.float32))["params"]
        import flax.linen as nn
        self.params = nn.meta.unbox(self.params)
      self.layer = int(audio_config.layer)
      self.dim = 2 * w2v_config.hidden_size
    else:
      raise ConfigError(f"unknown model.audio.kind {self.kind!r}", fix="use 'logmel' or 'wav2vec2'")

  def _raw(self, samples, frames: int, params):
    """(B, N') -> (B, 2 * frames, F) at 50 Hz."""
    if self.kind == "logmel":
      return log_mel_jax(samples, self.mel)[:, :2 * frames]
    params = self.params if params is None else params
    out = self.model.apply({"params": params}, samples, num_frames=2 * frames)
    return out["hidden_states"][self.layer]

  def chunk(self, samples, context, params=None):
    """Features of `samples` (B, N) given the `context` (B, self.context) that precedes them.
    `params`: the encoder's weights as a jit argument (default: the loaded ones, which a
    jitted caller would embed as constants)."""
    frames = samples.shape[1] // SAMPLES_PER_FRAME
    lead = self.context // SAMPLES_PER_FRAME
    feats = self._raw(jnp.concatenate([context, samples], axis=1), frames + lead, params)[:, 2 * lead:]
    return feats.reshape(feats.shape[0], frames, self.dim).astype(jnp.float32)

  def chunks(self, samples, chunk_frames: int, params=None):
    """(B, N) with N = n * chunk_frames * 640 -> (n, B, chunk_frames, 2F), chunk by chunk."""
    b, n = samples.shape
    size = chunk_frames * SAMPLES_PER_FRAME
    count = n // size
    pieces = samples[:, :count * size].reshape(b, count, size).transpose(1, 0, 2)
    padded = jnp.concatenate([jnp.zeros((b, self.context), samples.dtype), samples], axis=1)
    idx = np.arange(count)[:, None] * size + np.arange(self.context)[None, :]
    contexts = padded[:, idx].transpose(1, 0, 2)                  # (n, B, context)
    return jax.vmap(lambda p, c: self.chunk(p, c, params))(pieces, contexts)

  @functools.cached_property
  def whole(self):
    """jitted (B, N) -> (B, N / 640, 2F) over a whole clip (used to cache training features)."""
    fn = jax.jit(lambda p, s: self.chunk(s, jnp.zeros((s.shape[0], self.context), s.dtype), p))
    return lambda samples: fn(self.params, samples)


def feature_dim(audio_config) -> int:
  """Per-frame feature size, from the config alone (no weights are read)."""
  if audio_config.kind == "logmel":
    return 2 * int(audio_config.n_mels)
  return 2 * int(audio_config.hidden_size)
