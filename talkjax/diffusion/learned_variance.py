"""Learned reverse-process variance (improved DDPM, Nichol & Dhariwal 2021; used by DiT and
by IF-MDM's stage 2).

The network outputs, next to its eps (or x0 / v) prediction, one value per element that
interpolates the reverse step's log variance between the two analytic bounds:
  log sigma^2_t = f log beta_t + (1 - f) log beta~_t,   f = (out + 1) / 2,
with beta~_t = beta_t (1 - a_{t-1}) / (1 - a_t) the posterior q(x_{t-1} | x_t, x0)'s
variance. It is trained by the variational bound's term at t,
  L_vlb(t) = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))        (t > 0)
           = -log N(x0; mean_theta, sigma^2_0)                     (t = 0, continuous data)
with the mean taken from the main prediction under stop_gradient: the simple MSE trains
the mean, the bound only the variance (the "hybrid" objective L_simple + lambda L_vlb,
lambda = 0.001). Values are nats per element, averaged.

Deterministic DDIM ignores the variance; it matters to ancestral (DDPM) sampling and to
likelihoods.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from talkjax.diffusion.objectives import _bcast, to_x0_eps


def betas_from(alphas_cumprod: np.ndarray) -> np.ndarray:
  a = np.asarray(alphas_cumprod, np.float64)
  return 1 - a / np.append(1.0, a[:-1])


def posterior_log_variance(alphas_cumprod: np.ndarray) -> np.ndarray:
  """log beta~_t (float64); beta~_0 = 0, so t = 0 takes beta~_1 (as improved DDPM does)."""
  a = np.asarray(alphas_cumprod, np.float64)
  prev = np.append(1.0, a[:-1])
  var = betas_from(a) * (1 - prev) / (1 - a)
  return np.log(np.append(var[1], var[1:]) if len(var) > 1 else betas_from(a))


def posterior_mean(x0, x_t, t, alphas_cumprod):
  """Mean of q(x_{t-1} | x_t, x0)."""
  a = np.asarray(alphas_cumprod, np.float64)
  prev = np.append(1.0, a[:-1])
  beta = betas_from(a)
  c0 = jnp.asarray(beta * np.sqrt(prev) / (1 - a), jnp.float32)[t]
  ct = jnp.asarray((1 - prev) * np.sqrt(1 - beta) / (1 - a), jnp.float32)[t]
  return _bcast(c0, x0) * x0 + _bcast(ct, x_t) * x_t


def model_log_variance(frac_out, t, alphas_cumprod):
  """log sigma^2 from the network's variance output in [-1, 1] (any real is clipped)."""
  lo = jnp.asarray(posterior_log_variance(alphas_cumprod), jnp.float32)[t]
  hi = jnp.asarray(np.log(betas_from(alphas_cumprod)), jnp.float32)[t]
  f = (jnp.clip(frac_out, -1, 1) + 1) / 2
  return f * _bcast(hi, frac_out) + (1 - f) * _bcast(lo, frac_out)


def normal_kl(mean1, logvar1, mean2, logvar2):
  """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, nats."""
  return 0.5 * (logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
                + (mean1 - mean2) ** 2 * jnp.exp(-logvar2) - 1.0)


def gaussian_nll(x, mean, logvar):
  return 0.5 * (np.log(2 * np.pi) + logvar + (x - mean) ** 2 * jnp.exp(-logvar))


def vlb_term(prediction: str, main_out, var_out, x0, x_t, t, alphas_cumprod):
  """Per-example L_vlb(t) (B,), nats per element; gradients reach `var_out` only."""
  import jax
  a_t = jnp.asarray(alphas_cumprod, jnp.float32)[t]
  x0_hat, _ = to_x0_eps(prediction, jax.lax.stop_gradient(main_out), x_t, a_t)
  mean_model = posterior_mean(x0_hat, x_t, t, alphas_cumprod)
  mean_true = posterior_mean(x0, x_t, t, alphas_cumprod)
  logvar = model_log_variance(var_out, t, alphas_cumprod)
  logvar_true = _bcast(jnp.asarray(posterior_log_variance(alphas_cumprod), jnp.float32)[t], x0)
  kl = normal_kl(mean_true, logvar_true, mean_model, logvar)
  nll = gaussian_nll(x0, mean_model, logvar)
  per_element = jnp.where(_bcast(t == 0, x0), nll, kl)
  return jnp.mean(per_element, axis=tuple(range(1, x0.ndim)))
