"""Training task of the `audio_emotion` family: 3 s of 16 kHz speech -> one of MEMO's 9
emotions (talkjax/audio/emotion.py), the classifier MEMO's sampling reads the emotion with
when the request names none (model.emotion.classifier of a MEMO config).

Features: log-mel (model.emotion_audio.n_mels, 10 ms hop) computed in the step, so a
trained folder needs no feature files and sampling computes the same numbers in JAX.
Examples: every SynthTalk clip read at `data.offsets` window starts (seconds), each window
labelled with the mode of its frames' emotions in MEMO's classes (MEAD's "contempt" is
MEMO's "other"). Deviation, labelled: the release classifies with emotion2vec features; the
tiny setting trains this small head from scratch on SynthTalk's prosody.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from talkjax.audio.emotion import (NUM_EMOTIONS, classifier_logits, classifier_settings,
                                   emotion_index)
from talkjax.audio.mel import log_mel_jax
from talkjax.errors import ConfigError

SAMPLE_RATE = 16000


class AudioEmotionTask:
  def __init__(self, config):
    self.config = config
    self.window, self.mel, self.classifier = classifier_settings(config.model)

  def example_batch(self, batch_size):
    return {"audio": np.zeros((batch_size, self.window), np.float32),
            "emotion": np.zeros((batch_size,), np.int32)}

  def batch_axes(self):
    return {"audio": ("batch", None), "emotion": ("batch",)}

  def init(self, rng, batch):
    feats = log_mel_jax(batch["audio"], self.mel)
    return {"trainable": {"classifier": self.classifier.init(rng, feats)["params"]},
            "frozen": {}}

  def loss(self, params, batch, rng):
    del rng
    logits = classifier_logits(self.classifier, self.mel, params["trainable"]["classifier"],
                      batch["audio"]).astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["emotion"])
    right = (jnp.argmax(logits, -1) == batch["emotion"]).astype(jnp.float32)
    return ce, {"accuracy": jnp.mean(right)}

  def data_source(self, split):
    from talkjax.data.prepare import Mixture, mixture, open_clips
    d = self.config.data
    split = "train" if split == "train" else "val"
    entries = mixture(d)
    sources = [EmotionWindows(open_clips(path, split), window=self.window,
                              offsets=tuple(d.get("offsets", (0.0,)))) for path, _ in entries]
    if len(sources) == 1:
      return sources[0]
    return Mixture(sources, [w for _, w in entries], seed=self.config.seed)


class EmotionWindows:
  """{"audio": (window,) float32, "emotion": int32} for every clip x window start that fits
  the clip; clips without emotion labels (-1: HDTF, your own clips) are left out."""

  def __init__(self, clips, split=None, *, window: int, offsets):
    from talkjax_datasets.synthtalk.spec import EMOTIONS
    if not hasattr(clips, "read"):   # a SynthTalk folder
      from talkjax.data.synthtalk import SynthTalkClips
      clips = SynthTalkClips(clips, split)
    self.clips = clips
    self.window, self.offsets = window, [int(round(o * SAMPLE_RATE)) for o in offsets]
    self.to_memo = np.array([emotion_index(e) for e in EMOTIONS], np.int32)
    fps = clips.fps
    self.items = []
    for clip in range(len(clips)):
      n = clips.num_frames(clip)
      if not _labelled(clips, clip):
        continue
      self.items += [(clip, s) for s in self.offsets if s + window <= n * SAMPLE_RATE // fps]
    if not self.items:
      raise ConfigError(f"no clip of {clips.path} holds a {window / SAMPLE_RATE:g} s window "
                        f"at offsets {tuple(offsets)} with emotion labels",
                        fix="use smaller data.offsets, longer clips, or an emotion-labelled "
                            "dataset (SynthTalk, MEAD)")

  def __len__(self):
    return len(self.items)

  def __repr__(self):
    return f"EmotionWindows({self.clips!r}, window={self.window}, offsets={self.offsets})"

  def __getitem__(self, index):
    clip, s = self.items[int(index)]
    fps = self.clips.fps
    a, b = s * fps // SAMPLE_RATE, -(-(s + self.window) * fps // SAMPLE_RATE)
    rec = self.clips.read(clip, a, min(b, self.clips.num_frames(clip)))
    start = s - a * SAMPLE_RATE // fps
    audio = np.asarray(rec["audio"], np.float32)[start:start + self.window]
    frames = np.asarray(rec["emotion"])[:int((s + self.window) * fps / SAMPLE_RATE) - a]
    label = np.bincount(self.to_memo[frames], minlength=NUM_EMOTIONS).argmax()
    return {"audio": audio, "emotion": np.int32(label)}


def _labelled(clips, clip) -> bool:
  index = getattr(clips, "index", None)
  if index is None:      # SynthTalk: every frame is labelled
    return True
  return int(index[clip].get("emotion", -1)) >= 0   # a real build's per-clip label
