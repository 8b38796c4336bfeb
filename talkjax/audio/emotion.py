"""Audio emotion: MEMO's 9 classes (+ a null class for guidance) predicted from audio.

The classifier reads encoder features (any encoder: the small `AudioEncoder`, wav2vec2
hidden states, or plain log-mel), pools them over time (mean and standard deviation) and
applies a two-layer MLP. Labels for a video follow MEMO:
- the audio is cut into 3 s windows with a 1 s hop (window k covers [k, k + 3) s; the last
  window is zero-padded; audio shorter than 3 s gives one padded window);
- each frame takes the label of the window whose centre (k + 1.5 s) is nearest to the
  frame's centre time (i + 0.5) / fps; a frame exactly halfway goes to the later window;
- per-clip mode: each clip of `clip_len` frames (16 in MEMO; the last clip may be shorter)
  takes the most frequent frame label, ties to the smaller class index.
"""

from __future__ import annotations

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

EMOTIONS = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised",
            "unknown")
NUM_EMOTIONS = len(EMOTIONS)          # classes the classifier predicts
NULL_EMOTION = NUM_EMOTIONS           # index 9: "no emotion", for classifier-free guidance
NUM_EMOTION_EMBEDDINGS = NUM_EMOTIONS + 1
# MEAD's 8 emotions in MEMO's classes; MEMO has no "contempt", so it becomes "other".
MEAD_TO_EMOTION = {"angry": "angry", "contempt": "other", "disgusted": "disgusted",
                   "fear": "fearful", "happy": "happy", "neutral": "neutral", "sad": "sad",
                   "surprised": "surprised"}


def emotion_index(name: str) -> int:
  name = MEAD_TO_EMOTION.get(name, name)
  if name == "null":
    return NULL_EMOTION
  return EMOTIONS.index(name)


class EmotionClassifier(nn.Module):
  """(B, T, D) features -> (B, num_classes) logits.

  With `conv_channels`, 1-D convolutions along time (kernel 5, stride 2, GELU) come before
  the pooling, so the head sees how the features move (pitch contours, syllable rate),
  not only their average and spread; a `mask` is then subsampled with them.
  """
  hidden: int = 128
  num_classes: int = NUM_EMOTIONS
  conv_channels: tuple[int, ...] = ()
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, features, mask=None):
    x = features.astype(self.dtype)
    if mask is None:
      mask = jnp.ones(x.shape[:2], self.dtype)
    for i, width in enumerate(self.conv_channels):
      x = jax.nn.gelu(nn.Conv(width, (5,), strides=(2,), padding="SAME", dtype=self.dtype,
                              name=f"conv_{i}")(x))
      mask = mask[:, ::2]
    w = mask.astype(self.dtype)[..., None]
    count = jnp.maximum(w.sum(axis=1), 1.0)
    mean = (x * w).sum(axis=1) / count
    std = jnp.sqrt(((x - mean[:, None]) ** 2 * w).sum(axis=1) / count + 1e-6)
    h = nn.LayerNorm(dtype=self.dtype, name="pool_norm")(jnp.concatenate([mean, std], -1))
    h = jax.nn.gelu(nn.Dense(self.hidden, dtype=self.dtype, name="hidden")(h))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(h)


def train_emotion_classifier(features, labels, *, hidden: int = 64, steps: int = 300,
                             learning_rate: float = 3e-3, weight_decay: float = 1e-4,
                             batch_size: int = 64, seed: int = 0,
                             num_classes: int = NUM_EMOTIONS):
  """Train on (N, T, D) features and (N,) integer labels; returns (module, params, losses).

  Minibatches are drawn with replacement by a seeded generator, so a run is reproducible.
  """
  import optax
  features = jnp.asarray(features, jnp.float32)
  labels = jnp.asarray(labels, jnp.int32)
  model = EmotionClassifier(hidden=hidden, num_classes=num_classes)
  params = jax.jit(model.init)(jax.random.PRNGKey(seed), features[:1])["params"]
  opt = optax.adamw(learning_rate, weight_decay=weight_decay)
  state = opt.init(params)

  def step(carry, idx):
    params, state = carry
    def loss_fn(p):
      logits = model.apply({"params": p}, features[idx])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), loss

  # all minibatch indices up front, then one compiled loop (no per-step dispatch)
  n = features.shape[0]
  batches = np.random.default_rng(seed).integers(0, n, size=(steps, min(batch_size, n)))
  (params, _), losses = jax.jit(lambda c, b: jax.lax.scan(step, c, b))((params, state),
                                                                      jnp.asarray(batches))
  return model, params, [float(v) for v in np.asarray(losses)]


# --- labels for a video from windowed predictions (pure logic) ---------------------------

def window_starts(num_samples: int, sample_rate: int = 16000, window_s: float = 3.0,
                  hop_s: float = 1.0) -> np.ndarray:
  """Start sample of every window; enough windows that the last one reaches the end."""
  duration = num_samples / sample_rate
  n = 1 if duration <= window_s else math.ceil((duration - window_s) / hop_s - 1e-9) + 1
  return np.round(np.arange(n) * hop_s * sample_rate).astype(np.int64)


def audio_windows(samples: np.ndarray, sample_rate: int = 16000, window_s: float = 3.0,
                  hop_s: float = 1.0) -> np.ndarray:
  """(num_windows, window samples), zero-padded at the end."""
  length = int(round(window_s * sample_rate))
  starts = window_starts(samples.shape[0], sample_rate, window_s, hop_s)
  padded = np.pad(samples, (0, max(0, starts[-1] + length - samples.shape[0])))
  return np.stack([padded[s:s + length] for s in starts])


