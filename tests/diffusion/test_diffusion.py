"""Diffusion math against float64 numpy references and exact oracle denoisers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkjax.diffusion import guidance, objectives, samplers, schedules
from talkjax.errors import ConfigError


def test_cosine_schedule_matches_its_formula():
  a = schedules.alphas_cumprod(1000, "cosine")
  s, T = 0.008, 1000
  f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2
  t = np.arange(1, 900)  # away from the clipped tail
  np.testing.assert_allclose(a[t - 1], f(t) / f(0), rtol=1e-10)
  assert np.all(np.diff(a) < 0) and 0 < a[-1] < 1e-3


def test_linear_schedule_endpoints():
  a = schedules.alphas_cumprod(1000, "linear")
  betas = 1 - a / np.concatenate([[1.0], a[:-1]])
  np.testing.assert_allclose(betas[[0, -1]], [1e-4, 0.02], rtol=1e-9)
  with pytest.raises(ConfigError):
    schedules.alphas_cumprod(10, "quadratic")


@pytest.mark.parametrize("prediction", objectives.PREDICTIONS)
def test_predictions_convert_back_to_x0_and_eps(prediction):
  rng = np.random.default_rng(0)
  x0, eps = rng.standard_normal((2, 4, 3, 5))
  a = rng.uniform(0.05, 0.95, 4)
  # float64 reference for x_t and the target
  x_t = np.sqrt(a)[:, None, None] * x0 + np.sqrt(1 - a)[:, None, None] * eps
  np.testing.assert_allclose(objectives.q_sample(x0, eps, a), x_t, rtol=1e-5, atol=1e-6)
  out = objectives.target(prediction, x0, eps, a)
  x0_hat, eps_hat = objectives.to_x0_eps(prediction, out, x_t, a)
  np.testing.assert_allclose(x0_hat, x0, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(eps_hat, eps, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("prediction", objectives.PREDICTIONS)
@pytest.mark.parametrize("steps", [1, 4, 25])
def test_ddim_with_an_oracle_denoiser_lands_on_the_data(prediction, steps):
  # Data is a single point, so the exact denoiser is known in closed form.
  x_star = jnp.asarray(np.random.default_rng(1).standard_normal((2, 6)), jnp.float32)
  a_all = schedules.alphas_cumprod(1000, "cosine")

  def oracle(x_t, t):
    a = jnp.asarray(a_all, jnp.float32)[t]
    eps = (x_t - jnp.sqrt(a)[:, None] * x_star) / jnp.sqrt(1 - a)[:, None]
    return objectives.target(prediction, x_star, eps, a)

  noise = jax.random.normal(jax.random.PRNGKey(0), x_star.shape)
  out = jax.jit(lambda n: samplers.ddim_sample(oracle, n, a_all, steps, prediction))(noise)
  np.testing.assert_allclose(out, x_star, atol=2e-3)


def test_ddim_single_step_matches_numpy():
  a_all = schedules.alphas_cumprod(100, "linear")
  ts = samplers.ddim_timesteps(100, 2)
  assert list(ts) == [99, 0]
  x = np.random.default_rng(2).standard_normal((1, 3))
  eps_model = lambda x_t, t: 0.5 * x_t  # any fixed function
  out = samplers.ddim_sample(eps_model, jnp.asarray(x, jnp.float32), a_all, 2, "eps")
  # float64 reference of the two DDIM updates
  for t, t_next in [(99, 0), (0, None)]:
    e = 0.5 * x
    x0 = (x - np.sqrt(1 - a_all[t]) * e) / np.sqrt(a_all[t])
    a_n = 1.0 if t_next is None else a_all[t_next]
    x = np.sqrt(a_n) * x0 + np.sqrt(1 - a_n) * e
  np.testing.assert_allclose(out, x, rtol=1e-4)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_euler_is_exact_on_straight_paths(shift):
  x_star = jnp.arange(6.0).reshape(2, 3)
  oracle = lambda x_t, s: (x_t - x_star) / s[:, None]   # v = eps - x0 on a straight path
  noise = jax.random.normal(jax.random.PRNGKey(3), x_star.shape)
  out = samplers.flow_euler_sample(oracle, noise, 7, shift)
  np.testing.assert_allclose(out, x_star, atol=1e-5)
  s = objectives.logit_normal(jax.random.PRNGKey(0), (10000,))
  assert 0 < float(s.min()) and float(s.max()) < 1 and abs(float(s.mean()) - 0.5) < 0.02


def test_classifier_free_guidance():
  model = lambda x, t, c: x * c["audio"].sum(-1, keepdims=True) + t[:, None]
  drop = lambda c: {"audio": jnp.zeros_like(c["audio"])}
  x = jnp.ones((3, 2))
  t = jnp.arange(3)
  cond = {"audio": jnp.full((3, 4), 0.5)}
  out = guidance.guided(model, 3.5, drop)(x, t, cond)
  c, u = model(x, t, cond), model(x, t, drop(cond))
  np.testing.assert_allclose(out, u + 3.5 * (c - u), rtol=1e-6)
  assert guidance.guided(model, 1.0, drop) is model
