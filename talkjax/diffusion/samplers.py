"""Few-step samplers written as one lax.scan, so a whole sampling run is one XLA program.

`model(x_t, t)` is called with t as an int32 vector (discrete) or a float sigma vector
(flow). Both samplers are deterministic given the initial noise.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.diffusion.objectives import to_x0_eps


def ddim_timesteps(train_steps: int, sample_steps: int) -> np.ndarray:
  """Evenly spaced training timesteps, descending, always starting at T-1."""
  return np.linspace(train_steps - 1, 0, sample_steps).round().astype(np.int32)


def ddim_sample(model: Callable, x_T, alphas_cumprod: np.ndarray, sample_steps: int,
                prediction: str = "v"):
  """Deterministic DDIM (eta = 0): x_{t'} = sqrt(a') x0 + sqrt(1 - a') eps."""
  ts = ddim_timesteps(len(alphas_cumprod), sample_steps)
  a = jnp.asarray(alphas_cumprod, jnp.float32)
  nxt = np.append(ts[1:], -1)
  batch = x_T.shape[0]

  def step(x, t_pair):
    t, t_next = t_pair
    a_t = jnp.full((batch,), a[t])
    x0, eps = to_x0_eps(prediction, model(x, jnp.full((batch,), t, jnp.int32)), x, a_t)
    a_next = jnp.where(t_next >= 0, a[jnp.maximum(t_next, 0)], 1.0)
    return jnp.sqrt(a_next) * x0 + jnp.sqrt(1 - a_next) * eps, None

  x, _ = jax.lax.scan(step, x_T, (jnp.asarray(ts), jnp.asarray(nxt)))
  return x


def flow_match_sigmas(sample_steps: int, train_steps: int = 1000) -> np.ndarray:
  """The noise levels of diffusers' FlowMatchEulerDiscreteScheduler (shift 1, the MEMO
  release's sampler): `sample_steps` levels evenly from 1 to 1 / train_steps, then 0."""
  return np.append(np.linspace(1.0, 1.0 / train_steps, sample_steps), 0.0)


def flow_euler_sample(model: Callable, noise, sample_steps: int, shift: float = 1.0,
                      sigmas: np.ndarray | None = None):
  """Euler integration of dx/dsigma = v from sigma = 1 (noise) to 0 (data).

  `shift` > 1 spends more steps at high noise (sigma' = shift s / (1 + (shift - 1) s));
  `sigmas` (sample_steps + 1 levels, descending to 0) replaces the even schedule.
  """
  s = np.linspace(1.0, 0.0, sample_steps + 1) if sigmas is None else np.asarray(sigmas)
  s = shift * s / (1 + (shift - 1) * s)
  batch = noise.shape[0]

  def step(x, pair):
    s_now, s_next = pair
    v = model(x, jnp.full((batch,), s_now, jnp.float32))
    return x + (s_next - s_now) * v, None

  x, _ = jax.lax.scan(step, noise, (jnp.asarray(s[:-1], jnp.float32), jnp.asarray(s[1:], jnp.float32)))
  return x
