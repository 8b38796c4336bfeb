"""The learned-variance bound (improved DDPM's L_vlb) against a float64 NumPy derivation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkjax.diffusion import learned_variance as lv
from talkjax.diffusion import schedules


def _posterior_by_bayes(x0, x_t, t, abar):
  """q(x_{t-1} | x_t, x0) from q(x_t | x_{t-1}) q(x_{t-1} | x0), by completing the square."""
  prev = abar[t - 1] if t > 0 else 1.0
  beta = 1 - abar[t] / prev
  precision = 1 / (1 - prev) + (1 - beta) / beta
  var = 1 / precision
  mean = var * (np.sqrt(prev) * x0 / (1 - prev) + np.sqrt(1 - beta) * x_t / beta)
  return mean, var, beta


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_vlb_term_equals_the_gaussian_kl_computed_in_float64(kind):
  abar = schedules.alphas_cumprod(1000, kind)
  rng = np.random.default_rng(0)
  t = np.array([1, 17, 500, 999])
  x0 = rng.standard_normal((4, 6, 3))
  eps = rng.standard_normal((4, 6, 3))
  x_t = np.sqrt(abar[t])[:, None, None] * x0 + np.sqrt(1 - abar[t])[:, None, None] * eps
  eps_hat = eps + 0.3 * rng.standard_normal(eps.shape)        # an imperfect eps prediction
  frac = rng.uniform(-1, 1, x0.shape)
  vlb = jax.jit(lambda *args: lv.vlb_term("eps", *args, abar))
  got = vlb(jnp.asarray(eps_hat, jnp.float32), jnp.asarray(frac, jnp.float32),
            jnp.asarray(x0, jnp.float32), jnp.asarray(x_t, jnp.float32), jnp.asarray(t))
  want = []
  for i, ti in enumerate(t):
    x0_hat = (x_t[i] - np.sqrt(1 - abar[ti]) * eps_hat[i]) / np.sqrt(abar[ti])
    m_true, v_true, beta = _posterior_by_bayes(x0[i], x_t[i], ti, abar)
    m_model, _, _ = _posterior_by_bayes(x0_hat, x_t[i], ti, abar)
    f = (frac[i] + 1) / 2
    v_model = np.exp(f * np.log(beta) + (1 - f) * np.log(v_true))
    kl = 0.5 * (np.log(v_model / v_true) + (v_true + (m_true - m_model) ** 2) / v_model - 1)
    want.append(kl.mean())
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-3)


def test_the_bound_trains_the_variance_only_and_is_smallest_at_the_true_variance():
  abar = schedules.alphas_cumprod(1000, "linear")
  rng = np.random.default_rng(1)
  x0 = jnp.asarray(rng.standard_normal((2, 5, 4)), jnp.float32)
  eps = jnp.asarray(rng.standard_normal((2, 5, 4)), jnp.float32)
  t = jnp.array([300, 700])

  @jax.jit
  def noised(x0, eps, t):
    return jnp.sqrt(jnp.asarray(abar, jnp.float32)[t])[:, None, None] * x0 + \
        jnp.sqrt(1 - jnp.asarray(abar, jnp.float32)[t])[:, None, None] * eps

  x_t = noised(x0, eps, t)
  loss = jax.jit(lambda main, var: lv.vlb_term("eps", main, var, x0, x_t, t, abar).sum())
  g_main, g_var = jax.jit(jax.grad(loss, argnums=(0, 1)))(eps + 0.1, jnp.zeros_like(eps))
  np.testing.assert_array_equal(g_main, 0.0)       # stop_gradient on the mean
  assert float(np.abs(np.asarray(g_var)).max()) > 0
  # With the exact eps the model's mean is the posterior's; the bound is then 0 at f = 0
  # (the posterior variance) and grows towards f = 1 (beta_t).
  at = lambda f: float(loss(eps, jnp.full_like(eps, f)))
  assert abs(at(-1.0)) < 1e-4 and at(-1.0) < at(0.0) < at(1.0)


def test_t_zero_is_the_decoder_likelihood():
  abar = schedules.alphas_cumprod(1000, "linear")
  x0 = jnp.ones((1, 2, 2))
  got = jax.jit(lambda x0: lv.vlb_term("x0", x0 + 0.01, jnp.zeros_like(x0), x0, x0,
                                         jnp.array([0]), abar))(x0)
  var = np.exp(0.5 * np.log(1 - abar[0]) + 0.5 * lv.posterior_log_variance(abar)[0])
  mean = jax.jit(lambda x0: lv.posterior_mean(x0 + 0.01, x0, jnp.array([0]), abar))(x0)
  want = 0.5 * (np.log(2 * np.pi * var) + (1 - np.asarray(mean)) ** 2 / var)
  np.testing.assert_allclose(np.asarray(got), want.mean(), rtol=1e-4)
