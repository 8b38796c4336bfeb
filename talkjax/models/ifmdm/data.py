"""IF-MDM's data (SynthTalk, a real-dataset build or a mixture: talkjax.data.prepare).
Stage 1: (source, driving) frame pairs from the clips. Stage 2:
every frame's motion code (read by the trained stage-1 encoder) and the clip's audio,
cached once per (stage-1 checkpoint, dataset, split), cut into windows.

What a window carries for speech (`model.audio.train_features`):
- "chunked" (default): the window's raw audio with the same left context and silence
  before the clip start that sampling gives a chunk; the training step computes the
  features with the function sampling uses (`SpeechFeatures.chunk`), so a window that
  starts where a sampling chunk starts sees exactly the numbers sampling will feed it.
- "whole_clip": features computed once over each whole clip (cheaper with wav2vec2, whose
  group norm and attention span the whole input; but they differ from the per-chunk
  features of sampling, most near chunk ends).

Cache: `<stage-1 workdir>/motion_codes/step<S>/<dataset config>/<split>_<tag>.npz` holding
per clip the motion codes (T, D) and the audio (T * 640) or features (T, 2F), concatenated,
with offsets. Delete it to recompute; a stage-1 checkpoint at another step gets its own
folder.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

from talkjax.errors import ConfigError, TalkjaxError


TRAIN_FEATURES = ("chunked", "whole_clip")
SAMPLES_PER_FRAME = 640   # 16 kHz at 25 fps


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


class FramePairs:
  """(source, driving) frame pairs from SynthTalk clips.

  Far pairs use the clip's first frame (the identity image, as at sampling time) as the
  source: they teach head pose. Near pairs take the source `gap` frames before the driving
  frame: over ~0.1 s the head barely moves while lips and eyelids do, so these pairs put
  the reconstruction error where the fast articulators are. `near` is their share.
  """

  def __init__(self, windows, near: float = 0.0):
    self.windows, self.near = windows, near

  def __len__(self):
    return len(self.windows)

  def __getitem__(self, index):
    ex = self.windows[index]
    # A fixed low-discrepancy pattern, so the share is exact and deterministic in index.
    is_near = (index * 0.6180339887) % 1.0 < self.near
    return {"source": ex["frames"][0] if is_near else ex["reference"], "driving": ex["frames"][-1]}

  def __repr__(self):
    return f"FramePairs({self.windows!r}, near={self.near}, len={len(self)})"


def frame_pairs(config, split: str):
  """Frame pairs from the config's data: SynthTalk, a real-dataset build or a mixture."""
  from talkjax.data.prepare import windows
  d = config.data
  return FramePairs(windows(d, split, window=d.near_gap + 1, seed=config.seed),
                    near=d.near_pairs)


def extract_clip_codes(stage1, clips, speech, batch: int = 64, *, raw_audio: bool = False):
  """{motion (sum T, D), features (sum T, 2F) or audio (sum T * 640), offsets (n + 1,)}
  over every clip."""
  import jax
  import jax.numpy as jnp
  from tqdm import tqdm
  from talkjax.data.frames import decode_frame

  model, params = stage1
  encode = jax.jit(lambda x: model.apply({"params": params}, x, method=model.encode_motion))
  features = None if raw_audio else speech.whole(speech.load())
  motion, feats, offsets = [], [], [0]
  for i in tqdm(range(len(clips)), desc=f"motion codes ({clips.split})", unit="clip",
                file=sys.stderr):
    n = clips.num_frames(i)
    codes, audio = [], []
    for s in range(0, n, batch):   # a clip is read `batch` frames at a time, whatever its length
      piece = clips.read(i, s, min(n, s + batch))
      frames = np.stack([decode_frame(b, clips.path) for b in piece["frames"]])
      frames = frames.astype(np.float32) / 127.5 - 1.0
      codes.append(np.asarray(encode(jnp.asarray(_pad(frames, batch))))[:len(frames)])
      audio.append(np.asarray(piece["audio"], np.float32))
    audio = np.concatenate(audio)
    audio = np.pad(audio, (0, max(0, n * SAMPLES_PER_FRAME - len(audio))))[:n * SAMPLES_PER_FRAME]
    feats.append(audio if raw_audio else np.asarray(features(jnp.asarray(audio[None])))[0])
    motion.append(np.concatenate(codes))
    offsets.append(offsets[-1] + n)
  return {"motion": np.concatenate(motion).astype(np.float32),
          "audio" if raw_audio else "features": np.concatenate(feats).astype(np.float32),
          "offsets": np.asarray(offsets, np.int64)}


