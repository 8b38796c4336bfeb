"""Synthetic speech: syllables from a source-filter (formant) synthesiser, with prosody.

A clip's speech is a list of syllables (consonant burst + vowel) grouped into phrases
separated by pauses. The same syllable list drives the audio here and the mouth in
`articulation.py`, so lips and sound agree exactly. Emotion changes pitch, energy and tempo;
each identity's voice sets the base pitch and the formant scale.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

from talkjax_datasets.synthtalk.spec import EMOTIONS, SAMPLE_RATE

# (F1, F2, F3) in Hz for an adult voice; the identity's formant_scale shifts them.
VOWEL_FORMANTS = np.array([
    [730, 1090, 2440],  # a
    [530, 1840, 2480],  # e
    [290, 2250, 3010],  # i
    [570, 840, 2410],   # o
    [320, 870, 2240],   # u
], np.float32)
VOWEL_OPEN = np.array([1.0, 0.62, 0.3, 0.72, 0.35], np.float32)   # jaw opening per vowel
VOWEL_WIDTH = np.array([0.6, 0.85, 1.0, 0.25, 0.1], np.float32)   # lip spreading per vowel
# Consonant bursts: (centre Hz, bandwidth Hz, closes the lips?)
CONSONANTS = ((600, 500, True), (1800, 900, False), (4500, 2500, False), (2800, 1500, False))

# emotion -> (pitch factor, pitch range factor, energy factor, tempo factor) at full intensity
EMOTION_PROSODY = {
    "angry": (1.08, 1.3, 1.5, 1.15), "contempt": (0.95, 0.8, 0.85, 0.9),
    "disgusted": (0.93, 0.9, 0.9, 0.88), "fear": (1.25, 1.2, 0.85, 1.25),
    "happy": (1.2, 1.5, 1.25, 1.1), "neutral": (1.0, 1.0, 1.0, 1.0),
    "sad": (0.88, 0.6, 0.6, 0.78), "surprised": (1.3, 1.7, 1.3, 1.0),
}


@dataclasses.dataclass
class Syllable:
  start: float      # seconds: the consonant burst begins
  vowel_start: float
  end: float
  vowel: int
  consonant: int
  stress: float     # 0.55..1: loudness and jaw opening of this syllable


def prosody(emotion: int, intensity: int) -> tuple[float, float, float, float]:
  """Emotion's prosody factors, scaled toward neutral for lower intensities (0..2)."""
  full = np.array(EMOTION_PROSODY[EMOTIONS[emotion]])
  weight = (0.5, 0.75, 1.0)[intensity]
  return tuple(1.0 + (full - 1.0) * weight)


def plan_syllables(rng, spans, tempo: float) -> list[Syllable]:
  """Fill each (start, end) speaking span with phrases of syllables and short pauses."""
  out = []
  for span_start, span_end in spans:
    t = span_start
    phrase_end = t + rng.uniform(0.5, 1.6)
    while True:
      cons = rng.uniform(0.03, 0.06) / tempo
      vowel = rng.uniform(0.09, 0.2) / tempo
      if t + cons + vowel > min(span_end, phrase_end):
        if phrase_end >= span_end:
          break
        t = phrase_end + rng.uniform(0.15, 0.45)  # a pause between phrases
        phrase_end = t + rng.uniform(0.5, 1.6)
        continue
      out.append(Syllable(t, t + cons, t + cons + vowel, int(rng.integers(len(VOWEL_FORMANTS))),
                          int(rng.integers(len(CONSONANTS))), float(rng.uniform(0.55, 1.0))))
      t += cons + vowel + (rng.uniform(0.0, 0.03) if rng.random() < 0.3 else 0.0)
  return out


def _resonator(freq, bandwidth):
  """A two-pole resonator (one formant) as lfilter coefficients with unit gain at freq."""
  r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
  theta = 2 * np.pi * freq / SAMPLE_RATE
  a = [1.0, -2 * r * np.cos(theta), r * r]
  gain = abs(np.polyval(a[::-1], np.exp(-1j * theta)))  # |A(e^{jw})| at the centre
  return [gain], a


