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


def test_preconditioned_output_is_the_edm_scaling_of_the_same_net(tmp_path):
  config = cfg.load_config("memo/synthtalk_tiny_stage1", [f"data.path={tmp_path}",
                                                         "model.flow.output=preconditioned",
                                                         "model.resolution=32"])
  pre = make_task(config).memo
  assert pre.config.output == "preconditioned"
  raw = Memo(dataclasses.replace(pre.config, output="velocity"))   # the net's own output
  b, h = 3, int(config.model.resolution) // 4
  example = {"latents": jnp.zeros((1, 1, h, h, 4)), "reference": jnp.zeros((1, h, h, 4)),
             "past": jnp.zeros((1, 0, h, h, 4)), "speech": None, "emotion": None,
             "identity": jnp.zeros((1, pre.config.identity_dim))}
  shapes = nn.meta.unbox(jax.eval_shape(pre.init, jax.random.PRNGKey(0), example))
  # random weights, lively everywhere (a fresh UNet's zero output layer would hide any
  # mistake); norms' scales near 1 (initialising for real compiles for a minute)
  rng = np.random.default_rng(1)
  tr = jax.tree_util.tree_map_with_path(
      lambda path, leaf: jnp.asarray((path[-1].key == "scale")
                                     + 0.1 * rng.standard_normal(leaf.shape), jnp.float32),
      shapes)

  keys = jax.random.split(jax.random.PRNGKey(2), 4)
  reference = jax.random.normal(keys[0], (b, h, h, 4))
  x_t = jax.random.normal(keys[1], (b, 1, h, h, 4))
  sigma = jnp.array([1.0, 0.7, 0.2])
  tokens = pre.image_tokens(tr, jax.random.normal(keys[2], (b, pre.config.identity_dim)))
  feats, _ = pre.condition_from(tr["reference_net"], reference, jnp.zeros((b, 0, h, h, 4)),
                                tokens)
  hooks = pre.hook_inputs(feats, None, None, None, None)

  v = np.asarray(pre.denoise(tr["diffusion_net"], x_t, sigma, tokens, hooks), np.float64)
  s = np.asarray(sigma, np.float64)[:, None, None, None, None]
  d = (1 - s) ** 2 + s ** 2
  f = np.asarray(raw.denoise(tr["diffusion_net"], x_t / jnp.sqrt(d), sigma, tokens, hooks),
                 np.float64)
  x = np.asarray(x_t, np.float64)
  x0 = x - s * v
  want = (1 - s) / d * x + s / np.sqrt(d) * f
  assert np.abs(f).mean() > 0.1   # the net says something
  assert np.max(np.abs(x0 - want)) / np.abs(want).max() < 1e-5
  # from pure noise the net's output is the clean frame itself
  assert np.max(np.abs(x0[0] - f[0])) / np.abs(f[0]).max() < 1e-5


def test_an_unknown_output_is_a_config_error(tmp_path):
  config = cfg.load_config("memo/synthtalk_tiny_stage1", [f"data.path={tmp_path}",
                                                         "model.flow.output=epsilon"])
  with pytest.raises(ConfigError, match="model.flow.output"):
    memo_config(config.model)