def _pad(x, n):
  return np.concatenate([x, np.repeat(x[-1:], n - len(x), 0)]) if len(x) < n else x


def cached_codes(config, split: str) -> dict:
  """Motion codes and features of one split, from the cache or computed now; with a
  mixture, every dataset's clips one after the other (`sources`: clips per dataset)."""
  from talkjax.data.prepare import mixture
  parts = [_dataset_codes(config, path, split) for path, _ in mixture(config.data)]
  if len(parts) == 1:
    return parts[0]
  key = "audio" if "audio" in parts[0] else "features"
  offsets = [np.asarray([0], np.int64)]
  for part in parts:
    offsets.append(part["offsets"][1:] + offsets[-1][-1])
  return {"motion": np.concatenate([p["motion"] for p in parts]),
          key: np.concatenate([p[key] for p in parts]),
          "offsets": np.concatenate(offsets),
          "sources": np.asarray([len(p["offsets"]) - 1 for p in parts], np.int64)}


def _dataset_codes(config, dataset, split: str) -> dict:
  import jax
  from jax.experimental import multihost_utils
  from talkjax.data.prepare import open_clips
  from talkjax.models.ifmdm.audio import SpeechFeatures
  from talkjax.models.ifmdm.builders import build_autoencoder, generator_params, load_stage1

  stage1 = load_stage1(config)
  clips = open_clips(dataset, split)
  # SynthTalk's config folder spells its build; a real build is named by kind and config.
  name = (dataset.parent.name if not hasattr(clips, "identities")
          else f"{clips.meta['source']}_{dataset.parent.name}")
  path = (stage1.workdir / "motion_codes" / f"step{stage1.step}" / name
          / f"{split}_{feature_tag(config.model.audio)}.npz")
  if not path.exists() and jax.process_index() == 0:
    model = build_autoencoder(stage1.config.model)
    codes = extract_clip_codes((model, generator_params(stage1)), clips,
                               SpeechFeatures(config.model.audio),
                               raw_audio=chunked(config.model.audio))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **codes)
    tmp.replace(path)  # atomic: an interrupted write never looks like a finished cache
  if jax.process_count() > 1:  # process 0 computes, the others read its file
    multihost_utils.sync_global_devices(f"motion codes ready: {path}")
  with np.load(path) as f:
    return dict(f)


def motion_stats(codes: dict, window: int) -> dict:
  """Per-dimension mean and std over all frames, and the median per-window std (float32)."""
  motion, offsets = codes["motion"], codes["offsets"]
  stds = []
  for a, b in zip(offsets[:-1], offsets[1:]):
    for s in range(a, b - window + 1, max(1, window // 4)):
      stds.append(motion[s:s + window].std(0))
  if not stds:
    raise TalkjaxError(f"no clip is as long as the window ({window} frames)",
                       fix="build longer clips (data.synthtalk.seconds) or shorten model.window")
  return {"mean": motion.mean(0).astype(np.float32),
          "std": (motion.std(0) + 1e-6).astype(np.float32),
          "window_std": np.median(np.stack(stds), 0).astype(np.float32)}


class MotionWindows:
  """Windows of `window` frames: motion (W, D), hint/mean/std (D,), and "audio": the
  window's samples with `audio_context` samples before it (context + W * 640,), silence
  before the clip start, when the codes hold raw audio; else its features (W, 2F)."""

  def __init__(self, codes: dict, window: int, stride: int = 1, name: str = "",
               audio_context: int = 0):
    self.codes, self.window, self.name = codes, window, name
    self.audio_context = int(audio_context)
    offsets = codes["offsets"]
    self.starts = np.asarray([s for a, b in zip(offsets[:-1], offsets[1:])
                              for s in range(a, b - window + 1, stride)], np.int64)
    self.clip_start = np.repeat(offsets[:-1], np.diff(offsets))
    self.clip_end = np.repeat(offsets[1:], np.diff(offsets))
    if not len(self.starts):
      raise TalkjaxError(f"no clip is as long as the window ({window} frames)",
                         fix="build longer clips or shorten model.window")

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
