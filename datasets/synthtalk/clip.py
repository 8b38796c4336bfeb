"""One SynthTalk clip: plan speech (or a dyadic conversation), derive the face state from it,
render the frames, and pack frames + audio + ground truth into one example dict.

`make_example(spec, index)` is deterministic in (spec.seed, index) and needs only numpy,
scipy and Pillow, so it runs in plain worker processes without TFDS.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from talkjax_datasets.synthtalk import motion, speech
from talkjax_datasets.synthtalk.identity import draw_identity, identity_vector
from talkjax_datasets.synthtalk.render import render_frames
from talkjax_datasets.synthtalk.spec import EMOTIONS, NEUTRAL, BuildSpec

LISTENER_SMILE = 0.35  # mouth-corner lift while listening to the partner (dyadic)


def identity_of_clip(spec: BuildSpec, index: int) -> int:
  return index % spec.identities


def _turns(rng, seconds):
  """Alternating agent / partner turns with overlaps and silences: two span lists."""
  agent, partner = [], []
  t = rng.uniform(0.0, 0.3)
  who = int(rng.integers(2))
  while t < seconds:
    length = rng.uniform(0.7, 2.0)
    (agent if who == 0 else partner).append((t, min(t + length, seconds)))
    t += length + rng.uniform(-0.2, 0.45)  # negative: the next speaker overlaps
    who = 1 - who
  return agent, partner


def make_clip(spec: BuildSpec, index: int) -> dict:
  """Raw clip: uint8 frames (T, R, R, 3), audio, and per-frame / per-clip ground truth."""
  ident, state, example = clip_state(spec, index)
  example["frames"] = render_frames(ident, state, spec.resolution)
  return example


def clip_state(spec: BuildSpec, index: int) -> tuple[dict, dict, dict]:
  """(identity, per-frame face state, example without frames) of clip `index`.

  Rendering the state gives the clip's frames; evaluation renders edited states (a halved
  mouth, another identity) to check that its metrics reject them."""
  rng = np.random.default_rng([spec.seed, 104729, index])
  ident_id = identity_of_clip(spec, index)
  ident = draw_identity(spec.seed, ident_id)
  n_frames, n_samples = spec.frames_per_clip, spec.samples_per_clip
  emotion = int(rng.integers(len(EMOTIONS)))
  intensity = 0 if emotion == NEUTRAL else int(rng.integers(3))
  _, _, energy, tempo = speech.prosody(emotion, intensity)

  if spec.dyadic:
    agent_spans, partner_spans = _turns(rng, spec.seconds)
  else:
    agent_spans, partner_spans = [(rng.uniform(0.0, 0.35), spec.seconds)], []
  syllables = speech.plan_syllables(rng, agent_spans, tempo)
  audio = speech.render_speech(rng, syllables, n_samples, ident["f0"], ident["formant_scale"],
                               emotion, intensity)
  # SNR 30-45 dB against the speech's RMS.
  noise_level = (audio.std() + 1e-4) * 10 ** (-rng.uniform(30, 45) / 20)
  audio += speech.background_noise(rng, n_samples, noise_level)

  opening, width = motion.mouth_trajectory(syllables, n_frames, spec.fps, energy)
  speaking = motion.speaking_state(syllables, n_frames, spec.fps)
  face = np.tile(motion.emotion_face(emotion, intensity), (n_frames, 1))
  nods = None
  example = {}
  if spec.dyadic:
    partner_syll = speech.plan_syllables(rng, partner_spans, 1.0)
    partner_audio = speech.render_speech(
        rng, partner_syll, n_samples, rng.uniform(95, 230), rng.uniform(0.88, 1.18), NEUTRAL, 0)
    partner_audio += speech.background_noise(rng, n_samples, noise_level)
    example["partner_audio"] = partner_audio.astype(np.float32)
    # A listener nods and smiles a little while the partner speaks.
    partner_talks = motion.speaking_state(partner_syll, n_frames, spec.fps).astype(np.float32)
    listening = partner_talks * (1 - speaking)
    nods = listening
    face[:, 3] += LISTENER_SMILE * listening
  pose = motion.head_pose(rng, n_frames, spec.fps, nods)
  blink = motion.blinks(rng, n_frames, spec.fps)
  mouth_open = np.clip(opening + face[:, 5], 0, 1).astype(np.float32)
  mouth_width = np.clip(width + face[:, 6] * 0.5, 0, 1).astype(np.float32)
  state = {"mouth_open": mouth_open, "mouth_width": mouth_width, "pose": pose,
           "blink": blink, "speaking": speaking, "emotion_face": face}
  example.update({
      "audio": audio.astype(np.float32),
      "mouth_open": mouth_open,
      "mouth_width": mouth_width,
      "emotion": np.full(n_frames, emotion, np.int32),
      "intensity": np.full(n_frames, intensity, np.int32),
      "head_pose": pose.astype(np.float32),
      "blink": blink.astype(np.float32),
      "speaking": speaking.astype(np.int32),
      "identity": np.int64(ident_id),
      "identity_params": identity_vector(ident),
      "clip_index": np.int64(index),
  })
  return ident, state, example


def encode_frames(frames: np.ndarray, image_format: str) -> np.ndarray:
  """(T, H, W, 3) uint8 -> (T,) object array of JPEG or PNG bytes."""
  out = np.empty(len(frames), dtype=object)
  for i, frame in enumerate(frames):
    buf = io.BytesIO()
    if image_format == "jpeg":
      Image.fromarray(frame).save(buf, format="JPEG", quality=92)
    else:
      Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
    out[i] = buf.getvalue()
  return out


def make_example(spec: BuildSpec, index: int) -> dict:
  """A clip ready for the TFDS writer: frames encoded as image bytes."""
  clip = make_clip(spec, index)
  clip["frames"] = encode_frames(clip["frames"], spec.image_format)
  return clip