def _envelope(n, attack, release):
  env = np.ones(n, np.float32)
  a, r = min(attack, n // 2), min(release, n // 2)
  if a:
    env[:a] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, a))
  if r:
    env[-r:] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, r))
  return env


def render_speech(rng, syllables, n_samples, voice_f0, formant_scale, emotion, intensity):
  """Audio (n_samples,) float32 for the syllables, in a voice, with emotion's prosody."""
  pitch, pitch_range, energy, _ = prosody(emotion, intensity)
  out = np.zeros(n_samples + SAMPLE_RATE // 10, np.float32)
  if not syllables:
    return out[:n_samples]
  # Pitch contour per sample: base * emotion, an accent per stressed syllable, slow drift.
  t = np.arange(len(out), dtype=np.float32) / SAMPLE_RATE
  f0 = np.full(len(out), voice_f0 * pitch, np.float32)
  f0 *= 1 + 0.04 * pitch_range * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t + rng.uniform(0, 6))
  for s in syllables:
    a, b = int(s.vowel_start * SAMPLE_RATE), int(s.end * SAMPLE_RATE)
    f0[a:b] *= 1 + 0.12 * pitch_range * (s.stress - 0.7) * np.linspace(1.0, 0.6, max(b - a, 0))
  f0 *= 1 + 0.01 * rng.standard_normal(len(out)).astype(np.float32)  # jitter
  phase = np.cumsum(f0 / SAMPLE_RATE)
  source = (2 * (phase % 1.0) - 1).astype(np.float32)
  source = signal.lfilter([1.0], [1.0, -0.6], source).astype(np.float32)  # spectral tilt
  pad = SAMPLE_RATE // 50
  for s in syllables:
    c0, v0, v1 = (int(x * SAMPLE_RATE) for x in (s.start, s.vowel_start, s.end))
    # Consonant: a filtered noise burst that decays into the vowel.
    centre, bw, _ = CONSONANTS[s.consonant]
    burst = rng.standard_normal(v0 - c0 + pad).astype(np.float32)
    b, a = _resonator(centre * formant_scale, bw)
    burst = signal.lfilter(b, a, burst).astype(np.float32)
    burst *= np.exp(-np.linspace(0, 4, len(burst))).astype(np.float32) * (
        0.12 * s.stress / (burst.std() + 1e-8))
    out[c0:c0 + len(burst)] += burst[:len(out) - c0]
    # Vowel: the glottal source through three formant resonators in cascade.
    seg = source[v0:v1 + pad]
    for k, (freq, bwk) in enumerate(zip(VOWEL_FORMANTS[s.vowel], (80, 100, 140))):
      b, a = _resonator(freq * formant_scale, bwk)
      seg = signal.lfilter(b, a, seg).astype(np.float32) * (1.0 if k == 0 else 0.8)
    env = _envelope(len(seg), int(0.015 * SAMPLE_RATE), int(0.03 * SAMPLE_RATE) + pad)
    # Open vowels are intrinsically louder than closed ones (a real effect, ~5 dB a vs i).
    loud = s.stress * (0.45 + 0.55 * VOWEL_OPEN[s.vowel]) / (seg.std() + 1e-8)
    out[v0:v0 + len(seg)] += seg * env * loud
  out = out[:n_samples]
  peak = np.abs(out).max()
  if peak > 0:
    out *= 0.35 * energy / peak
  return out


def background_noise(rng, n_samples, level):
  """Gently low-tilted room noise at an absolute RMS level."""
  white = rng.standard_normal(n_samples).astype(np.float32)
  pink = signal.lfilter([1.0], [1.0, -0.5], white).astype(np.float32)
  return pink * (level / (pink.std() + 1e-8))
