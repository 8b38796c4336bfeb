"""Speech features for the motion-latent families (IF-MDM, INFP): two 50 Hz vectors per
25 fps video frame, from raw audio.

`model.audio.kind`:
- "logmel": log-mel with a 40 ms window and 20 ms hop (n_mels bins), computed in JAX
  (talkjax.audio.mel), no parameters; the tiny SynthTalk configs use it.
- "wav2vec2": a hidden state of a converted wav2vec2 (`talkjax convert wav2vec2`), as in the
  paper (768-d at 50 Hz); `model.audio.wav2vec2` names the converted folder.

Features are computed per chunk of audio with `context_s` of the preceding audio in front
(the first chunk gets silence), so offline chunked generation and streaming see the same
numbers.

`level(features)`: each log-mel frame's loudness (its mean over the mel bins). A model that
LayerNorms each frame's features (as the families' audio inputs do) keeps the spectrum's
shape but loses its level exactly: a gain is a constant added to every log bin. The mouth
follows the level within a syllable as much as the vowel's spectrum (on held-out SynthTalk
a linear read of mouth opening from 8 frames of features scored 0.79 correlation in
speaking frames after the norm, 0.86 before it, 0.90 with the level beside the norm), so a
model may take it back beside the normalised features (`model.audio.level`, log-mel only:
`check_level`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.audio.mel import MelConfig, log_mel_jax
from talkjax.errors import ConfigError

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS   # 640
HOP = SAMPLES_PER_FRAME // 2             # 50 Hz
# level(): 0 at the log-mel floor (silence); SynthTalk's loudest speech frames sit near 1.3.
LEVEL_SCALE = 4.0
LOG_FLOOR = float(np.log(MelConfig.floor))   # the floor log_mel_jax clamps to (ln)


def level(features):
  """(..., 2 * n_mels) log-mel features of SpeechFeatures -> (..., 2): the loudness of each
  of a frame's two 50 Hz halves (mean log power over the bins), 0 at the floor."""
  halves = features.reshape(features.shape[:-1] + (2, -1))
  return (jnp.mean(halves, axis=-1) - LOG_FLOOR) / LEVEL_SCALE


def check_level(audio_config):
  """A one-line error before any work when `model.audio.level` asks for a loudness the
  features do not carry (only log-mel has one to read)."""
  if audio_config.get("level", False) and audio_config.kind != "logmel":
    raise ConfigError(f"model.audio.level reads a log-mel frame's loudness; "
                      f"{audio_config.kind} features have none to read",
                      fix="set model.audio.level=False")


class SpeechFeatures:
  """(B, N) samples (N a multiple of 640) -> (B, N / 640, 2 * F) per-frame features.

  Holds no weights: `init(rng)` gives random ones (benchmarks), `load()` the converted
  wav2vec2 that `model.audio.wav2vec2` names; log-mel has none ({}). `w2v_config` (a dict)
  replaces reading that folder's config.json, for models loaded from a single file.
  """

  def __init__(self, audio_config, w2v_config: dict | None = None):
    self.kind = audio_config.kind
    self.folder = audio_config.get("wav2vec2", "")
    self.context = int(round(float(audio_config.context_s) * SAMPLE_RATE / SAMPLES_PER_FRAME)) \
        * SAMPLES_PER_FRAME
    if self.kind == "logmel":
      self.mel = MelConfig(n_fft=2 * HOP, hop_length=HOP, win_length=2 * HOP,
                           n_mels=int(audio_config.n_mels))
      self.dim = 2 * int(audio_config.n_mels)
    elif self.kind == "wav2vec2":
      from talkjax.audio.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model, read_config
      if w2v_config is not None:
        self.w2v_config = Wav2Vec2Config.from_hf_dict(dict(w2v_config))
      elif self.folder:
        self.w2v_config = read_config(self.folder)
      else:  # random weights (speed measurements): the base layout
        self.w2v_config = Wav2Vec2Config.base()
      if self.w2v_config.hidden_size != int(audio_config.hidden_size):
        raise ConfigError(f"the wav2vec2 in {self.folder or 'the model file'} has hidden size "
                          f"{self.w2v_config.hidden_size}, model.audio.hidden_size says "
                          f"{audio_config.hidden_size}",
                          fix=f"set model.audio.hidden_size={self.w2v_config.hidden_size}")
      self.model = Wav2Vec2Model(self.w2v_config)
      self.layer = int(audio_config.layer)
      self.dim = 2 * self.w2v_config.hidden_size
    else:
      raise ConfigError(f"unknown model.audio.kind {self.kind!r}", fix="use 'logmel' or 'wav2vec2'")

  def init(self, rng) -> dict:
    """Random wav2vec2 weights (boxed); {} for log-mel."""
    from talkjax.audio import wav2vec2
    return {} if self.kind == "logmel" else wav2vec2.random_weights(self.model, rng)

  def load(self) -> dict:
    """The converted wav2vec2's weights that model.audio.wav2vec2 names; {} for log-mel."""
    from talkjax.audio import wav2vec2
    return {} if self.kind == "logmel" else wav2vec2.weights_of(self.folder)

  def _raw(self, samples, frames: int, params):
    """(B, N') -> (B, 2 * frames, F) at 50 Hz."""
    if self.kind == "logmel":
      return log_mel_jax(samples, self.mel)[:, :2 * frames]
    out = self.model.apply({"params": params}, samples, num_frames=2 * frames)
    return out["hidden_states"][self.layer]

  def chunk(self, samples, context, params):
    """Features of `samples` (B, N) given the `context` (B, self.context) that precedes
    them; `params` are this encoder's weights ({} or None for log-mel)."""
    frames = samples.shape[1] // SAMPLES_PER_FRAME
    lead = self.context // SAMPLES_PER_FRAME
    feats = self._raw(jnp.concatenate([context, samples], axis=1), frames + lead, params)[:, 2 * lead:]
    return feats.reshape(feats.shape[0], frames, self.dim).astype(jnp.float32)

  def whole(self, params):
    """jitted (B, N) -> (B, N / 640, 2F) over whole clips (to cache training features)."""
    fn = jax.jit(lambda p, s: self.chunk(s, jnp.zeros((s.shape[0], self.context), s.dtype), p))
    return lambda samples: fn(params, samples)
