"""FVD: the I3D against the TF-Hub module's published output, clip cutting, the resize,
the distance's behaviour under perturbations, and the bad-input errors.

An I3D forward pass at 224x224 x 16 frames costs ~100 GFLOP, so the whole file embeds only
8 clips of 16 frames (one sharded pass) and two of 15 frames.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkjax.errors import TalkjaxError
from talkjax.eval import fvd as fvd_lib

SIZE, FRAMES = 64, 32  # two 16-frame clips per video


def _video(seed: int) -> np.ndarray:
  """A smooth synthetic clip: a disc circling over a gradient and an opening-closing
  'mouth'."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
  phase, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.3)
  out = np.empty((FRAMES, SIZE, SIZE, 3))
  for t in range(FRAMES):
    cx, cy = 0.5 + 0.25 * np.cos(phase + speed * t), 0.5 + 0.25 * np.sin(phase + speed * t)
    disc = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)
    mouth = np.exp(-((xx - 0.5) ** 2 / 0.03 + (yy - 0.75) ** 2
                     / (0.05 + 0.04 * np.sin(0.9 * t + phase)) ** 2))
    out[t] = np.stack([0.3 + 0.6 * disc, 0.2 + 0.5 * xx + 0.3 * mouth,
                       0.6 - 0.4 * yy + 0.3 * disc * mouth], -1)
  return np.clip(out * 255, 0, 255).astype(np.uint8)


