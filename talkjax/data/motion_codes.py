"""Every frame's motion code, read once by a trained stage-1 encoder and cached, for the
motion-latent families' stage 2 (IF-MDM, INFP): the codes, the clips' audio tracks (raw
16 kHz samples, or features computed over whole clips) and each clip's offset.

Generic: the family hands over its encoder (`encode(frames in [-1, 1]) -> codes`) and where
the cache lives; nothing here knows a model.
"""

from __future__ import annotations

import sys

import numpy as np

from talkjax.errors import TalkjaxError

SAMPLES_PER_FRAME = 640   # 16 kHz at 25 fps


def extract_clip_codes(encode, clips, *, tracks=("audio",), features=None, batch: int = 64):
  """{motion (sum T, D), each track (sum T * 640) — or "features" (sum T, 2F) when
  `features` (whole-clip audio -> per-frame features) is given —, offsets (n + 1,)}."""
  from tqdm import tqdm
  from talkjax.data.frames import decode_frame

  motion, audio, offsets = [], {k: [] for k in tracks}, [0]
  for i in tqdm(range(len(clips)), desc=f"motion codes ({clips.split})", unit="clip",
                file=sys.stderr):
    n = clips.num_frames(i)
    codes, pieces = [], {k: [] for k in tracks}
    for s in range(0, n, batch):   # a clip is read `batch` frames at a time, whatever its length
      piece = clips.read(i, s, min(n, s + batch))
      frames = np.stack([decode_frame(b, clips.path) for b in piece["frames"]])
      frames = frames.astype(np.float32) / 127.5 - 1.0
      codes.append(np.asarray(encode(_pad(frames, batch)))[:len(frames)])
      for k in tracks:
        if k not in piece:
          raise TalkjaxError(f"the clips have no {k!r} track", path=clips.path,
                             fix="train this stage on a dataset that has it (a dyadic build)")
        pieces[k].append(np.asarray(piece[k], np.float32))
    for k in tracks:
      samples = np.concatenate(pieces[k])
      samples = np.pad(samples, (0, max(0, n * SAMPLES_PER_FRAME - len(samples))))
      audio[k].append(samples[:n * SAMPLES_PER_FRAME])
    motion.append(np.concatenate(codes))
    offsets.append(offsets[-1] + n)
  out = {"motion": np.concatenate(motion).astype(np.float32),
         "offsets": np.asarray(offsets, np.int64)}
  if features is not None:
    out["features"] = np.concatenate([features(a) for a in audio["audio"]]).astype(np.float32)
  else:
    out.update({k: np.concatenate(v).astype(np.float32) for k, v in audio.items()})
  return out


def extract_clip_frames(clips, *, frames: int, prepare, seed: int = 0) -> dict:
  """{"portraits": (n, frames, ...) uint8}: each clip's first frame and `frames - 1` others
  drawn at random (fixed by `seed`), each through `prepare` (a batch of float frames in
  [-1, 1] -> the same in the size the model reads)."""
  from tqdm import tqdm
  from talkjax.data.frames import decode_frame

  out = []
  for i in tqdm(range(len(clips)), desc=f"portrait frames ({clips.split})", unit="clip",
                file=sys.stderr):
    n = clips.num_frames(i)
    rng = np.random.default_rng([seed, i])
    picks = [0] + sorted(rng.choice(np.arange(1, n), min(frames, n) - 1, replace=False).tolist())
    picks = np.resize(picks, frames)   # a clip shorter than `frames` repeats its frames
    images = np.stack([decode_frame(clips.read(i, int(k), int(k) + 1)["frames"][0], clips.path)
                       for k in picks])
    images = np.asarray(prepare(images.astype(np.float32) / 127.5 - 1.0))
    out.append(np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8))
  return {"portraits": np.stack(out)}


def _pad(x, n):
  return np.concatenate([x, np.repeat(x[-1:], n - len(x), 0)]) if len(x) < n else x


def cached(path, compute) -> dict:
  """The arrays saved at `path` (.npz), computed by `compute()` first when missing. In a
  multi-host run process 0 computes and the others wait for its file."""
  import jax
  from jax.experimental import multihost_utils
  if not path.exists() and jax.process_index() == 0:
    codes = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **codes)
    tmp.replace(path)  # atomic: an interrupted write never looks like a finished cache
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"motion codes ready: {path}")
  with np.load(path) as f:
    return dict(f)


def concatenate(parts: list[dict]) -> dict:
  """Several datasets' codes one after the other (`sources`: clips per dataset)."""
  if len(parts) == 1:
    return parts[0]
  offsets = [np.asarray([0], np.int64)]
  for part in parts:
    offsets.append(part["offsets"][1:] + offsets[-1][-1])
  keys = [k for k in parts[0] if k not in ("offsets", "sources")]
  out = {k: np.concatenate([p[k] for p in parts]) for k in keys}
  out["offsets"] = np.concatenate(offsets)
  out["sources"] = np.asarray([len(p["offsets"]) - 1 for p in parts], np.int64)
  return out


def dataset_name(dataset, clips) -> str:
  """The cache folder's name for a dataset: SynthTalk's config folder spells its build; a
  real build is named by kind and config."""
  return (dataset.parent.name if not hasattr(clips, "identities")
          else f"{clips.meta['source']}_{dataset.parent.name}")


def identity_stats(motion_dim: int) -> dict:
  """Motion statistics before any data is seen: no normalisation."""
  zeros, ones = np.zeros((motion_dim,), np.float32), np.ones((motion_dim,), np.float32)
  return {"mean": zeros, "std": ones, "window_std": ones}


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


def window_starts(offsets, window: int, stride: int) -> np.ndarray:
  starts = np.asarray([s for a, b in zip(offsets[:-1], offsets[1:])
                       for s in range(a, b - window + 1, stride)], np.int64)
  if not len(starts):
    raise TalkjaxError(f"no clip is as long as the window ({window} frames)",
                       fix="build longer clips or shorten model.window")
  return starts
