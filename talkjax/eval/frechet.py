"""Frechet distance between two Gaussians fitted to features (FID, FVD), in float64.

d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2).
The trace of the matrix square root is computed without a general (non-symmetric) sqrtm:
(S1 S2)^1/2 is similar to (A S2 A) with A = S1^1/2, which is symmetric positive
semi-definite, so tr((S1 S2)^1/2) = sum sqrt(eig(A S2 A)). Two symmetric eigendecompositions
in float64 are stable where `scipy.linalg.sqrtm` can return complex noise for near-singular
covariances (few samples, many feature dimensions).
"""

from __future__ import annotations

import numpy as np


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean and (unbiased, N - 1) covariance of (N, D) features, float64."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"need (N >= 2, D) features, got shape {x.shape}")
  return x.mean(0), np.cov(x, rowvar=False)


def _psd_sqrt(s):
  w, v = np.linalg.eigh((s + s.T) / 2)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
    raise ValueError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, "
                     f"sigma {s1.shape} vs {s2.shape}")
  root = _psd_sqrt(s1)
  inner = np.linalg.eigvalsh(root @ s2 @ root)
  tr_covmean = np.sqrt(np.clip(inner, 0, None)).sum()
  diff = mu1 - mu2
  d2 = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
  return float(max(d2, 0.0))  # rounding can leave -1e-14 for a set against itself


def frechet_from_features(a, b) -> float:
  return frechet_distance(*statistics(a), *statistics(b))
