"""IF-MDM's data (SynthTalk, a real-dataset build or a mixture: talkjax.data.prepare).
Stage 1: (source, driving) frame pairs (talkjax/data/frame_pairs.py). Stage 2:
every frame's motion code (read by the trained stage-1 encoder) and the clip's audio,
cached once per (stage-1 checkpoint, dataset, split; talkjax/data/motion_codes.py), cut
into windows.

What a window carries for speech (`model.audio.train_features`):
- "chunked" (default): the window's raw audio with the same left context and silence
  before the clip start that sampling gives a chunk; the training step computes the
  features with the function sampling uses (`SpeechFeatures.chunk`), so a window that
  starts where a sampling chunk starts sees exactly the numbers sampling will feed it.
- "whole_clip": features computed once over each whole clip (cheaper with wav2vec2, whose
  group norm and attention span the whole input; but they differ from the per-chunk
  features of sampling, most near chunk ends).

Cache: `<stage-1 workdir>/motion_codes/step<S>/<dataset config>/<split>_<tag>.npz` (a model
file as stage 1: under ~/.cache/talkjax/stages/<file>-<digest>/, stages.py) holding
per clip the motion codes (T, D) and the audio (T * 640) or features (T, 2F), concatenated,
with offsets. Delete it to recompute; a stage-1 checkpoint at another step gets its own
folder.
"""

from __future__ import annotations

import pathlib

import numpy as np

from talkjax.data import motion_codes
from talkjax.data.motion_codes import SAMPLES_PER_FRAME
from talkjax.errors import ConfigError


TRAIN_FEATURES = ("chunked", "whole_clip")


def chunked(audio_config) -> bool:
  mode = audio_config.get("train_features", "chunked")
  if mode not in TRAIN_FEATURES:
    raise ConfigError(f"unknown model.audio.train_features {mode!r}",
                       fix=f"use one of {TRAIN_FEATURES}")
  return mode == "chunked"


def feature_tag(audio_config) -> str:
  if chunked(audio_config):
    return "audio16k"     # raw samples: the features are computed in the training step
  if audio_config.kind == "logmel":
    return f"logmel{audio_config.n_mels}"
  return f"w2v{pathlib.Path(audio_config.wav2vec2).name}_l{audio_config.layer}"


def cached_codes(config, split: str) -> dict:
  """Motion codes and features of one split, from the cache or computed now; with a
  mixture, every dataset's clips one after the other (`sources`: clips per dataset)."""
  from talkjax.data.prepare import mixture
  return motion_codes.concatenate([_dataset_codes(config, path, split)
                                   for path, _ in mixture(config.data)])


def _dataset_codes(config, dataset, split: str) -> dict:
  import jax
  import jax.numpy as jnp
  from talkjax.audio.frame_features import SpeechFeatures
  from talkjax.data.prepare import open_clips
  from talkjax.models.ifmdm.builders import build_autoencoder, generator_params, load_stage1

  stage1 = load_stage1(config)
  clips = open_clips(dataset, split)
  path = (stage1.cache_dir / "motion_codes" / f"step{stage1.step}"
          / motion_codes.dataset_name(dataset, clips)
          / f"{split}_{feature_tag(config.model.audio)}.npz")

  def compute():
    model, params = build_autoencoder(stage1.config.model), generator_params(stage1)
    encode = jax.jit(lambda x: model.apply({"params": params}, x, method=model.encode_motion))
    features = None
    if not chunked(config.model.audio):
      speech = SpeechFeatures(config.model.audio)
      whole = speech.whole(speech.load())
      features = lambda a: np.asarray(whole(jnp.asarray(a[None])))[0]
    return motion_codes.extract_clip_codes(encode, clips, features=features)
  return motion_codes.cached(path, compute)


class MotionWindows:
  """Windows of `window` frames: motion (W, D), hint/mean/std (D,), and "audio": the
  window's samples with `audio_context` samples before it (context + W * 640,), silence
  before the clip start, when the codes hold raw audio; else its features (W, 2F)."""

  def __init__(self, codes: dict, window: int, stride: int = 1, name: str = "",
               audio_context: int = 0):
    self.codes, self.window, self.name = codes, window, name
    self.audio_context = int(audio_context)
    offsets = codes["offsets"]
    self.starts = motion_codes.window_starts(offsets, window, stride)
    self.clip_start = np.repeat(offsets[:-1], np.diff(offsets))
    self.clip_end = np.repeat(offsets[1:], np.diff(offsets))

  def __len__(self):
    return len(self.starts)

  def __getitem__(self, index):
    s = int(self.starts[int(index)])
    motion = self.codes["motion"][s:s + self.window]
    first = int(self.clip_start[s])
    # The hint is the frame before the window, or the clip's first frame (the identity
    # image) when the window starts the clip: the two cases sampling meets.
    hint = self.codes["motion"][s - 1 if s > first else first]
    return {"motion": motion, "audio": self.speech(s, first), "hint": hint,
            "mean": motion.mean(0), "std": motion.std(0)}

  def speech(self, s: int, first: int):
    if "audio" not in self.codes:
      return self.codes["features"][s:s + self.window]
    from talkjax.audio.align import with_context
    n = SAMPLES_PER_FRAME
    clip = self.codes["audio"][first * n:int(self.clip_end[s]) * n]
    return with_context(clip, (s - first) * n, self.window * n, self.audio_context)

  def __repr__(self):
    return f"MotionWindows({self.name}, window={self.window}, len={len(self)})"
