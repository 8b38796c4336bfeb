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
    from talkjax.data.prepare import ensure_synthtalk
    d = self.config.data
    if d.get("kind", "synthtalk") != "synthtalk":
      raise ConfigError(f"audio_emotion reads data.kind 'synthtalk' so far, not {d.kind!r}",
                        fix="use a SynthTalk config")
    return EmotionWindows(ensure_synthtalk(d), "train" if split == "train" else "val",
                          window=self.window, offsets=tuple(d.get("offsets", (0.0,))))


class EmotionWindows:
  """{"audio": (window,) float32, "emotion": int32} for every clip x window start."""

  def __init__(self, path, split, *, window: int, offsets):
    from talkjax.data.synthtalk import SynthTalkClips
    from talkjax_datasets.synthtalk.spec import EMOTIONS
    self.clips = SynthTalkClips(path, split)
    self.window, self.offsets = window, [int(round(o * SAMPLE_RATE)) for o in offsets]
    length = float(self.clips.meta["seconds"]) * SAMPLE_RATE
    if max(self.offsets) + window > length:
      raise ConfigError(f"a {window / SAMPLE_RATE:g} s window at {max(offsets)} s does not "
                        f"fit the {length / SAMPLE_RATE:g} s clips of {self.clips.path}",
                        fix="use smaller data.offsets or longer clips")
    self.to_memo = np.array([emotion_index(e) for e in EMOTIONS], np.int32)

  def __len__(self):
    return len(self.clips) * len(self.offsets)

  def __getitem__(self, index):
    clip, k = divmod(int(index), len(self.offsets))
    rec = self.clips.record(clip)
    s = self.offsets[k]
    audio = np.asarray(rec["audio"], np.float32)[s:s + self.window]
    fps = self.clips.fps
    frames = np.asarray(rec["emotion"])[int(s * fps / SAMPLE_RATE):
                                        int((s + self.window) * fps / SAMPLE_RATE)]
    label = np.bincount(self.to_memo[frames], minlength=NUM_EMOTIONS).argmax()
    return {"audio": audio, "emotion": np.int32(label)}
