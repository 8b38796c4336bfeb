"""MEMO's motion-weighted latent loss against a float64 NumPy transcription."""

from __future__ import annotations

import numpy as np

from talkjax.models.memo.tasks import weighted_mse


def _reference(x0_hat, x0, video, reference, motion_weight):
  x0_hat, x0, video, reference = (np.asarray(a, np.float64)
                                  for a in (x0_hat, x0, video, reference))
  b, f, h, w, c = x0.shape
  k = video.shape[2] // h
  out = np.zeros(b)
  for i in range(b):
    total = 0.0
    for t in range(f):
      for y in range(h):
        for x in range(w):
          patch = video[i, t, y * k:(y + 1) * k, x * k:(x + 1) * k]
          portrait = reference[i, y * k:(y + 1) * k, x * k:(x + 1) * k]
          weight = 1.0 + motion_weight * np.abs(patch - portrait).mean()
          total += weight * ((x0_hat[i, t, y, x] - x0[i, t, y, x]) ** 2).sum()
    out[i] = total / (f * h * w * c)
  return out


def test_pixels_that_differ_from_the_portrait_weigh_more():
  rng = np.random.default_rng(0)
  video = rng.uniform(-1, 1, (2, 3, 8, 8, 3)).astype(np.float32)
  reference = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
  x0 = rng.normal(size=(2, 3, 2, 2, 4)).astype(np.float32)
  x0_hat = rng.normal(size=x0.shape).astype(np.float32)
  for weight in (0.0, 20.0):
    got = np.asarray(weighted_mse(x0_hat, x0, video, reference, weight))
    np.testing.assert_allclose(got, _reference(x0_hat, x0, video, reference, weight),
                               rtol=1e-5)
  # the same error where a frame moved costs more than where it equals the portrait
  still = np.repeat(reference[:, None], 3, axis=1)
  moved = still.copy()
  moved[:, :, :4, :4] += 0.5                       # the top-left latent pixel moved
  x0_hat = x0.copy()
  x0_hat[:, :, 0, 0] += 1.0
  at_moved = np.asarray(weighted_mse(x0_hat, x0, moved, reference, 20.0))
  at_still = np.asarray(weighted_mse(x0_hat, x0, still, reference, 20.0))
  np.testing.assert_allclose(at_moved, 11.0 * at_still, rtol=1e-5)   # 1 + 20 x 0.5
