"""The Flax SD UNet against diffusers' PyTorch UNet2DConditionModel, plus its variants.

One small random diffusers UNet per projection layout is saved with `save_pretrained` and
read back through `load_diffusers_unet`; outputs and every attn1 input must match. The
Flax parameter tree is the same for both layouts, so one compiled forward serves both.
"""

from __future__ import annotations

import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel as TorchUNet
from jax.sharding import PartitionSpec as P

from talkjax import parallel
from talkjax.convert.diffusers_unet import (
  config_from_diffusers,
  load_diffusers_unet,
  params_from_diffusers,
)
from talkjax.convert.torch_names import flatten, module_path, unflatten
from talkjax.defaults import DEFAULT_AXIS_RULES
from talkjax.errors import TalkjaxError
from talkjax.nn.layers import Dense
from talkjax.nn.unet import Hook, HookSite, UNet2DConditionModel, feature_sites, layer_sites
from talkjax.nn.unet_blocks import attention

SMALL = {"block_out_channels": (32, 64), "layers_per_block": 1,
         "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
         "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"), "cross_attention_dim": 16,
         "attention_head_dim": 8, "norm_num_groups": 8, "sample_size": 16}
B, F, L = 2, 2, 5


def _torch_unet(linear: bool):
  torch.manual_seed(int(linear))
  model = TorchUNet(**SMALL, use_linear_projection=linear).eval()
  with torch.no_grad():   # every parameter random, norms and biases included
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p) * (p.std() if p.ndim > 1 else 1.0))
  return model


def _inputs(batch, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal((batch, 16, 16, 4)).astype(np.float32),
          rng.integers(0, 1000, batch).astype(np.float32),
          rng.standard_normal((batch, L, 16)).astype(np.float32))


def _torch_forward(model, sample, t, context):
  """diffusers output (NHWC) and the input of every attn1, keyed by the Flax path."""
  feats, handles = {}, []
  for name, module in model.named_modules():
    if name.endswith(".attn1"):
      key = "/".join(module_path(name)[:-1])
      hook = lambda m, args, kwargs, key=key: feats.__setitem__(
          key, (args[0] if args else kwargs["hidden_states"]).numpy())
      handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
  with torch.no_grad():
    out = model(torch.from_numpy(sample.transpose(0, 3, 1, 2)), torch.from_numpy(t),
                torch.from_numpy(context)).sample.numpy()
  for h in handles:
    h.remove()
  return out.transpose(0, 2, 3, 1), feats


def _rel(a, b):
  return float(np.abs(np.asarray(a, np.float32) - b).max() / np.abs(b).max())


_FNS = {}


def _fn(config, **kw):
  """One compiled apply per model variant (the projection layout does not change it)."""
  config = dataclasses.replace(config, use_linear_projection=False)
  hooks = kw.pop("hooks", None)
  key = (config, tuple(sorted(kw.items())), tuple((hooks or {}).items()))
  if key not in _FNS:
    features = kw.pop("return_features", False)
    model = UNet2DConditionModel(config, hooks=hooks, **kw)
    _FNS[key] = jax.jit(lambda p, *a, **k: model.apply({"params": p}, *a, **k,
                                                       return_features=features))
  return _FNS[key]


@pytest.fixture(scope="module")
def unets(tmp_path_factory):
  """{linear: (torch model, config, params)}: linear in a pipeline folder's unet/ as
  safetensors, conv projections as a PyTorch .bin."""
  out = {}
  for linear in (False, True):
    model = _torch_unet(linear)
    root = tmp_path_factory.mktemp(f"unet_linear{linear}")
    if linear:
      model.save_pretrained(root / "unet")
    else:
      model.save_pretrained(root, safe_serialization=False)
      assert (root / "diffusion_pytorch_model.bin").is_file()
    config, params, report = load_diffusers_unet(root)
    assert config.use_linear_projection == linear
    assert len(report) == len(model.state_dict())
    out[linear] = (model, config, params)
  return out


@pytest.mark.parametrize("linear", [False, True], ids=["conv_proj", "linear_proj"])
def test_output_and_reference_features_match_diffusers(unets, linear):
  model, config, params = unets[linear]
  sample, t, context = _inputs(4)
  ref, ref_feats = _torch_forward(model, sample, t, context)
  out, feats = _fn(config, return_features=True)(params, sample, t, context)
  assert _rel(out, ref) < 1e-4
  assert list(ref_feats) == feature_sites(config)   # diffusers' forward order
  assert sorted(feats) == sorted(ref_feats)
  shapes = {"down_blocks_0": (4, 256, 32), "mid_block": (4, 64, 64), "up_blocks_1": (4, 256, 32)}
  for name, f in feats.items():
    assert f.shape == shapes[name.split("/")[0]]
    assert _rel(f, ref_feats[name]) < 1e-4


