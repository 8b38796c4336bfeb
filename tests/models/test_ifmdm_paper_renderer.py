"""IF-MDM's paper-size stage-1 renderer: the MotionAutoencoder interface at 64 px (small
channels), and at 512 px its sizes and cost from shapes only (jax.eval_shape / lowering;
nothing of that size is allocated)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkjax.nn.motion_renderer import gan_losses
from talkjax.models.ifmdm.paper_renderer import (PaperDiscriminator, PaperMotionAutoencoder,
                                                 scale_channels)

R = 64
SMALL = dict(resolution=R, channels=(8, 16, 16, 16), latent=32, directions=20)
# Compile time dominates these tests on a CPU: the unsafe_rbg PRNG compiles initializers in
# a fraction of threefry's time (~150 ms per parameter on a loaded 2-core CPU), and XLA's
# CPU backend optimisations off compile the 64 px model's gradient ~3x faster (~6 s instead
# of ~20 s). The tests need random weights and correct values, not threefry's or speed.
KEY = jax.random.key(0, impl="unsafe_rbg")
QUICK = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def quick(fn, *args):
  """fn compiled for args' shapes with the QUICK options."""
  return jax.jit(fn).lower(*args).compile(compiler_options=QUICK)

# Paper figures at 512 px (parameters; FLOPs of one rendered frame).
ENCODER_PARAMS, DECODER_PARAMS, DISC_PARAMS, RENDER_FLOPS = 22.7e6, 29.2e6, 24.0e6, 2.5e12


def _count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def small():
  model = PaperMotionAutoencoder(**SMALL)
  rng = np.random.default_rng(0)
  source = jnp.asarray(rng.uniform(-1, 1, (2, R, R, 3)), jnp.float32)
  driving = jnp.asarray(rng.uniform(-1, 1, (2, R, R, 3)), jnp.float32)
  sds = jax.ShapeDtypeStruct(source.shape, source.dtype)
  params = nn.meta.unbox(quick(lambda k: model.lazy_init(k, sds, sds), KEY)(KEY))["params"]
  forward = quick(lambda p, s, d: model.apply({"params": p}, s, d), params, source, driving)
  encode = lambda p, x: model.apply({"params": p}, x, method=model.encode_appearance)
  appearance = quick(encode, params, source)
  app = jax.eval_shape(encode, params, source)
  render = quick(lambda p, a, al: model.apply({"params": p}, a, al, method=model.render),
                 params, app, app[2])
  return dict(model=model, params=params, source=source, driving=driving, forward=forward,
              appearance=appearance, render=render)


def test_scale_channels():
  assert scale_channels(512) == (32, 64, 128, 256, 512, 512, 512, 512)
  assert scale_channels(64) == (256, 512, 512, 512, 512)
  # The 512 px experiment's channels are the paper's layout once the last entry repeats.
  assert scale_channels(512, (32, 64, 128, 256, 512, 512)) == scale_channels(512)
  assert scale_channels(64, (16, 32, 64, 64)) == (16, 32, 64, 64, 64)
  for resolution, channels in [(96, None), (4, None), (64, (8,) * 6), (64, ())]:
    with pytest.raises(ValueError):
      scale_channels(resolution, channels)


def test_interface_shapes_and_finite_outputs(small):
  p, src, drv = small["params"], small["source"], small["driving"]
  features, w, alpha_source, image = small["appearance"](p, src)
  assert [f.shape for f in features] == [(2, 64, 64, 8), (2, 32, 32, 16), (2, 16, 16, 16),
                                         (2, 8, 8, 16)]
  assert w.shape == (2, 32) and alpha_source.shape == (2, 20)
  assert bool(jnp.all(jnp.abs(alpha_source) < 1))
  np.testing.assert_array_equal(image, src)
  model = small["model"]
  encode_motion = lambda p, x: model.apply({"params": p}, x, method=model.encode_motion)
  alpha = quick(encode_motion, p, drv)(p, drv)
  assert alpha.shape == (2, 20) and bool(jnp.all(jnp.abs(alpha) < 1))
  out = small["forward"](p, src, drv)
  assert out.shape == (2, R, R, 3) and bool(jnp.all(jnp.isfinite(out)))
  with pytest.raises(ValueError, match="64x64"):
    model.apply({"params": p}, jnp.zeros((1, 32, 32, 3)), method=model.encode_motion)


def test_render_at_the_source_motion_is_deterministic(small):
  p, src = small["params"], small["source"]
  appearance = small["appearance"](p, src)
  first = np.asarray(small["render"](p, appearance, appearance[2]))
  np.testing.assert_array_equal(first, np.asarray(small["render"](p, appearance, appearance[2])))
  # alpha = alpha_source is z = w exactly: the same frame as driving the source by itself.
  np.testing.assert_array_equal(first, np.asarray(small["forward"](p, src, src)))
  other = np.asarray(small["render"](p, appearance, -appearance[2]))
  assert np.abs(other - first).max() > 1e-4   # and the motion code does move the frame


