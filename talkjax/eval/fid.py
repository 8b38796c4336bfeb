"""Frechet Inception Distance between two sets of frames, as pytorch-fid computes it.

Features are pool3 of pytorch-fid's FID InceptionV3 (`talkjax.eval.nets.inception`, same
weights file, same resize to 299x299 and scaling to [-1, 1]), extracted with
`talkjax.eval.extract.map_batches` (sharded over local devices; over several processes each
takes its share and the rows are gathered back in order). Each set is reduced to the mean
and the unbiased (N - 1) covariance of its features and compared with the float64 Frechet
distance of `talkjax.eval.frechet`, which avoids scipy's non-symmetric sqrtm (pytorch-fid's
route) and its complex round-off on near-singular covariances; on well-conditioned
statistics the two agree to round-off.

Reference statistics are stored as pytorch-fid stores them (`.npz` with `mu` (2048,) and
`sigma` (2048, 2048)), so ground-truth statistics are computed once, with either tool, and
reused: `save_statistics(path, *statistics(params, real_frames))`, then
`fid(path, generated_frames, params)`.

FID is biased by the sample count (with N < 2048 the covariance is rank-deficient): compare
scores only between runs that use the same number of frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from talkjax.errors import TalkjaxError
from talkjax.eval.checks import uint8_frames
from talkjax.eval import extract, frechet
from talkjax.eval.nets import inception

DEFAULT_BATCH = 50
Statistics = tuple[np.ndarray, np.ndarray]


def _check_frames(frames, what: str, minimum: int) -> np.ndarray:
  if isinstance(frames, (list, tuple)) and frames and all(
      isinstance(f, np.ndarray) for f in frames):
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
      raise TalkjaxError(f"{what}: frames of different sizes {sorted(shapes)[:3]}",
                         fix="resize all frames of a set to one size first")
  frames = uint8_frames(frames, what, "(N, H, W, 3)")
  if len(frames) < minimum:
    raise TalkjaxError(f"{what}: {len(frames)} frame(s); FID needs at least {minimum} per set "
                       "(and is only stable with thousands)", fix="pass more frames")
  return frames


def features(params, frames, batch_size: int = DEFAULT_BATCH,
             progress: str | None = None) -> np.ndarray:
  """(N, H, W, 3) uint8 RGB frames -> (N, 2048) float32 pool3 features."""
  frames = _check_frames(frames, "frames", 1)
  count = len(frames)
  if jax.process_count() == 1:
    return extract.map_batches(inception.pool3, params, frames, batch_size, progress)
  share = extract.host_share(count)
  if len(share):
    rows = extract.map_batches(inception.pool3, params, frames[share], batch_size, progress)
  else:
    rows = np.zeros((0, inception.FEATURE_DIM), np.float32)
  return extract.gather_rows(rows, count)


def statistics(params, frames, batch_size: int = DEFAULT_BATCH,
               progress: str | None = None) -> Statistics:
  """Mean (2048,) and covariance (2048, 2048), float64, of the frames' pool3 features."""
  frames = _check_frames(frames, "frames", 2)
  return frechet.statistics(features(params, frames, batch_size, progress))


def save_statistics(path: os.PathLike | str, mu, sigma) -> Path:
  """Write pytorch-fid's statistics file (`mu`, `sigma`, compressed .npz); returns its path
  (".npz" is appended when missing, as numpy and pytorch-fid expect it)."""
  mu, sigma = _check_statistics(np.asarray(mu), np.asarray(sigma), path)
  path = Path(path)
  if path.suffix != ".npz":
    path = path.with_name(path.name + ".npz")
  path.parent.mkdir(parents=True, exist_ok=True)
  partial = path.with_name(path.name + ".partial")
  with open(partial, "wb") as f:
    np.savez_compressed(f, mu=mu, sigma=sigma)
  os.replace(partial, path)
  return path


