"""INFP's data: dyadic clips (dyadic SynthTalk, a DyConv build, or a mixture of them).

Stage 1 trains on (source, driving) frame pairs (talkjax/data/frame_pairs.py). Stage 2
trains on windows of every frame's motion code, read once by the trained stage-1 motion
encoder and cached with both audio tracks (talkjax/data/motion_codes.py), under
`<stage-1 workdir>/motion_codes/step<S>/<dataset>/<split>_dyadic.npz` (a model file as
stage 1: under ~/.cache/talkjax/stages/<file>-<digest>/, stages.py).

A window holds what a sampling chunk sees, and nothing else: its motion (W, D); the
`previous` P frames of motion before it (the clip's first frame's motion repeated before the
clip start: the portrait's motion, which is what the first sampling chunk is given); the
agent's and the partner's raw 16 kHz audio with the same left context a chunk gets; the
clip's first frame's motion (`anchor`: what sampling gives as the portrait's motion), or
with `anchor_frame="any"` the motion of a random frame of the same clip; and,
for the style encoder, the motion of another window of the same clip; for the portrait
encoder (`model.portrait`), one of a few frames of the clip (`portrait`, cached beside the
codes as `<split>_portraits_k<K>_r<r>.npz`). No role label: who speaks when is only in the
two tracks.

With `lead` (rollout training: the frames a sampling chunk keeps), a window also holds what
the chunk before it saw: its `lead_previous` motion and both tracks (`lead_audio`,
`lead_partner_audio`), starting `lead` frames before the window, so the task can generate
that chunk and give its last frames as the window's previous motion, as sampling does.
`lead_valid` is 0 for windows too near their clip's start to have such a chunk.
"""

from __future__ import annotations

import numpy as np

from talkjax.audio.align import with_context
from talkjax.data import motion_codes
from talkjax.data.motion_codes import SAMPLES_PER_FRAME

TRACKS = ("audio", "partner_audio")
ANCHOR_FRAMES = ("first", "any")


def cached_codes(config, split: str) -> dict:
  """Motion codes and both tracks of one split (every dataset of a mixture in turn)."""
  from talkjax.data.prepare import mixture
  return motion_codes.concatenate([_dataset_codes(config, path, split)
                                   for path, _ in mixture(config.data)])


def _dataset_codes(config, dataset, split: str) -> dict:
  import jax
  from talkjax.data.prepare import open_clips
  from talkjax.models.infp.builders import build_imitation, load_stage1, portrait_resolution
  from talkjax.models.infp.portrait import portrait_image

  stage1 = load_stage1(config)
  clips = open_clips(dataset, split)
  folder = (stage1.cache_dir / "motion_codes" / f"step{stage1.step}"
            / motion_codes.dataset_name(dataset, clips))

  def compute():
    model = build_imitation(stage1.config.model)
    params = stage1.params["trainable"]["generator"]
    encode = jax.jit(lambda x: model.apply({"params": params}, x, method=model.encode_motion))
    return motion_codes.extract_clip_codes(encode, clips, tracks=TRACKS)
  codes = motion_codes.cached(folder / f"{split}_dyadic.npz", compute)
  resolution = portrait_resolution(config)
  if resolution:
    k = int(config.model.portrait.frames)
    prepare = jax.jit(lambda x: portrait_image(x, resolution))
    codes.update(motion_codes.cached(
        folder / f"{split}_portraits_k{k}_r{resolution}.npz",
        lambda: motion_codes.extract_clip_frames(clips, frames=k, prepare=prepare)))
  return codes


class DyadicWindows:
  """Keys: motion (W, D), previous (P, D), audio and partner_audio (context + W * 640,),
  anchor (D,) (absent unless `anchor`; the clip's first frame, or with anchor_frame="any" a
  frame of the clip drawn per index), style (S, D) (S = style_frames; absent when 0),
  portrait (r, r, 3) in [-1, 1] (when the codes hold `portraits`: one of its clip's, drawn
  per index),
  lead_previous (P, D), lead_audio, lead_partner_audio and lead_valid () (absent unless
  `lead`)."""

  def __init__(self, codes: dict, *, window: int, previous: int, stride: int = 1,
               audio_context: int = 0, style_frames: int = 0, anchor: bool = False,
               anchor_frame: str = "first", lead: int = 0, name: str = "", seed: int = 0):
    self.codes, self.window, self.previous = codes, int(window), int(previous)
    self.anchor, self.lead = bool(anchor), int(lead)
    self.anchor_frame = anchor_frame   # one of ANCHOR_FRAMES (the task checks the config)
    if not 0 <= self.lead <= self.window or (self.lead and self.lead < self.previous):
      raise ValueError(f"lead={lead} must be 0 or in {previous}..{window} (the frames a "
                       "chunk keeps, at least the previous motion's)")
    self.audio_context, self.style_frames = int(audio_context), int(style_frames)
    self.name, self.seed = name, int(seed)
    offsets = codes["offsets"]
    self.starts = motion_codes.window_starts(offsets, self.window, stride)
    self.clip_start = np.repeat(offsets[:-1], np.diff(offsets))
    self.clip_end = np.repeat(offsets[1:], np.diff(offsets))
    self.clip_index = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))

  def __len__(self):
    return len(self.starts)

  def __repr__(self):
    return (f"DyadicWindows({self.name}, window={self.window}, previous={self.previous}, "
            f"len={len(self)})")

  def _before(self, s: int, first: int) -> np.ndarray:
    """The previous motion's frames of a window at s: the clip's first frame before it."""
    return np.clip(np.arange(s - self.previous, s), first, None)

  def __getitem__(self, index):
    s = int(self.starts[int(index)])
    first, end = int(self.clip_start[s]), int(self.clip_end[s])
    motion = self.codes["motion"]
    out = {"motion": motion[s:s + self.window], "previous": motion[self._before(s, first)]}
    if self.anchor:
      at = first
      if self.anchor_frame == "any":
        # Any frame of the clip (deterministic in the index): a portrait may be caught
        # mid-word, so the anchor would tell who and in what mood rather than the rest of
        # the mouth (tried, not kept: experiments/infp/README.md).
        at = int(np.random.default_rng([self.seed, int(index), 1]).integers(first, end))
      out["anchor"] = motion[at]
    if "portraits" in self.codes:
      # Any of the clip's cached frames (deterministic in the index): what holds for the
      # whole clip (who, which mood), not one frame's mouth (portrait.py).
      frames = self.codes["portraits"][self.clip_index[s]]
      pick = int(np.random.default_rng([self.seed, int(index), 2]).integers(len(frames)))
      out["portrait"] = frames[pick].astype(np.float32) / 127.5 - 1.0
    n = SAMPLES_PER_FRAME
    clips = {key: self.codes[key][first * n:end * n] for key in TRACKS}
    track = lambda key, at: with_context(clips[key], (at - first) * n, self.window * n,
                                         self.audio_context)
    out.update({key: track(key, s) for key in TRACKS})
    if self.lead:
      valid = s - self.lead >= first
      at = s - self.lead if valid else first
      out["lead_previous"] = motion[self._before(at, first)]
      out["lead_valid"] = np.float32(valid)
      out.update({f"lead_{key}": track(key, at) for key in TRACKS})
    if self.style_frames:
      # Another stretch of the same clip (deterministic in the index): the person's manner,
      # not this window's content.
      rng = np.random.default_rng([self.seed, int(index)])
      length = min(self.style_frames, end - first)
      at = first + int(rng.integers(0, end - first - length + 1))
      idx = np.resize(np.arange(at, at + length), self.style_frames)
      out["style"] = motion[idx]
    return out