def test_video_variant_is_the_2d_model_per_frame(unets):
  _, config, params = unets[False]
  rng = np.random.default_rng(1)
  video = rng.standard_normal((B, F, 16, 16, 4)).astype(np.float32)
  t = np.array([3.0, 700.0], np.float32)
  context = rng.standard_normal((B, L, 16)).astype(np.float32)
  got = _fn(config)(params, video, t, context)
  assert got.shape == video.shape
  per_frame, _ = _fn(config, return_features=True)(
      params, video.reshape(B * F, 16, 16, 4), np.repeat(t, F), np.repeat(context, F, axis=0))
  np.testing.assert_allclose(np.asarray(got).reshape(per_frame.shape), per_frame,
                             rtol=1e-5, atol=1e-5)
  per_frame_context = np.repeat(context[:, None], F, axis=1)   # (B, F, L, D)
  np.testing.assert_allclose(_fn(config)(params, video, t, per_frame_context), got,
                             rtol=1e-6, atol=1e-6)


def test_odd_latent_size_matches_diffusers(unets):
  """9x9 latents: the down path gives 5x5, the up path resizes back to the skip's 9x9."""
  model, config, params = unets[True]
  rng = np.random.default_rng(6)
  sample = rng.standard_normal((1, 9, 9, 4)).astype(np.float32)
  t, context = np.array([321.0], np.float32), rng.standard_normal((1, L, 16)).astype(np.float32)
  ref, _ = _torch_forward(model, sample, t, context)
  assert _rel(_fn(config)(params, sample, t, context), ref) < 1e-4


SEEN = []


class Recorder(nn.Module):
  """A hook that notes where it runs and what it gets: at attn1 it returns its input, after
  a layer it adds a learned projection of the frame mean (zero weights: no change)."""
  site: HookSite

  @nn.compact
  def __call__(self, x, inputs):
    SEEN.append((self.site.point, self.site.name, x.shape))
    if self.site.point == "attn1":
      return x
    mean = jnp.broadcast_to(x.mean(axis=1, keepdims=True), x.shape)
    return x + Dense(self.site.channels, axes=("channels", "embed"))(mean)


class ReferenceAttention(nn.Module):   # as in talkjax/nn/unet.py's docstring
  site: HookSite

  def __call__(self, x, inputs):
    ref = jnp.repeat(inputs["reference"][self.site.name], self.site.frames, axis=0)
    return jnp.concatenate([x, ref], axis=1)


def _with_hook_params(model, params, scale, *args):
  """The converted UNet parameters plus the hooks' own, all `scale` * N(0, 1)."""
  abstract = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), *args)["params"])
  flat, base = flatten(abstract), flatten(params)
  extra = sorted(k for k in flat if k not in base)
  rng = np.random.default_rng(7)
  flat = {k: base[k] if k in base else
          (scale * rng.standard_normal(v.shape)).astype(np.float32) for k, v in flat.items()}
  return unflatten(flat), ["/".join(k) for k in extra]