def _check_statistics(mu, sigma, path=None) -> Statistics:
  if mu.ndim != 1 or sigma.shape != mu.shape * 2:
    raise TalkjaxError(f"statistics must be mu (D,) and sigma (D, D), got {mu.shape} and "
                       f"{sigma.shape}", path=path,
                       fix="compute them with talkjax.eval.fid.statistics or pytorch-fid "
                           "--save-stats")
  if not (np.issubdtype(mu.dtype, np.floating) and np.issubdtype(sigma.dtype, np.floating)):
    raise TalkjaxError(f"statistics must be floating point, got {mu.dtype} and {sigma.dtype}",
                       path=path, fix="compute them with talkjax.eval.fid.statistics")
  if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
    raise TalkjaxError("statistics hold NaN or infinite values", path=path,
                       fix="recompute them from valid frames")
  return mu.astype(np.float64), sigma.astype(np.float64)


def load_statistics(path: os.PathLike | str) -> Statistics:
  """Read a pytorch-fid / talkjax statistics .npz -> (mu, sigma) float64."""
  path = Path(path)
  fix = ("write it with talkjax.eval.fid.save_statistics or "
         "`python -m pytorch_fid --save-stats FRAMES_DIR OUT.npz`")
  if not path.is_file():
    raise TalkjaxError("FID statistics file not found", path=path, fix=fix)
  try:
    data = np.load(path, allow_pickle=False)
  except Exception as e:  # numpy raises several types for a file that is not an array file
    raise TalkjaxError(f"cannot read FID statistics ({type(e).__name__}: {e})", path=path,
                       fix=fix) from e
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise TalkjaxError("not an .npz archive (a single .npy array?)", path=path, fix=fix)
  with data:
    if "mu" not in data.files or "sigma" not in data.files:
      raise TalkjaxError(f"the .npz needs arrays 'mu' and 'sigma', it has {data.files}",
                         path=path, fix=fix)
    try:
      mu, sigma = data["mu"], data["sigma"]
    except Exception as e:  # a damaged or object-array member
      raise TalkjaxError(f"cannot read mu/sigma ({type(e).__name__}: {e})", path=path,
                         fix=fix) from e
  return _check_statistics(mu, sigma, path)


def _side(value, what: str, params):
  """A statistics pair, or checked frames (their features are extracted once both sides
  have passed their checks)."""
  if isinstance(value, (str, os.PathLike)):
    return load_statistics(value)
  if (isinstance(value, tuple) and len(value) == 2
      and np.ndim(value[0]) == 1 and np.ndim(value[1]) == 2):
    return _check_statistics(np.asarray(value[0]), np.asarray(value[1]))
  frames = _check_frames(value, what, 2)
  if params is None:
    raise TalkjaxError(f"{what} are frames but no Inception weights were given",
                       fix="pass params=talkjax.eval.nets.inception.load_params(PATH)")
  return frames


def fid(real, generated, params=None, batch_size: int = DEFAULT_BATCH,
        progress: str | None = None) -> float:
  """FID between two sets. Each of `real` / `generated` is (N >= 2, H, W, 3) uint8 frames,
  a `(mu, sigma)` pair, or the path of a statistics .npz; `params` (from
  `inception.load_params`) is needed when either side is frames."""
  sides = [_side(real, "real frames", params), _side(generated, "generated frames", params)]
  dims = [inception.FEATURE_DIM if isinstance(s, np.ndarray) else len(s[0]) for s in sides]
  if dims[0] != dims[1]:
    raise TalkjaxError(f"real statistics are {dims[0]}-d but generated are {dims[1]}-d",
                       fix=f"compute both from the same layer (talkjax: pool3, "
                           f"{inception.FEATURE_DIM}-d; pytorch-fid: --dims 2048)")
  (mu1, s1), (mu2, s2) = [frechet.statistics(features(params, s, batch_size, progress))
                          if isinstance(s, np.ndarray) else s for s in sides]
  return frechet.frechet_distance(mu1, s1, mu2, s2)
