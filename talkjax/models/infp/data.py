"""INFP's data: dyadic clips (dyadic SynthTalk, a DyConv build, or a mixture of them).

Stage 1 trains on (source, driving) frame pairs (talkjax/data/frame_pairs.py). Stage 2
trains on windows of every frame's motion code, read once by the trained stage-1 motion
encoder and cached with both audio tracks (talkjax/data/motion_codes.py), under
`<stage-1 workdir>/motion_codes/step<S>/<dataset>/<split>_dyadic.npz`.

A window holds what a sampling chunk sees, and nothing else: its motion (W, D); the
`previous` P frames of motion before it (the clip's first frame's motion repeated before the
clip start: the portrait's motion, which is what the first sampling chunk is given); the
agent's and the partner's raw 16 kHz audio with the same left context a chunk gets; the
clip's first frame's motion (`anchor`: what sampling gives as the portrait's motion); and,
for the style encoder, the motion of another window of the same clip. No role label: who
speaks when is only in the two tracks.
"""

from __future__ import annotations

import numpy as np

from talkjax.audio.align import with_context
from talkjax.data import motion_codes
from talkjax.data.motion_codes import SAMPLES_PER_FRAME

TRACKS = ("audio", "partner_audio")


def cached_codes(config, split: str) -> dict:
  """Motion codes and both tracks of one split (every dataset of a mixture in turn)."""
  from talkjax.data.prepare import mixture
  return motion_codes.concatenate([_dataset_codes(config, path, split)
                                   for path, _ in mixture(config.data)])


def _dataset_codes(config, dataset, split: str) -> dict:
  import jax
  from talkjax.data.prepare import open_clips
  from talkjax.models.infp.builders import build_imitation, load_stage1

  stage1 = load_stage1(config)
  clips = open_clips(dataset, split)
  path = (stage1.workdir / "motion_codes" / f"step{stage1.step}"
          / motion_codes.dataset_name(dataset, clips) / f"{split}_dyadic.npz")

  def compute():
    model = build_imitation(stage1.config.model)
    params = stage1.params["trainable"]["generator"]
    encode = jax.jit(lambda x: model.apply({"params": params}, x, method=model.encode_motion))
    return motion_codes.extract_clip_codes(encode, clips, tracks=TRACKS)
  return motion_codes.cached(path, compute)


class DyadicWindows:
  """Keys: motion (W, D), previous (P, D), audio and partner_audio (context + W * 640,),
  anchor (D,) (absent unless `anchor`), style (S, D) (S = style_frames; absent when 0)."""

  def __init__(self, codes: dict, *, window: int, previous: int, stride: int = 1,
               audio_context: int = 0, style_frames: int = 0, anchor: bool = False,
               name: str = "", seed: int = 0):
    self.codes, self.window, self.previous = codes, int(window), int(previous)
    self.anchor = bool(anchor)
    self.audio_context, self.style_frames = int(audio_context), int(style_frames)
    self.name, self.seed = name, int(seed)
    offsets = codes["offsets"]
    self.starts = motion_codes.window_starts(offsets, self.window, stride)
    self.clip_start = np.repeat(offsets[:-1], np.diff(offsets))
    self.clip_end = np.repeat(offsets[1:], np.diff(offsets))

  def __len__(self):
    return len(self.starts)

  def __repr__(self):
    return (f"DyadicWindows({self.name}, window={self.window}, previous={self.previous}, "
            f"len={len(self)})")

  def __getitem__(self, index):
    s = int(self.starts[int(index)])
    first, end = int(self.clip_start[s]), int(self.clip_end[s])
    motion = self.codes["motion"]
    before = np.clip(np.arange(s - self.previous, s), first, None)
    out = {"motion": motion[s:s + self.window], "previous": motion[before]}
    if self.anchor:
      out["anchor"] = motion[first]
    n = SAMPLES_PER_FRAME
    for key in TRACKS:
      clip = self.codes[key][first * n:end * n]
      out[key] = with_context(clip, (s - first) * n, self.window * n, self.audio_context)
    if self.style_frames:
      # Another stretch of the same clip (deterministic in the index): the person's manner,
      # not this window's content.
      rng = np.random.default_rng([self.seed, int(index)])
      length = min(self.style_frames, end - first)
      at = first + int(rng.integers(0, end - first - length + 1))
      idx = np.resize(np.arange(at, at + length), self.style_frames)
      out["style"] = motion[idx]
    return out
