"""MEMO's DiffusionNet output parametrisations (`model.flow.output`): the preconditioned
one against its formula in float64 NumPy, around the very same network; and the portrait's
input path (`model.portrait_input`)."""

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
from talkjax.models.memo.networks import PortraitInput
from talkjax.models.memo.tasks import training_anchor
from talkjax.nn.unet import HookSite


def _lively_setup(tmp_path, overrides=()):
  """The tiny stage-1 Memo at 32 px with random weights, lively everywhere (a fresh UNet's
  zero output layer would hide any mistake; norms' scales near 1; initialising for real
  compiles for a minute), and ready conditioning for 3 rows: (memo, params, reference
  latents, x_t, image tokens, reference features, a spare key)."""
  config = cfg.load_config("memo/synthtalk_tiny_stage1", [f"data.path={tmp_path}",
                                                         "model.flow.output=preconditioned",
                                                         "model.resolution=32", *overrides])
  pre = make_task(config).memo
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
  return pre, tr, reference, x_t, tokens, feats, keys[3]


def _lively_net(tmp_path, overrides=()):
  """`_lively_setup`'s Memo, its raw twin (output "velocity": the net's own output)
  evaluated, and a function running the Memo at three noise levels."""
  pre, tr, reference, x_t, tokens, feats, key = _lively_setup(tmp_path, overrides)
  raw = Memo(dataclasses.replace(pre.config, output="velocity", anchor="none"))
  # the tiny configs feed the portrait's latents at the input too (model.portrait_input)
  hooks = pre.hook_inputs(feats, jnp.ones(3, bool), None, None, None, reference)
  sigma = jnp.array([1.0, 0.7, 0.2])
  s = np.asarray(sigma, np.float64)[:, None, None, None, None]
  d = (1 - s) ** 2 + s ** 2
  f = np.asarray(raw.denoise(tr["diffusion_net"], x_t / jnp.sqrt(d), sigma, tokens, hooks),
                 np.float64)
  assert np.abs(f).mean() > 0.1   # the net says something
  run = lambda **kw: np.asarray(pre.denoise(tr["diffusion_net"], x_t, sigma, tokens, hooks,
                                            **kw), np.float64)
  return pre, run, np.asarray(x_t, np.float64), s, f, key


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


def test_the_portrait_input_is_a_conv_of_the_portrait_added_to_kept_rows():
  """PortraitInput against float64 NumPy: x + a 3x3 'same' convolution of the portrait's
  latents on every frame, nothing for rows whose reference keys are dropped; zero at
  init, so a checkpoint trained without it samples the same after init_from."""
  rng = np.random.default_rng(4)
  b, f, h, c_in, c = 3, 2, 6, 4, 8
  site = HookSite("conv_in", "input", f, h, h, c)
  x = jnp.asarray(rng.standard_normal((b, f, h, h, c)), jnp.float32)
  portrait = rng.standard_normal((b, h, h, c_in))
  keep = np.array([True, False, True])
  inputs = {"portrait": jnp.asarray(portrait, jnp.float32), "reference_keep": jnp.asarray(keep)}
  module = PortraitInput(site)
  params = nn.meta.unbox(module.init(jax.random.PRNGKey(0), x, inputs))
  assert all(not np.any(np.asarray(v)) for v in jax.tree_util.tree_leaves(params))
  kernel, bias = rng.standard_normal((3, 3, c_in, c)), rng.standard_normal(c)
  got = np.asarray(module.apply({"params": {"conv": {"kernel": jnp.asarray(kernel, jnp.float32),
                                                     "bias": jnp.asarray(bias, jnp.float32)}}},
                                x, inputs), np.float64)
  padded = np.pad(portrait, ((0, 0), (1, 1), (1, 1), (0, 0)))
  conv = sum(np.einsum("bhwi,io->bhwo", padded[:, i:i + h, j:j + h], kernel[i, j])
             for i in range(3) for j in range(3)) + bias
  want = np.asarray(x, np.float64) + np.where(keep[:, None, None, None], conv, 0.0)[:, None]
  assert np.max(np.abs(got - want)) / np.abs(want).max() < 1e-5


def test_the_portrait_input_path_reaches_the_denoiser_and_starts_as_none(tmp_path):
  """model.portrait_input adds diffusion_net/portrait_in (a deviation; the release's layout
  is unchanged without it): zeroed it leaves the net as it was, lively it makes the guided
  rows' output depend on the portrait and the unguided row's not."""
  pre, tr, reference, x_t, tokens, feats, key = _lively_setup(tmp_path)
  assert pre.config.portrait_input   # on in the tiny configs
  path = tr["diffusion_net"]["portrait_in"]["conv"]
  assert path["kernel"].shape == (3, 3, 4, 32)
  plain = Memo(dataclasses.replace(pre.config, portrait_input=False))
  sigma, keep = jnp.array([1.0, 0.7, 0.2]), jnp.array([True, False, True])

  def run(memo, net, portrait):
    hooks = memo.hook_inputs(feats, keep, None, None, None, portrait)
    return np.asarray(memo.denoise(net, x_t, sigma, tokens, hooks), np.float64)

  without = {k: v for k, v in tr["diffusion_net"].items() if k != "portrait_in"}
  zeroed = without | {"portrait_in": jax.tree_util.tree_map(jnp.zeros_like,
                                                            tr["diffusion_net"]["portrait_in"])}
  base = run(plain, without, None)
  np.testing.assert_allclose(run(pre, zeroed, reference), base, rtol=1e-5, atol=1e-6)
  other = jax.random.normal(key, reference.shape)
  a, b = run(pre, tr["diffusion_net"], reference), run(pre, tr["diffusion_net"], other)
  gap = np.abs(a - b).max(axis=(1, 2, 3, 4)) / np.abs(a).max()
  assert gap[0] > 1e-3 and gap[2] > 1e-3 and gap[1] == 0.0, gap
  with pytest.raises(ValueError, match="portrait_input"):
    run(pre, tr["diffusion_net"], None)
