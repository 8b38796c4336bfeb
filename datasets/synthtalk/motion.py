"""Per-frame face state: articulation from the syllables, speaking state, head pose, blinks,
and the facial deformation of each emotion.

The mouth leads the sound by ANTICIPATION_S (lips form a vowel before it is heard) and is
smoothed over neighbouring syllables (coarticulation); silence closes it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from talkjax_datasets.synthtalk.speech import CONSONANTS, VOWEL_OPEN, VOWEL_WIDTH
from talkjax_datasets.synthtalk.spec import EMOTIONS

ANTICIPATION_S = 0.06
PHRASE_GAP_S = 0.12   # syllables closer than this belong to one phrase (speaking state)
REST_WIDTH = 0.45

# emotion -> (brow raise, brow inner-up tilt, eye openness, mouth corners up, corner asymmetry,
#             extra jaw opening, extra lip spreading). Scaled by intensity. The
# combinations are kept far apart so one frame tells them apart, even at 64 px.
EMOTION_FACE = {
    "angry":     (-1.0, -1.0, -0.5, -0.4, 0.0, 0.0, -0.3),
    "contempt":  (0.0, 0.0, -0.2, 0.1, 1.0, 0.0, 0.2),
    "disgusted": (-0.4, 0.0, -0.6, -0.9, 0.0, 0.2, 0.4),
    "fear":      (0.7, 1.0, 0.6, -0.6, 0.0, 0.15, 0.8),
    "happy":     (0.2, 0.0, -0.3, 1.0, 0.0, 0.1, 0.6),
    "neutral":   (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "sad":       (-0.3, 1.0, -0.5, -1.0, 0.0, 0.0, -0.3),
    "surprised": (1.0, -0.3, 0.7, 0.0, 0.0, 0.4, -0.6),
}
INTENSITY_SCALE = (0.7, 0.85, 1.0)


def emotion_face(emotion: int, intensity: int) -> np.ndarray:
  return np.array(EMOTION_FACE[EMOTIONS[emotion]], np.float32) * INTENSITY_SCALE[intensity]


def _frame_times(n_frames, fps):
  return (np.arange(n_frames) + 0.5) / fps


def mouth_trajectory(syllables, n_frames, fps, loudness=1.0):
  """Per-frame (opening, width) in [0, 1] that the syllables imply, before emotion."""
  ms = int(np.ceil(n_frames / fps * 1000)) + 200
  openness = np.zeros(ms, np.float32)
  width = np.full(ms, REST_WIDTH, np.float32)
  gain = float(np.clip(loudness, 0.5, 1.5) ** 0.3)
  for s in syllables:
    c0, v0, v1 = (int(x * 1000) for x in (s.start, s.vowel_start, s.end))
    closes = CONSONANTS[s.consonant][2]
    openness[c0:v0] = 0.0 if closes else 0.18 * s.stress
    openness[v0:v1] = VOWEL_OPEN[s.vowel] * (0.45 + 0.55 * s.stress) * gain
    width[v0:v1] = VOWEL_WIDTH[s.vowel]
  shift = int(ANTICIPATION_S * 1000)
  openness = np.concatenate([openness[shift:], np.zeros(shift, np.float32)])
  width = np.concatenate([width[shift:], np.full(shift, REST_WIDTH, np.float32)])
  openness = ndimage.gaussian_filter1d(openness, 22.0)
  width = ndimage.gaussian_filter1d(width, 30.0)
  idx = np.minimum((_frame_times(n_frames, fps) * 1000).astype(int), ms - 1)
  return np.clip(openness[idx], 0, 1), np.clip(width[idx], 0, 1)


def phrase_spans(syllables):
  spans = []
  for s in syllables:
    if spans and s.start - spans[-1][1] < PHRASE_GAP_S:
      spans[-1][1] = s.end
    else:
      spans.append([s.start, s.end])
  return spans


def speaking_state(syllables, n_frames, fps):
  """1 where the frame lies inside a phrase (from the anticipated onset to its end)."""
  t = _frame_times(n_frames, fps)
  state = np.zeros(n_frames, np.int32)
  for a, b in phrase_spans(syllables):
    state[(t >= a - ANTICIPATION_S) & (t < b)] = 1
  return state


def smooth_noise(rng, n_frames, fps, scale, cutoff_s):
  """Smooth random motion: white noise low-passed at ~1/cutoff_s, unit-normalised * scale."""
  sigma = cutoff_s * fps
  pad = int(3 * sigma) + 1
  x = rng.standard_normal(n_frames + 2 * pad)
  x = ndimage.gaussian_filter1d(x, sigma)[pad:pad + n_frames]
  # Normalise by the filter's theoretical output std, not the clip's own: a short clip's
  # sample std is tiny and would blow the motion up.
  return (x * np.sqrt(2 * np.sqrt(np.pi) * sigma) * scale).astype(np.float32)


def head_pose(rng, n_frames, fps, nods=None):
  """(n_frames, 5) yaw, pitch, roll, tx, ty; `nods` adds listener nods (pitch) where > 0."""
  pose = np.stack([
      smooth_noise(rng, n_frames, fps, 0.16, 0.5), smooth_noise(rng, n_frames, fps, 0.08, 0.45),
      smooth_noise(rng, n_frames, fps, 0.06, 0.6), smooth_noise(rng, n_frames, fps, 0.03, 0.7),
      smooth_noise(rng, n_frames, fps, 0.02, 0.7)], axis=1)
  if nods is not None:
    t = np.arange(n_frames) / fps
    pose[:, 1] += 0.12 * nods * np.maximum(0, np.sin(2 * np.pi * 2.0 * t)) ** 2
  return pose


def blinks(rng, n_frames, fps):
  """Eyelid closure in [0, 1]: a blink every 2-5 s, lasting ~150 ms."""
  out = np.zeros(n_frames, np.float32)
  t = rng.uniform(0.2, 3.0)
  duration = 0.15
  times = np.arange(n_frames) / fps
  while t < n_frames / fps:
    phase = (times - t) / duration
    shape = np.clip(1 - np.abs(2 * phase - 1), 0, 1) * 1.6
    out = np.maximum(out, np.clip(shape, 0, 1))
    t += rng.uniform(2.0, 5.0)
  return out
