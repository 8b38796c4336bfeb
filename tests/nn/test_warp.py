import jax
import jax.numpy as jnp
import numpy as np

from talkjax.nn.warp import bilinear_sample, identity_grid, warp


def test_zero_flow_is_the_identity():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 6, 3)), jnp.float32)
  np.testing.assert_allclose(jax.jit(warp)(x, jnp.zeros((2, 8, 6, 2))), x, atol=1e-6)


def test_one_pixel_flow_shifts_by_one_pixel():
  x = np.random.default_rng(1).standard_normal((1, 8, 8, 2)).astype(np.float32)
  flow = np.zeros((1, 8, 8, 2), np.float32)
  flow[..., 1] = 2 / 8  # one pixel to the right in [-1, 1] units
  out = np.asarray(jax.jit(warp)(jnp.asarray(x), jnp.asarray(flow)))
  np.testing.assert_allclose(out[:, :, :-1], x[:, :, 1:], atol=1e-5)
  np.testing.assert_allclose(out[:, :, -1], x[:, :, -1], atol=1e-5)  # border is clamped


def test_half_pixel_is_the_average():
  x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  grid = np.asarray(jax.jit(identity_grid, static_argnums=(0, 1))(4, 4))[None].copy()
  grid[..., 0] += 1 / 4  # half a pixel down
  out = np.asarray(jax.jit(bilinear_sample)(jnp.asarray(x), jnp.asarray(grid)))
  np.testing.assert_allclose(out[0, :3, :, 0], (x[0, :3, :, 0] + x[0, 1:, :, 0]) / 2, atol=1e-5)
