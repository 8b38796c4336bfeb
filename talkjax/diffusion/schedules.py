"""Discrete noise schedules: alpha_bar(t) = prod_{s<=t} (1 - beta_s), t = 0..T-1."""

from __future__ import annotations

import numpy as np

from talkjax.errors import ConfigError


def alphas_cumprod(num_steps: int = 1000, kind: str = "cosine") -> np.ndarray:
  """float64 alpha_bar for `num_steps` steps.

  - "linear": betas from 1e-4 to 0.02 scaled to 1000 steps (DDPM).
  - "cosine": alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2), s = 0.008, betas clipped
    at 0.999 (improved DDPM).
  """
  if num_steps < 1:
    raise ConfigError(f"diffusion steps must be >= 1, got {num_steps}", fix="use e.g. 1000")
  if kind == "linear":
    scale = 1000 / num_steps
    betas = np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
  elif kind == "cosine":
    s = 0.008
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.clip(1 - f[1:] / f[:-1], 0, 0.999)
  else:
    raise ConfigError(f"unknown noise schedule {kind!r}", fix="use 'cosine' or 'linear'")
  return np.cumprod(1 - betas)
