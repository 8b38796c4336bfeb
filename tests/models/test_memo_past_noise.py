"""MEMO's past-frame noise (`model.clip.past_noise`): per-example levels, uniform in range."""

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.models.memo.tasks import noised_past


def test_past_noise_is_off_at_zero_and_draws_one_level_per_example():
  past = jax.random.normal(jax.random.PRNGKey(0), (400, 2, 8, 8, 4))
  assert noised_past(past, jax.random.PRNGKey(1), 0.0) is past
  added = np.asarray(noised_past(past, jax.random.PRNGKey(1), 0.3) - past, np.float64)
  std = added.reshape(400, -1).std(axis=1)   # 512 draws per example
  assert std.max() <= 0.3 * 1.15 and std.min() < 0.03
  # uniform levels in [0, 0.3]: mean 0.15, quartiles 0.075 / 0.225 (sampling error ~0.01)
  assert abs(std.mean() - 0.15) < 0.015
  np.testing.assert_allclose(np.percentile(std, [25, 75]), [0.075, 0.225], atol=0.02)
  # the same level across an example's frames and pixels
  per_frame = added.reshape(400, 2, -1).std(axis=2)
  np.testing.assert_allclose(per_frame[:, 0], per_frame[:, 1], rtol=0.25, atol=0.01)
