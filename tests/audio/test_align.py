"""The pad/trim rule and the mapping of feature sequences onto video frames."""

import numpy as np
import pytest

from talkjax.audio import align


@pytest.mark.parametrize("fps,samples,frames", [(25, 16000, 25), (25, 16001, 26), (30, 16000, 30),
                                                (30, 1, 1), (25, 640, 1), (25, 641, 2)])
def test_frames_for_audio_counts_started_frames(fps, samples, frames):
  assert align.frames_for_audio(samples, fps) == frames


@pytest.mark.parametrize("fps", [25, 30])
def test_pad_or_trim(fps):
  x = np.arange(1, 10001, dtype=np.float32)
  padded = align.pad_or_trim(x, 20, fps)  # 20 frames need more than 10000 samples
  n = round(20 * 16000 / fps)
  assert padded.shape == (n,)
  np.testing.assert_array_equal(padded[:10000], x)
  assert np.all(padded[10000:] == 0)
  trimmed = align.pad_or_trim(x, 5, fps)
  np.testing.assert_array_equal(trimmed, x[:round(5 * 16000 / fps)])


def test_50hz_at_25fps_is_an_exact_reshape():
  f = np.random.default_rng(0).standard_normal((100, 7)).astype(np.float32)
  out = align.features_50hz_per_frame(f, 50, 25)
  assert out.shape == (50, 2, 7)
  np.testing.assert_array_equal(out.reshape(100, 7), f)


def test_50hz_at_30fps_interpolates_subframe_centres():
  # a linear ramp in time is reproduced exactly by linear interpolation
  f = (np.arange(200) + 0.5)[:, None] / 50.0  # feature value = its own centre time
  out = align.features_50hz_per_frame(f, 60, 30)
  expected = (np.arange(120) + 0.5) / 60.0
  # the first sub-frame centre (1/120 s) lies before the first feature centre: edge-clamped
  expected[0] = f[0, 0]
  np.testing.assert_allclose(out.reshape(120), expected, atol=1e-12)


def test_features_per_frame_clamps_past_the_end():
  f = np.arange(10, dtype=np.float64)[:, None]  # 10 features at 50 Hz = 0.2 s
  out = align.features_per_frame(f, 50.0, 10, 25)  # 10 frames = 0.4 s: edge-padded
  np.testing.assert_allclose(out[:5, 0], [0.5, 2.5, 4.5, 6.5, 8.5])
  assert np.all(out[5:, 0] == 9)


def test_context_windows_edge_clamped():
  x = np.arange(4)[:, None] * 10
  w = align.context_windows(x, radius=2)
  assert w.shape == (4, 5, 1)
  np.testing.assert_array_equal(w[..., 0], [[0, 0, 0, 10, 20], [0, 0, 10, 20, 30],
                                            [0, 10, 20, 30, 30], [10, 20, 30, 30, 30]])


@pytest.mark.parametrize("align_corners", [True, False])
def test_interpolate_linear_matches_torch(align_corners):
  import torch
  x = np.random.default_rng(1).standard_normal((13, 3))
  for size in (5, 13, 40):
    ref = torch.nn.functional.interpolate(torch.from_numpy(x.T[None]), size=size, mode="linear",
                                          align_corners=align_corners)[0].numpy().T
    np.testing.assert_allclose(align.interpolate_linear(x, size, align_corners=align_corners),
                               ref, atol=1e-12)
