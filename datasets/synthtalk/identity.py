"""Procedural identities: a face, a background and a voice drawn from one seed.

`identity_vector` flattens the visible parameters into the per-clip ground truth
`identity_params` that the probe learns to read back (its identity embedding).
"""

from __future__ import annotations

import numpy as np

SKIN_TONES = np.array([
    [255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 96], [161, 102, 70],
    [120, 76, 52], [250, 210, 180], [230, 185, 140]], np.float32) / 255.0
HAIR_STYLES = 4  # 0 short cap, 1 long sides, 2 high top, 3 bald with side fringe
BG_STYLES = 3    # 0 vertical gradient, 1 stripes, 2 soft disks

# Fields of `identity_vector`, in order (all roughly unit-scaled so cosine treats them fairly).
VECTOR_FIELDS = (
    "skin_r", "skin_g", "skin_b", "hair_r", "hair_g", "hair_b", "iris_r", "iris_g", "iris_b",
    "bg_r", "bg_g", "bg_b", "bg2_r", "bg2_g", "bg2_b", "shirt_r", "shirt_g", "shirt_b",
    "face_w", "face_h", "face_round", "eye_gap", "eye_size", "mouth_w", "lip_h",
    "hair_0", "hair_1", "hair_2", "hair_3", "brow_w")


def _color(rng, lo=0.05, hi=0.95):
  return rng.uniform(lo, hi, 3).astype(np.float32)


def draw_identity(seed: int, identity: int) -> dict:
  """Deterministic in (seed, identity); different seeds give different people."""
  rng = np.random.default_rng([seed, 7919, identity])
  skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05, 3)
  hair = _color(rng, 0.02, 0.6) if rng.random() < 0.7 else _color(rng, 0.3, 0.95)
  return {
      "skin": np.clip(skin, 0, 1).astype(np.float32),
      "hair": hair,
      "iris": _color(rng, 0.05, 0.7),
      "lip": np.clip(skin * rng.uniform([0.75, 0.35, 0.35], [0.95, 0.6, 0.6]), 0, 1).astype(np.float32),
      "bg": _color(rng),
      "bg2": _color(rng),
      "shirt": _color(rng),
      "bg_style": int(rng.integers(BG_STYLES)),
      "hair_style": int(rng.integers(HAIR_STYLES)),
      "face_w": float(rng.uniform(0.40, 0.52)),     # half-width, image-half units
      "face_h": float(rng.uniform(0.52, 0.64)),     # half-height
      "face_round": float(rng.uniform(2.0, 2.8)),   # superellipse exponent
      "eye_gap": float(rng.uniform(0.17, 0.24)),    # half the distance between eyes
      "eye_size": float(rng.uniform(0.075, 0.10)),
      "mouth_w": float(rng.uniform(0.15, 0.21)),    # half-width at rest
      "lip_h": float(rng.uniform(0.022, 0.04)),
      "brow_w": float(rng.uniform(0.014, 0.026)),   # brow half-thickness
      # Voice: base pitch (Hz) and a formant scale (vocal-tract length).
      "f0": float(rng.uniform(95, 230)),
      "formant_scale": float(rng.uniform(0.88, 1.18)),
  }


def identity_vector(ident: dict) -> np.ndarray:
  """The per-clip ground truth the probe regresses; order = VECTOR_FIELDS."""
  style = np.zeros(HAIR_STYLES, np.float32)
  style[ident["hair_style"]] = 1.0
  shape = np.array([
      (ident["face_w"] - 0.46) / 0.06, (ident["face_h"] - 0.58) / 0.06,
      (ident["face_round"] - 2.4) / 0.4, (ident["eye_gap"] - 0.205) / 0.035,
      (ident["eye_size"] - 0.0875) / 0.0125, (ident["mouth_w"] - 0.18) / 0.03,
      (ident["lip_h"] - 0.031) / 0.009], np.float32) * 0.5
  colors = np.concatenate([ident[k] for k in ("skin", "hair", "iris", "bg", "bg2", "shirt")])
  brow = np.array([(ident["brow_w"] - 0.02) / 0.006 * 0.5], np.float32)
  # One-hot centred on its mean (0.25) so cosine similarity is not dominated by the zeros.
  return np.concatenate([colors * 2 - 1, shape, (style - 0.25) * 2, brow]).astype(np.float32)