def frame_labels_from_windows(window_labels, num_frames: int, fps: float,
                              window_s: float = 3.0, hop_s: float = 1.0) -> np.ndarray:
  """Nearest-window label for every frame: window k is centred at k * hop + window / 2."""
  window_labels = np.asarray(window_labels)
  t = (np.arange(num_frames) + 0.5) / fps
  k = np.floor((t - window_s / 2) / hop_s + 0.5).astype(np.int64)
  return window_labels[np.clip(k, 0, len(window_labels) - 1)]


def clip_modes(frame_labels, clip_len: int = 16) -> np.ndarray:
  """Most frequent label of each clip of `clip_len` frames (ties: smaller index)."""
  frame_labels = np.asarray(frame_labels)
  out = []
  for start in range(0, len(frame_labels), clip_len):
    counts = np.bincount(frame_labels[start:start + clip_len], minlength=NUM_EMOTION_EMBEDDINGS)
    out.append(int(np.argmax(counts)))  # argmax returns the first (smallest) of equal counts
  return np.asarray(out, np.int64)


def predict_frame_emotions(samples: np.ndarray, num_frames: int, fps: float,
                           classify: Callable[[np.ndarray], np.ndarray], *,
                           sample_rate: int = 16000, window_s: float = 3.0, hop_s: float = 1.0,
                           clip_len: int | None = None) -> np.ndarray:
  """(num_frames,) emotion indices for a video.

  `classify` maps (num_windows, window samples) audio to (num_windows,) class indices
  (e.g. `make_window_classifier`). With `clip_len`, each clip's frames get the clip's mode.
  """
  windows = audio_windows(samples, sample_rate, window_s, hop_s)
  labels = np.asarray(classify(windows))
  if labels.shape != (windows.shape[0],):
    raise ValueError(f"classify returned shape {labels.shape}, expected ({windows.shape[0]},)")
  frames = frame_labels_from_windows(labels, num_frames, fps, window_s, hop_s)
  if clip_len is None:
    return frames
  return np.repeat(clip_modes(frames, clip_len), clip_len)[:num_frames]


def make_window_classifier(featurize: Callable, model: EmotionClassifier, params):
  """classify(windows) for `predict_frame_emotions`: featurize (B, samples) -> (B, T, D)."""
  @jax.jit
  def logits(windows):
    return model.apply({"params": params}, featurize(windows))
  return lambda windows: np.asarray(jnp.argmax(logits(jnp.asarray(windows)), axis=-1))


# --- a trained classifier read back for sampling -----------------------------------------

def classifier_settings(model):
  """(window samples, MelConfig, EmotionClassifier) of a config's `model.emotion_audio`
  (the `audio_emotion` family's settings)."""
  from talkjax.audio.mel import MelConfig
  e = model.emotion_audio
  module = EmotionClassifier(hidden=int(e.hidden),
                             conv_channels=tuple(int(c) for c in e.get("conv_channels", ())))
  return int(round(float(e.window_s) * 16000)), MelConfig(n_mels=int(e.n_mels)), module


def heard_frames(samples, hop: int):
  """(B, N) samples -> (B, N // hop + 1) mask of the log-mel frames that hear any non-zero
  sample: the zeros the generation layer pads before and after the audio are not speech."""
  b, n = samples.shape
  hops = jnp.abs(samples[:, :n // hop * hop]).reshape(b, n // hop, hop).max(-1) > 0
  return jnp.concatenate([hops, hops[:, -1:]], axis=1).astype(jnp.float32)


def classifier_logits(module, mel, params, audio):
  """(B, window samples) -> (B, 9) logits: log-mel, the heard frames' mask, the head (the
  one computation training and sampling share)."""
  from talkjax.audio.mel import log_mel_jax
  return module.apply({"params": params}, log_mel_jax(audio, mel),
                      heard_frames(audio, mel.hop_length))


class EmotionReader:
  """A trained `audio_emotion` classifier as a function: (params, (B, window) 16 kHz) ->
  (B,) classes. Built from its config (a model file carries it); `from_workdir` also reads
  the parameters of a training folder."""

  def __init__(self, config, *, path=None):
    from talkjax.errors import TalkjaxError
    if config.get("family") != "audio_emotion":
      raise TalkjaxError(f"this holds a {config.get('family')!r} model, not an audio "
                         "emotion classifier", path=path,
                         fix="train one with `talkjax train --config "
                             "memo/synthtalk_tiny_emotion --workdir runs/memo_tiny_emotion`")
    self.config = config
    self.window, self.mel, self.module = classifier_settings(config.model)

  @classmethod
  def from_workdir(cls, workdir):
    """(reader, classifier params) of an `audio_emotion` training folder."""
    from talkjax import stages
    trained = stages.read_params(workdir)
    return cls(trained.config, path=workdir), trained.params["trainable"]["classifier"]

  def init(self, rng):
    """Random classifier parameters of this config's shapes."""
    from talkjax.audio.mel import log_mel_jax
    example = jnp.zeros((1, self.window))
    # one program (op by op, each parameter's ops would compile alone)
    return jax.jit(lambda r: self.module.init(r, log_mel_jax(example, self.mel)))(rng)["params"]

  def logits(self, params, audio):
    return classifier_logits(self.module, self.mel, params, audio)

  def __call__(self, params, audio):
    return jnp.argmax(self.logits(params, audio), axis=-1).astype(jnp.int32)
