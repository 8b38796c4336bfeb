"""Emotion classes, the classifier learning synthetic emotions, and the window/clip rules."""

import jax
import numpy as np
import pytest

from talkjax.audio import emotion
from talkjax.audio.mel import log_mel_jax


def test_classes():
  assert emotion.EMOTIONS == ("angry", "disgusted", "fearful", "happy", "neutral", "other",
                              "sad", "surprised", "unknown")
  assert emotion.NULL_EMOTION == 9 and emotion.NUM_EMOTION_EMBEDDINGS == 10
  assert emotion.emotion_index("fear") == emotion.EMOTIONS.index("fearful")
  assert emotion.emotion_index("contempt") == emotion.EMOTIONS.index("other")
  assert emotion.emotion_index("null") == 9


def _synthetic_emotions(n, seed):
  """4 'emotions': low/high pitch x steady/tremolo energy, with random jitter and noise."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, size=n)
  t = np.arange(8000) / 16000
  f0 = np.where(labels % 2 == 0, 150.0, 400.0) * rng.uniform(0.85, 1.15, size=n)
  tremolo = np.where(labels // 2 == 0, 0.0, 0.9)[:, None] * np.sin(2 * np.pi * 6 * t)
  phase = 2 * np.pi * f0[:, None] * t + rng.uniform(0, 6.3, size=(n, 1))
  voice = sum(np.sin(k * phase) / k for k in range(1, 6)) * (1 + tremolo)
  audio = 0.1 * voice + 0.01 * rng.standard_normal(voice.shape)
  return np.asarray(audio, np.float32), labels


def test_classifier_learns_synthetic_emotions():
  train_audio, train_labels = _synthetic_emotions(160, 0)
  test_audio, test_labels = _synthetic_emotions(80, 1)
  featurize = jax.jit(log_mel_jax)
  model, params, losses = emotion.train_emotion_classifier(
      featurize(train_audio), train_labels, steps=200, seed=0)
  logits = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, featurize(test_audio))
  accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == test_labels))
  assert logits.shape == (80, emotion.NUM_EMOTIONS)
  assert accuracy > 0.9  # chance is 0.25
  assert losses[-1] < losses[0]


def test_windows_cover_the_audio():
  assert list(emotion.window_starts(16000 * 2)) == [0]             # 2 s: one padded window
  assert list(emotion.window_starts(16000 * 3)) == [0]
  assert list(emotion.window_starts(16000 * 5)) == [0, 16000, 32000]
  assert list(emotion.window_starts(16000 * 5 + 1)) == [0, 16000, 32000, 48000]
  w = emotion.audio_windows(np.ones(int(16000 * 4.5), np.float32))
  assert w.shape == (3, 48000) and w[:2].all()
  assert w[2, :40000].all() and not w[2, 40000:].any()  # the last window is zero-padded


def _fake_classify(windows):
  """A stand-in classifier: a pure function of the window index."""
  return np.array([(3 * k + 1) % 9 for k in range(len(windows))])


@pytest.mark.parametrize("fps", [25, 30])
def test_frame_labels_take_the_nearest_window(fps):
  seconds = 7.0  # windows start at 0..4 s, centred at 1.5..5.5 s
  audio = np.zeros(int(16000 * seconds), np.float32)
  n = int(seconds * fps)
  labels = emotion.predict_frame_emotions(audio, n, fps, _fake_classify)
  centres = 1.5 + np.arange(5)
  for i in range(n):
    t = (i + 0.5) / fps
    d = np.abs(centres - t)
    nearest = int(np.flatnonzero(d == d.min())[-1])  # halfway: the later window
    assert labels[i] == (3 * nearest + 1) % 9


def test_halfway_frame_goes_to_later_window():
  # at 0.25 fps frame 0 is centred at 2.0 s, exactly between window centres 1.5 and 2.5 s
  got = emotion.frame_labels_from_windows([10, 20], num_frames=1, fps=0.25)  # t = 2.0 s
  assert list(got) == [20]


def test_clip_mode():
  frames = np.array([1, 1, 2, 2, 2, 3, 3, 3, 0, 0])
  assert list(emotion.clip_modes(frames, clip_len=5)) == [2, 3]
  assert list(emotion.clip_modes([4, 4, 1, 1], clip_len=4)) == [1]  # tie: smaller index
  per_frame = emotion.predict_frame_emotions(np.zeros(16000 * 7, np.float32), 40, 25,
                                             _fake_classify, clip_len=16)
  plain = emotion.predict_frame_emotions(np.zeros(16000 * 7, np.float32), 40, 25,
                                         _fake_classify)
  assert per_frame.shape == (40,)
  for start in (0, 16, 32):
    clip = plain[start:start + 16]
    counts = np.bincount(clip, minlength=10)
    assert np.all(per_frame[start:start + 16] == np.argmax(counts))
