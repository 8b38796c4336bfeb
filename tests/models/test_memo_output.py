"""MEMO's DiffusionNet output parametrisations (`model.flow.output`): the preconditioned
one against its formula in float64 NumPy, around the very same network."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkjax import config as cfg
from talkjax.errors import ConfigError
from talkjax.models import make_task
from talkjax.models.memo.builders import memo_config
from talkjax.models.memo.model import Memo
from talkjax.models.memo.tasks import training_anchor


def _lively_net(tmp_path, overrides=()):
  """The tiny stage-2 Memo at 32 px with random weights, lively everywhere (a fresh UNet's
  zero output layer would hide any mistake; norms' scales near 1; initialising for real
  compiles for a minute), its raw twin (output "velocity": the net's own output), and
  ready conditioning for 3 rows."""
  config = cfg.load_config("memo/synthtalk_tiny_stage1", [f"data.path={tmp_path}",
                                                         "model.flow.output=preconditioned",
                                                         "model.resolution=32", *overrides])
  pre = make_task(config).memo
  raw = Memo(dataclasses.replace(pre.config, output="velocity", anchor="none"))
  b, h = 3, int(config.model.resolution) // 4
  example = {"latents": jnp.zeros((1, 1, h, h, 4)), "reference": jnp.zeros((1, h, h, 4)),
             "past": jnp.zeros((1, 0, h, h, 4)), "speech": None, "emotion": None,
             "identity": jnp.zeros((1, pre.config.identity_dim))}
  shapes = nn.meta.unbox(jax.eval_shape(pre.init, jax.random.PRNGKey(0), example))
  rng = np.random.default_rng(1)
  tr = jax.tree_util.tree_map_with_path(
      lambda path, leaf: jnp.asarray((path[-1].key == "scale")
                                     + 0.1 * rng.standard_normal(leaf.shape), jnp.float32),
      shapes)
  keys = jax.random.split(jax.random.PRNGKey(2), 4)
  reference = jax.random.normal(keys[0], (b, h, h, 4))
  x_t = jax.random.normal(keys[1], (b, 1, h, h, 4))
  tokens = pre.image_tokens(tr, jax.random.normal(keys[2], (b, pre.config.identity_dim)))
  feats, _ = pre.condition_from(tr["reference_net"], reference, jnp.zeros((b, 0, h, h, 4)),
                                tokens)
  hooks = pre.hook_inputs(feats, None, None, None, None)
  sigma = jnp.array([1.0, 0.7, 0.2])
  s = np.asarray(sigma, np.float64)[:, None, None, None, None]
  d = (1 - s) ** 2 + s ** 2
  f = np.asarray(raw.denoise(tr["diffusion_net"], x_t / jnp.sqrt(d), sigma, tokens, hooks),
                 np.float64)
  assert np.abs(f).mean() > 0.1   # the net says something
  run = lambda **kw: np.asarray(pre.denoise(tr["diffusion_net"], x_t, sigma, tokens, hooks,
                                            **kw), np.float64)
  return pre, run, np.asarray(x_t, np.float64), s, f, keys[3]


def test_preconditioned_output_is_the_edm_scaling_of_the_same_net(tmp_path):
  pre, run, x, s, f, _ = _lively_net(tmp_path)
  assert pre.config.output == "preconditioned" and pre.config.anchor == "none"
  x0 = x - s * run()
  d = (1 - s) ** 2 + s ** 2
  want = (1 - s) / d * x + s / np.sqrt(d) * f
  assert np.max(np.abs(x0 - want)) / np.abs(want).max() < 1e-5
  # from pure noise the net's output is the clean frame itself
  assert np.max(np.abs(x0[0] - f[0])) / np.abs(f[0]).max() < 1e-5


def test_the_anchored_output_is_the_edm_scaling_of_the_residual_on_the_anchor(tmp_path):
  r = 0.25
  pre, run, x, s, f, key = _lively_net(tmp_path, ["model.clip.past=2",
                                                  "model.flow.anchor=last_past",
                                                  f"model.flow.anchor_std={r}"])
  assert pre.config.anchor == "last_past" and pre.config.anchor_std == r
  anchor = jax.random.normal(key, (3,) + x.shape[2:])
  x0 = x - s * run(anchor=anchor)
  a = np.asarray(anchor, np.float64)[:, None]
  y = x - (1 - s) * a                            # the noisy residual, (1 - s) y0 + s n
  big_d = (1 - s) ** 2 * r ** 2 + s ** 2
  want = a + (1 - s) * r ** 2 / big_d * y + s * r / np.sqrt(big_d) * f
  assert np.max(np.abs(x0 - want)) / np.abs(want).max() < 1e-5
  # from pure noise the clean frame is the anchor moved by r x the net's output
  assert np.max(np.abs(x0[0] - (a[0] + r * f[0]))) / np.abs(a[0]).max() < 1e-5
  with pytest.raises(ValueError, match="anchor"):
    run()


def test_an_unknown_output_is_a_config_error(tmp_path):
  config = cfg.load_config("memo/synthtalk_tiny_stage1", [f"data.path={tmp_path}",
                                                         "model.flow.output=epsilon"])
  with pytest.raises(ConfigError, match="model.flow.output"):
    memo_config(config.model)


@pytest.mark.parametrize("overrides", [["model.flow.anchor=first_frame"],
                                       ["model.flow.anchor=last_past",
                                        "model.flow.output=velocity"],
                                       ["model.flow.anchor=last_past",
                                        "model.flow.output=preconditioned",
                                        "model.flow.anchor_std=0"]])
def test_an_anchor_it_cannot_use_is_a_config_error(tmp_path, overrides):
  config = cfg.load_config("memo/synthtalk_tiny_stage1", [f"data.path={tmp_path}",
                                                         "model.clip.past=2", *overrides])
  with pytest.raises(ConfigError, match="model.flow.anchor"):
    memo_config(config.model)


def test_the_training_anchor_is_the_last_past_frame_or_the_portrait_where_it_was_dropped():
  rng = np.random.default_rng(0)
  clean = jnp.asarray(rng.standard_normal((3, 2, 4, 4, 4)), jnp.float32)
  noised = clean + 1.0
  reference = jnp.asarray(rng.standard_normal((3, 4, 4, 4)), jnp.float32)
  keep = jnp.array([True, False, True])
  for noised_anchor, last in ((False, clean[:, -1]), (True, noised[:, -1])):
    got = np.asarray(training_anchor(clean, noised, reference, keep, noised_anchor))
    np.testing.assert_array_equal(got[[0, 2]], np.asarray(last)[[0, 2]])
    np.testing.assert_array_equal(got[1], np.asarray(reference[1]))