def test_gradients_reach_flows_masks_and_motion(small):
  p, src, drv, model = small["params"], small["source"], small["driving"], small["model"]
  loss = lambda params: jnp.mean(jnp.abs(model.apply({"params": params}, src, drv) - drv))
  grads = quick(jax.grad(loss), p)(p)
  grads = jax.tree.map(np.asarray, grads)   # the checks below: NumPy, nothing compiled
  assert all(bool(np.all(np.isfinite(g))) for g in jax.tree.leaves(grads))
  norm = lambda t: float(sum(np.sum(g ** 2) for g in jax.tree.leaves(t)))
  dec = grads["decoder"]
  for side in (8, 16, 32, 64):
    assert norm(dec[f"flow_mask_{side}"]) > 0, side      # flow + mask head of every scale
    assert norm(dec[f"to_rgb_{side}"]) > 0, side
  for side in (8, 16, 32):                               # the blend into the next scale
    assert norm(dec[f"gen_{side}"]) > 0, side
  for name in ("refine", "const", "conv_4"):
    assert norm(dec[name]) > 0, name
  for part in ("encoder", "motion_head", "bank"):
    assert norm(grads[part]) > 0, part


def test_discriminator_works_with_the_gan_losses(small):
  src, drv = small["source"], small["driving"]
  disc = PaperDiscriminator(resolution=R, channels=(8, 16, 16, 16))
  sds = jax.ShapeDtypeStruct(src.shape, src.dtype)
  d_params = nn.meta.unbox(quick(lambda k: disc.lazy_init(k, sds), KEY)(KEY))["params"]
  apply = lambda dp, x: disc.apply({"params": dp}, x)
  losses = lambda dp: gan_losses(apply, dp, drv, src, r1_weight=1.0)
  g_loss, d_loss = quick(losses, d_params)(d_params)
  assert g_loss.shape == d_loss.shape == (2,)
  assert bool(jnp.all(jnp.isfinite(g_loss))) and bool(jnp.all(jnp.isfinite(d_loss)))


@pytest.fixture(scope="module")
def paper():
  model = PaperMotionAutoencoder(resolution=512)
  image = jax.ShapeDtypeStruct((1, 512, 512, 3), jnp.float32)
  boxed = jax.eval_shape(model.init, jax.random.PRNGKey(0), image, image)["params"]
  return model, image, boxed, nn.meta.unbox(boxed)


def test_paper_size_parameter_counts(paper):
  _, image, boxed, params = paper
  encoder = _count(params["encoder"]) + _count(params["motion_head"])
  decoder = _count(params["decoder"]) + _count(params["bank"])
  assert abs(encoder / ENCODER_PARAMS - 1) < 0.05, encoder
  assert abs(decoder / DECODER_PARAMS - 1) < 0.05, decoder
  disc = _count(jax.eval_shape(PaperDiscriminator(resolution=512).init, jax.random.PRNGKey(0),
                               image))
  assert abs(disc / DISC_PARAMS - 1) < 0.05, disc
  # Every parameter carries logical axis names, one per dimension.
  for leaf in jax.tree.leaves(boxed, is_leaf=lambda v: isinstance(v, nn.Partitioned)):
    assert isinstance(leaf, nn.Partitioned) and len(leaf.names) == leaf.value.ndim


def test_paper_size_render_flops(paper):
  model, image, _, params = paper
  appearance = jax.eval_shape(
      lambda p, x: model.apply({"params": p}, x, method=model.encode_appearance), params, image)
  alpha = jax.ShapeDtypeStruct((1, 20), jnp.float32)
  lowered = jax.jit(lambda p, a, al: model.apply({"params": p}, a, al, method=model.render)
                    ).lower(params, appearance, alpha)
  flops = lowered.cost_analysis()["flops"]
  assert abs(flops / RENDER_FLOPS - 1) < 0.15, flops
  # ~97 % of it is the full-resolution refine block (3x3 convs: 3->512, 512->512 x2, 512->3).
  refine = 2 * 512 * 512 * 9 * (3 * 512 + 2 * 512 * 512 + 512 * 3)
  assert 0.95 < refine / flops < 1.0


def test_stage1_task_builds_the_paper_renderer_from_its_config():
  """`model.renderer = "paper"` reaches the task (generator and StyleGAN2 discriminator), and
  one loss evaluation with every term on is finite; a bad layout is a clear config error."""
  from talkjax import config as cfg
  from talkjax.errors import ConfigError
  from talkjax.models import make_task
  config = cfg.load_config("ifmdm/synthtalk_tiny_stage1", [
      "model.renderer=paper", "model.channels=(8, 16, 16, 16)", "model.disc_channels=(8, 16)",
      "model.latent=32", "loss.perceptual=0.0", "loss.gan=0.1"])
  task = make_task(config)
  assert isinstance(task.generator, PaperMotionAutoencoder)
  assert isinstance(task.discriminator, PaperDiscriminator)
  batch = {k: jnp.asarray(np.random.default_rng(1).uniform(-1, 1, v.shape), jnp.float32)
           for k, v in task.example_batch(2).items()}
  shapes = nn.meta.unbox(jax.eval_shape(task.init, jax.random.PRNGKey(0), batch))
  params = jax.jit(lambda k: jax.tree.map(lambda s: 0.05 * jax.random.normal(k, s.shape, s.dtype),
                                          shapes))(KEY)
  loss, metrics = quick(lambda p, b: task.loss(p, b, None), params, batch)(params, batch)
  assert loss.shape == (2,) and np.isfinite(np.asarray(loss)).all()
  assert {"l1", "g_loss", "d_loss"} <= set(metrics)
  bad = cfg.load_config("ifmdm/synthtalk_tiny_stage1", ["model.renderer=paper", "model.resolution=96"])
  with pytest.raises(ConfigError, match="power of two"):
    make_task(bad)
