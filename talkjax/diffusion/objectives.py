"""Training targets and the conversions between prediction types.

Discrete diffusion: x_t = sqrt(a) x0 + sqrt(1 - a) eps with a = alpha_bar(t);
  eps-prediction, x0-prediction, or v = sqrt(a) eps - sqrt(1 - a) x0.
Rectified flow (MEMO): x_t = sigma eps + (1 - sigma) x0 with sigma ~ logit-normal;
  the model predicts the velocity v = eps - x0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from talkjax.errors import ConfigError

PREDICTIONS = ("eps", "x0", "v")


def _bcast(a, x):
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def q_sample(x0, eps, alpha_bar_t):
  a = _bcast(alpha_bar_t, x0)
  return jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * eps


def target(prediction: str, x0, eps, alpha_bar_t):
  if prediction == "eps":
    return eps
  if prediction == "x0":
    return x0
  if prediction == "v":
    a = _bcast(alpha_bar_t, x0)
    return jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0
  raise ConfigError(f"unknown diffusion prediction {prediction!r}", fix=f"use one of {PREDICTIONS}")


def to_x0_eps(prediction: str, output, x_t, alpha_bar_t):
  """(x0, eps) implied by a model output of the given prediction type at x_t."""
  a = _bcast(alpha_bar_t, x_t)
  sa, s1a = jnp.sqrt(a), jnp.sqrt(1 - a)
  if prediction == "eps":
    x0 = (x_t - s1a * output) / sa
    return x0, output
  if prediction == "x0":
    return output, (x_t - sa * output) / s1a
  if prediction == "v":
    x0 = sa * x_t - s1a * output
    return x0, s1a * x_t + sa * output
  raise ConfigError(f"unknown diffusion prediction {prediction!r}", fix=f"use one of {PREDICTIONS}")


def flow_sample(x0, eps, sigma):
  s = _bcast(sigma, x0)
  return s * eps + (1 - s) * x0


def flow_target(x0, eps):
  return eps - x0


def logit_normal(rng, shape, mean: float = 0.0, std: float = 1.0):
  return jax.nn.sigmoid(mean + std * jax.random.normal(rng, shape))


def velocity_error(prediction: str, out, x_t, a_t, x0):
  """Per-example mean squared error of the frame-to-frame change (axis 1) of the predicted
  clean sequence against the data's: a smoothness term for motion sequences (B, T, D)."""
  x0_hat, _ = to_x0_eps(prediction, out, x_t, a_t)
  return jnp.mean((jnp.diff(x0_hat, axis=1) - jnp.diff(x0, axis=1)) ** 2, axis=(1, 2))