def test_hooks_zero_is_identity_and_nonzero_changes_output(unets):
  _, config, params = unets[False]
  rng = np.random.default_rng(2)
  video = rng.standard_normal((B, F, 16, 16, 4)).astype(np.float32)
  t = np.array([10.0, 900.0], np.float32)
  context = rng.standard_normal((B, L, 16)).astype(np.float32)
  plain = np.asarray(_fn(config)(params, video, t, context))

  identity = {"reference": Hook("attn1", Recorder),
              "motion_modules": Hook("layer", Recorder)}
  model = UNet2DConditionModel(config, hooks=identity)
  SEEN.clear()
  hooked, extra = _with_hook_params(model, params, 0.0, video, t, context)
  assert extra[:2] == ["down_blocks_0/motion_modules_0/Dense_0/bias",
                       "down_blocks_0/motion_modules_0/Dense_0/kernel"]
  assert all("motion_modules_" in e for e in extra)   # attn1 recorders have no parameters
  layer_sites_ = [("down_blocks_0/attentions_0", 16, 32), ("down_blocks_1/resnets_0", 8, 64),
                 ("mid_block/attentions_0", 8, 64), ("up_blocks_0/resnets_0", 8, 64),
                 ("up_blocks_0/resnets_1", 8, 64), ("up_blocks_1/attentions_0", 16, 32),
                 ("up_blocks_1/attentions_1", 16, 32)]
  res = {"down_blocks_0": (16, 32), "mid_block": (8, 64), "up_blocks_1": (16, 32)}
  want = [("attn1", name, (B * F, res[name[:name.index("/")]][0] ** 2,
                           res[name[:name.index("/")]][1])) for name in feature_sites(config)]
  want += [("layer", n, (B, F, s, s, c)) for n, s, c in layer_sites_]
  assert sorted(SEEN) == sorted(want)
  assert [(s.name, s.height, s.channels) for s in layer_sites(config, F, 16, 16)] == layer_sites_
  out = _fn(config, hooks=identity)(hooked, video, t, context)
  np.testing.assert_allclose(out, plain, rtol=1e-5, atol=1e-5)

  # reference attention (up blocks only) on features of two reference images, and a
  # temporal mix: first with zero temporal weights, then random ones
  _, feats = _fn(config, return_features=True)(params, *_inputs(4, seed=3))
  reference = {"reference": {k: v[:B] for k, v in feats.items()}}
  active = {"reference": Hook("attn1", ReferenceAttention, where="up_blocks"),
            "motion_modules": Hook("layer", Recorder)}
  model = UNet2DConditionModel(config, hooks=active)
  SEEN.clear()
  zero, _ = _with_hook_params(model, params, 0.0, video, t, context, reference)
  assert [s[0] for s in SEEN] == ["layer"] * len(layer_sites_)
  only_reference = np.asarray(_fn(config, hooks=active)(zero, video, t, context, reference))
  assert only_reference.shape == plain.shape and _rel(only_reference, plain) > 1e-3
  both, _ = _with_hook_params(model, params, 0.2, video, t, context, reference)
  out = np.asarray(_fn(config, hooks=active)(both, video, t, context, reference))
  assert _rel(out, only_reference) > 1e-2


class Stream(nn.Module):
  """A "layer" hook that carries a stream: it adds the stream to the features and hands
  the next hook stream + 1 (MEMO's audio tokens travel module to module like this)."""
  site: HookSite

  def __call__(self, x, inputs):
    self.sow("intermediates", "seen", inputs["stream"])
    return x + inputs["stream"][:, None, None, None, :1], {"stream": inputs["stream"] + 1.0}


def test_layer_hooks_carry_a_stream_through_the_blocks_in_forward_order(unets):
  _, config, params = unets[False]
  rng = np.random.default_rng(4)
  video = rng.standard_normal((B, F, 16, 16, 4)).astype(np.float32)
  t, context = np.array([10.0, 900.0], np.float32), rng.standard_normal((B, L, 16))
  model = UNet2DConditionModel(config, hooks={"audio_modules": Hook("layer", Stream)})
  stream = {"stream": np.zeros((B, 3), np.float32)}
  out, state = jax.jit(lambda p, *a: model.apply({"params": p}, *a, mutable=["intermediates"]))(
      params, video, t, np.float32(context), stream)
  seen = {"/".join(k.key for k in path[:-2]): v
          for path, v in jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]}
  order = ["down_blocks_0/audio_modules_0", "down_blocks_1/audio_modules_0",
           "mid_block/audio_modules_0", "up_blocks_0/audio_modules_0",
           "up_blocks_0/audio_modules_1", "up_blocks_1/audio_modules_0",
           "up_blocks_1/audio_modules_1"]
  assert sorted(seen) == sorted(order)
  for n, name in enumerate(order):                  # each saw the one before it, + 1
    np.testing.assert_array_equal(seen[name], np.full((B, 3), float(n)))
  assert _rel(out, _fn(config)(params, video, t, np.float32(context))) > 1e-3


def test_missing_and_misshaped_tensors_are_named(unets):
  model, config, _ = unets[True]
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  missing = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
  bad = "mid_block.resnets.1.conv1.weight"
  del state[missing]
  state[bad] = state[bad][:, :-1]
  with pytest.raises(TalkjaxError) as e:
    params_from_diffusers(state, config, path="unet")
  msg = str(e.value)
  assert "down_blocks_0/attentions_0/transformer_blocks_0/attn2/to_k/kernel" in msg
  assert "1 missing" in msg and "1 mis-shaped" in msg and bad in msg
  assert msg.startswith("unet: ")


def test_unsupported_config_is_refused_by_name():
  base = dict(TorchUNet(**SMALL).config)
  assert config_from_diffusers(base).block_out_channels == (32, 64)
  cases = [({"down_block_types": ["AttnDownBlock2D", "DownBlock2D"]}, "AttnDownBlock2D"),
           ({"class_embed_type": "timestep"}, "class_embed_type"),
           ({"mid_block_type": "UNetMidBlock2DSimpleCrossAttn"}, "UNetMidBlock2DSimpleCrossAttn"),
           ({"_class_name": "UNet3DConditionModel"}, "UNet3DConditionModel"),
           ({"some_future_switch": True}, "some_future_switch")]
  for change, word in cases:
    with pytest.raises(TalkjaxError, match=word):
      config_from_diffusers({**base, **change}, path="config.json")
  config = config_from_diffusers(base)
  with pytest.raises(TalkjaxError, match="attn1"):
    jax.eval_shape(UNet2DConditionModel(config, hooks={"attn1": Hook("layer", Recorder)}).init,
                   jax.random.PRNGKey(0), *_inputs(1))


