"""IF-MDM stage 1: direction bank, GAN objective separation, shapes and a learning smoke run."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import flax.linen as nn

from talkjax import config as cfg
from talkjax.models.ifmdm.tasks import Stage1Task
from talkjax.nn.motion_renderer import DirectionBank, gan_losses


def test_direction_bank_is_orthonormal_even_after_updates():
  bank = DirectionBank(latent=32, directions=20)
  params = jax.jit(bank.init)(jax.random.PRNGKey(0))
  noisy = jax.jit(lambda t: jax.tree.map(
      lambda m: m + 0.3 * jax.random.normal(jax.random.PRNGKey(1), m.shape), t))(params)
  apply = jax.jit(bank.apply)
  for p in (params, noisy):
    q = np.asarray(apply(p), np.float64)
    assert q.shape == (32, 20)
    np.testing.assert_allclose(q.T @ q, np.eye(20), atol=1e-5)


def test_gan_objective_updates_each_network_by_its_own_loss_only():
  disc = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"]   # a linear critic
  d_params = {"w": jnp.linspace(-1.0, 1.0, 12)}
  real = jnp.asarray(np.random.default_rng(0).standard_normal((3, 2, 2, 3)), jnp.float32)
  fake = jnp.asarray(np.random.default_rng(1).standard_normal((3, 2, 2, 3)), jnp.float32)

  def total(dp, fk):
    g, d = gan_losses(disc, dp, real, fk, r1_weight=2.0)
    return jnp.sum(g + d)

  grad_d, grad_fake = jax.jit(jax.grad(total, argnums=(0, 1)))(d_params, fake)
  w = d_params["w"]
  flat_r, flat_f = real.reshape(3, -1), fake.reshape(3, -1)
  # float64 references: the critic's gradient comes from its own loss plus R1 = |w|^2 (linear D)
  sig = lambda z: 1 / (1 + np.exp(-z))
  w64 = np.asarray(w, np.float64)
  ref_d = (sig(flat_f @ w64)[:, None] * flat_f - sig(-(flat_r @ w64))[:, None] * flat_r).sum(0) \
      + 3 * 2.0 * w64
  np.testing.assert_allclose(grad_d["w"], ref_d, rtol=1e-4)
  # ...and the fake images only from the generator's loss softplus(-D(fake)).
  ref_fake = -(sig(-(flat_f @ w64)))[:, None] * w64[None, :]
  np.testing.assert_allclose(grad_fake.reshape(3, -1), ref_fake, rtol=1e-4)


def test_stage1_shapes_and_a_few_steps_reduce_the_loss():
  config = cfg.load_config("ifmdm/synthtalk_tiny_stage1", ["model.channels=(8, 16, 16, 16)",
                                                            "model.disc_channels=(8, 8, 8, 8)",
                                                            "model.latent=32",
                                                            "loss.perceptual=0.0",
                                                            "loss.gan=0.05"])
  task = Stage1Task(config)
  rng = np.random.default_rng(0)
  # A tiny fixed batch: a square that moves between source and driving frames.
  source = np.full((4, 64, 64, 3), -1.0, np.float32)
  driving = source.copy()
  for i in range(4):
    source[i, 20:40, 10 + 4 * i:30 + 4 * i] = rng.uniform(-0.5, 1.0, 3)
    driving[i, 24:44, 14 + 4 * i:34 + 4 * i] = source[i, 20, 10 + 4 * i]
  batch = {"source": jnp.asarray(source), "driving": jnp.asarray(driving)}
  params = jax.jit(lambda r: nn.meta.unbox(task.init(r, batch)))(jax.random.PRNGKey(0))
  per_example, metrics = jax.jit(task.loss)(params, batch, None)
  assert per_example.shape == (4,)
  assert set(metrics) == {"l1", "g_loss", "d_loss"}
  tx = optax.adam(3e-3)
  opt = jax.jit(tx.init)(params)

  @jax.jit
  def step(params, opt):
    grads, m = jax.grad(lambda p: (lambda l, m: (l.mean(), m))(*task.loss(p, batch, None)),
                        has_aux=True)(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt, m

  first = None
  for _ in range(10):
    params, opt, m = step(params, opt)
    first = first or float(m["l1"])
  assert float(m["l1"]) < 0.8 * first


def test_lpips_is_zero_for_equal_images_and_grows_with_distortion():
  from talkjax.nn.perceptual import lpips
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)), jnp.float32)
  noise = jnp.asarray(np.random.default_rng(1).standard_normal((1, 64, 64, 3)), jnp.float32)
  distance = jax.jit(lambda x, noise, s: lpips(x, jnp.clip(x + s * noise, -1, 1)))
  d = [float(distance(x, noise, s)[0]) for s in (0.0, 0.1, 0.5)]
  assert d[0] < 1e-6 < d[1] < d[2]