def _noisy(video, sigma, rng):
  return np.clip(np.round(video + rng.normal(0, sigma, video.shape)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def real():
  return [_video(0)]


@pytest.fixture(scope="module")
def scores(real):
  """FVD of the real set (one video, two clips) against itself and two perturbed copies:
  8 clips in all, one sharded pass."""
  rng = np.random.default_rng(7)
  return fvd_lib.fvd_scores(real, {"self": [real[0].copy()],
                                   "noisy": [_noisy(real[0], 8, rng)],
                                   "shuffled": [real[0][rng.permutation(FRAMES)]]})


def test_i3d_logits_match_the_tf_hub_module():
  # The reference FVD code's example videos (15 frames, 64x64, all 0 or all 255): a
  # published run of it through the TF-Hub I3D printed these logits for the black clip
  # (first and last three of 400). The example itself states an FVD "around 131" for 16
  # black against 16 white videos, which (identical videos per set, zero covariances) is
  # the squared distance of the two logit vectors; the I3D here gives 133.9.
  clips = np.stack([np.zeros((15, 64, 64, 3), np.uint8), np.full((15, 64, 64, 3), 255, np.uint8)])
  logits = np.asarray(jax.jit(fvd_lib.clip_logits)(fvd_lib.forward_params(64, 64), clips),
                      np.float64)
  tf_hub = [0.7422105, 2.829727, 0.39993525, -0.38092658, 0.65539014, -1.4021297]
  np.testing.assert_allclose(np.r_[logits[0, :3], logits[0, -3:]], tf_hub, atol=1e-4, rtol=0)
  assert abs(np.sum((logits[0] - logits[1]) ** 2) - 131) < 5


def test_fvd_of_a_set_against_itself_is_zero(scores):
  assert set(scores) == {"self", "noisy", "shuffled"}
  assert 0 <= scores["self"] < 1e-6


def test_fvd_is_large_against_perturbed_copies(scores):
  assert scores["noisy"] > 50, scores  # sigma-8 pixel noise
  assert scores["shuffled"] > 50, scores  # the same frames, their motion destroyed


def test_video_clips_cuts_consecutive_frames():
  video = np.broadcast_to(np.arange(40, dtype=np.uint8)[:, None, None, None],
                          (40, 4, 5, 3)).copy()
  clips = fvd_lib.video_clips(video)
  assert clips.shape == (2, 16, 4, 5, 3)
  np.testing.assert_array_equal(clips[:, :, 0, 0, 0], [np.arange(16), np.arange(16, 32)])
  overlapping = fvd_lib.video_clips(video, stride=8)
  assert overlapping.shape == (4, 16, 4, 5, 3)
  np.testing.assert_array_equal(overlapping[:, 0, 0, 0, 0], [0, 8, 16, 24])
  assert fvd_lib.video_clips(video[:16]).shape == (1, 16, 4, 5, 3)


def test_tf1_resize_matches_the_legacy_formula():
  rng = np.random.default_rng(3)
  img = rng.uniform(0, 255, (50, 70))
  ref = np.empty((224, 224))
  for i in range(224):  # TF1 resize_bilinear: source = destination * in / out, edge-clamped
    for j in range(224):
      y, x = i * 50 / 224, j * 70 / 224
      y0, x0 = int(np.floor(y)), int(np.floor(x))
      y1, x1 = min(y0 + 1, 49), min(x0 + 1, 69)
      dy, dx = y - y0, x - x0
      ref[i, j] = ((1 - dy) * ((1 - dx) * img[y0, x0] + dx * img[y0, x1])
                   + dy * ((1 - dx) * img[y1, x0] + dx * img[y1, x1]))
  out = fvd_lib.resize_matrix(50, 224) @ img @ fvd_lib.resize_matrix(70, 224).T
  np.testing.assert_allclose(out, ref, atol=1e-3, rtol=0)


def test_half_pixel_resize_matches_pytorch():
  rng = np.random.default_rng(4)
  img = rng.uniform(0, 255, (300, 180))  # downscale one axis, upscale the other
  ref = F.interpolate(torch.tensor(img)[None, None], size=(224, 224), mode="bilinear",
                      align_corners=False)[0, 0].numpy()
  out = (fvd_lib.resize_matrix(300, 224, "half_pixel") @ img
         @ fvd_lib.resize_matrix(180, 224, "half_pixel").T)
  np.testing.assert_allclose(out, ref, atol=1e-3, rtol=0)


def _one_line(info) -> str:
  text = str(info.value)
  assert "\n" not in text and "fix:" in text
  return text


def test_video_shorter_than_a_clip_is_refused(real):
  with pytest.raises(TalkjaxError, match=r"generated_videos\[1\] has 15 frames.*need 16") as e:
    fvd_lib.fvd(real * 2, [real[0], real[0][:15]])
  _one_line(e)


def test_fewer_than_two_clips_is_refused(real):
  with pytest.raises(TalkjaxError, match="real_videos gives 1 clip") as e:
    fvd_lib.fvd([real[0][:20]], real * 2)
  _one_line(e)


@pytest.mark.parametrize("bad, message", [
    (lambda v: [v.astype(np.float32)], "dtype float32"),
    (lambda v: [v[..., 0]], r"expected \(frames, height, width, 3\)"),
    (lambda v: v, "one array of shape"),
    (lambda v: [], "is empty"),
])
def test_bad_videos_raise_one_clear_error(real, bad, message):
  with pytest.raises(TalkjaxError, match=message) as e:
    fvd_lib.fvd(bad(real[0]), real * 2)
  _one_line(e)


def test_bad_clips_and_arguments_raise(real):
  with pytest.raises(TalkjaxError, match="dtype float64"):
    fvd_lib.clip_features(np.zeros((2, 16, 8, 8, 3)))
  with pytest.raises(TalkjaxError, match="expected \\(clips, frames, height, width, 3\\)"):
    fvd_lib.clip_features(np.zeros((16, 8, 8, 3), np.uint8))
  with pytest.raises(TalkjaxError, match="at least 9"):
    fvd_lib.clip_features(np.zeros((2, 8, 8, 8, 3), np.uint8))
  with pytest.raises(TalkjaxError, match="stride must be >= 1"):
    fvd_lib.video_clips(real[0], stride=0)
  with pytest.raises(TalkjaxError, match="unknown resize mode"):
    fvd_lib.resize_matrix(64, 224, "bicubic")