def test_parameters_are_named_and_sharded_forward_matches(unets):
  _, config, params = unets[False]
  model = UNet2DConditionModel(config)
  sample, t, context = _inputs(4, seed=4)
  boxed = jax.eval_shape(model.init, jax.random.PRNGKey(0), sample, t, context)["params"]
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert leaves and all(isinstance(x, nn.LogicallyPartitioned)
                        and len(x.names) == x.value.ndim for x in leaves)
  assert all(x.value.dtype == jnp.float32 for x in leaves)

  # the converted weights go straight into their sharded layout, boxed with the names
  # the model gives them
  names = nn.get_partition_spec(boxed)
  box = lambda p: jax.tree.map(lambda v, n: nn.LogicallyPartitioned(v, tuple(n)), p, names)
  mesh = parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed, shardings = parallel.shard_init(box, mesh, DEFAULT_AXIS_RULES, params)
  attn = shardings["down_blocks_0"]["attentions_0"]["transformer_blocks_0"]["attn1"]
  assert attn["to_q"]["kernel"].spec == P("fsdp", "tensor", None)
  assert attn["to_out_0"]["kernel"].spec == P("tensor", None, "fsdp")
  ff = shardings["mid_block"]["attentions_0"]["transformer_blocks_0"]["ff"]
  assert ff["net_0"]["proj"]["kernel"].spec == P("fsdp", None, "tensor")
  assert shardings["conv_in"]["kernel"].spec == P(None, None, None, "fsdp")
  assert shardings["down_blocks_1"]["resnets_0"]["norm1"]["scale"].spec == P("fsdp")
  assert shardings["conv_out"]["kernel"].spec == P(None, None, None, None)
  q = placed["down_blocks_0"]["attentions_0"]["transformer_blocks_0"]["attn1"]["to_q"]
  assert q["kernel"].addressable_shards[0].data.shape == (16, 4, 4)   # (32, 8, 4) / (2, 2)

  batch = parallel.batch_shardings({"x": ("batch",)}, mesh, DEFAULT_AXIS_RULES)["x"]
  with parallel.use_mesh(mesh, DEFAULT_AXIS_RULES):
    fn = jax.jit(lambda p, *a: model.apply({"params": p}, *a))
    sharded = fn(placed, *(jax.device_put(a, batch) for a in (sample, t, context)))
  assert sharded.sharding.spec[0] == ("data", "fsdp")
  unsharded, _ = _fn(config, return_features=True)(params, sample, t, context)
  np.testing.assert_allclose(sharded, unsharded, rtol=1e-5, atol=1e-5)


def test_fused_and_reference_attention_agree(unets):
  rng = np.random.default_rng(5)
  q, k, v = (jnp.asarray(rng.standard_normal((2, n, 4, 8)), jnp.float32) for n in (64, 7, 7))
  ref = attention(q, k, v, "reference")
  for impl in (None, "xla"):
    np.testing.assert_allclose(attention(q, k, v, impl), ref, rtol=1e-5, atol=1e-6)
  low = attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), "reference")
  assert low.dtype == jnp.bfloat16 and _rel(low, np.asarray(ref)) < 2e-2
  with pytest.raises(TalkjaxError, match="flash"):
    attention(q, k, v, "flash")

  _, config, params = unets[True]
  sample, t, context = _inputs(4)
  plain, _ = _fn(config, return_features=True)(params, sample, t, context)
  einsum = _fn(config, attention_impl="reference")(params, sample, t, context)
  np.testing.assert_allclose(einsum, plain, rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_and_remat(unets):
  _, config, params = unets[True]
  sample, t, context = _inputs(4)
  plain, _ = _fn(config, return_features=True)(params, sample, t, context)
  low = _fn(config, dtype=jnp.bfloat16)(params, sample, t, context)
  assert low.dtype == jnp.bfloat16 and _rel(low, np.asarray(plain)) < 5e-2
  remat = UNet2DConditionModel(config, remat=True)
  jaxpr = str(jax.make_jaxpr(lambda p: remat.apply({"params": p}, sample, t, context))(params))
  blocks = len(config.block_out_channels) * 2 + 1
  assert len(re.findall(r"\b(?:checkpoint|remat2?)\[", jaxpr)) == blocks
