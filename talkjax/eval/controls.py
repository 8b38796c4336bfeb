"""Control videos: what a metric must reject, made from a SynthTalk clip's ground truth.

A quality metric is only as good as what it fails. Each control differs from ground truth
in exactly one way:
- `still`: the first frame, repeated (no motion at all);
- `lagged`: ground truth shown `frames` late (the mouth trails the sound);
- `half_mouth`: the clip re-rendered with the jaw opening halved (everything else equal);
- `other_identity`: the clip's exact motion rendered on a different person.
The re-rendered controls regenerate the clip's face state from its build settings and index
(SynthTalk clips are deterministic in (seed, index)), so they need the dataset's metadata.
"""

from __future__ import annotations

import numpy as np

from talkjax_datasets.synthtalk.clip import clip_state
from talkjax_datasets.synthtalk.identity import draw_identity
from talkjax_datasets.synthtalk.render import render_frames
from talkjax_datasets.synthtalk.spec import BuildSpec

CONTROLS = ("still", "lagged", "half_mouth", "other_identity")
OTHER_IDENTITY_SEED = 999_983   # people drawn from a seed no build uses by default


def spec_from_metadata(meta: dict) -> BuildSpec:
  fields = BuildSpec.__dataclass_fields__
  return BuildSpec(**{k: meta[k] for k in fields if k in meta})


def still(frames: np.ndarray) -> np.ndarray:
  return np.repeat(frames[:1], len(frames), axis=0)


def lagged(frames: np.ndarray, frames_late: int = 2) -> np.ndarray:
  """Frame t shows ground truth's frame t - frames_late (the first frame holds at the start)."""
  idx = np.clip(np.arange(len(frames)) - frames_late, 0, None)
  return frames[idx]


def half_mouth(spec: BuildSpec, index: int, scale: float = 0.5) -> np.ndarray:
  ident, state, _ = clip_state(spec, index)
  state = dict(state, mouth_open=(state["mouth_open"] * scale).astype(np.float32))
  return render_frames(ident, state, spec.resolution)


def other_identity(spec: BuildSpec, index: int) -> np.ndarray:
  _, state, example = clip_state(spec, index)
  ident = draw_identity(OTHER_IDENTITY_SEED + spec.seed, int(example["identity"]))
  return render_frames(ident, state, spec.resolution)


def control_video(name: str, frames: np.ndarray, spec: BuildSpec, index: int) -> np.ndarray:
  if name == "still":
    return still(frames)
  if name == "lagged":
    return lagged(frames)
  if name == "half_mouth":
    return half_mouth(spec, index)
  if name == "other_identity":
    return other_identity(spec, index)
  raise ValueError(f"unknown control {name!r}; one of {CONTROLS}")
