"""Flax AutoencoderKL against diffusers' PyTorch AutoencoderKL, through load_diffusers_vae."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL as TorchAutoencoderKL
from jax.sharding import PartitionSpec as P

from talkjax.convert.diffusers_vae import (config_from_diffusers, load_diffusers_vae,
                                           params_from_diffusers)
from talkjax.defaults import DEFAULT_AXIS_RULES
from talkjax.errors import TalkjaxError
from talkjax.nn.vae import AutoencoderKL, scale_latents, unscale_latents
from talkjax.parallel import logical_specs_of, make_mesh, shard_init, use_mesh

T = 5          # frames / batch of the parity checks
SIZE = 32      # image side; latents are SIZE / 2


def _rel_err(a, b):
  return float(np.abs(np.asarray(a, np.float32) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def torch_vae():
  torch.manual_seed(0)
  model = TorchAutoencoderKL(
      block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, latent_channels=4,
      down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
      sample_size=SIZE, scaling_factor=0.18215).eval()
  # every parameter (norm scales and biases included) moved off its default initialisation
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return model


@pytest.fixture(scope="module")
def inputs():
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (T, SIZE, SIZE, 3)).astype(np.float32)
  sample = rng.standard_normal((T, SIZE // 2, SIZE // 2, 4)).astype(np.float32)
  return images, sample


@pytest.fixture(scope="module")
def reference(torch_vae, inputs):
  images, sample = inputs
  with torch.no_grad():
    dist = torch_vae.encode(torch.from_numpy(images.transpose(0, 3, 1, 2))).latent_dist
    decoded = torch_vae.decode(torch.from_numpy(sample.transpose(0, 3, 1, 2))).sample
  nhwc = lambda t: t.numpy().transpose(0, 2, 3, 1)
  return nhwc(dist.mean), nhwc(dist.logvar), nhwc(decoded)


@pytest.fixture(scope="module")
def loaded(torch_vae, tmp_path_factory):
  folder = tmp_path_factory.mktemp("vae")
  torch_vae.save_pretrained(folder)
  return load_diffusers_vae(folder)


_JITTED = {}


def _apply(model: AutoencoderKL, method: str):
  """One compiled encode / decode per model, shared by the tests of this file."""
  if (model, method) not in _JITTED:
    _JITTED[(model, method)] = jax.jit(
        lambda params, x: model.apply({"params": params}, x, method=method))
  return _JITTED[(model, method)]


def _torch_tensors(torch_vae):
  return {k: v.numpy() for k, v in torch_vae.state_dict().items()}


@pytest.mark.parametrize("fmt", ["safetensors", "bin_in_pipeline"])
def test_matches_diffusers(tmp_path, torch_vae, inputs, reference, fmt):
  if fmt == "safetensors":
    folder = tmp_path / "vae"
    torch_vae.save_pretrained(folder)
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()
  else:  # a whole pipeline folder whose vae/ holds a PyTorch .bin
    folder = tmp_path / "pipeline"
    torch_vae.save_pretrained(folder / "vae", safe_serialization=False)
    (folder / "model_index.json").write_text(json.dumps({"vae": ["diffusers", "AutoencoderKL"]}))
    assert (folder / "vae" / "diffusion_pytorch_model.bin").is_file()
    assert not list((folder / "vae").glob("*.safetensors"))
  config, params, report = load_diffusers_vae(folder)
  assert config.block_out_channels == (32, 64) and config.scaling_factor == 0.18215
  assert len(report) == len(torch_vae.state_dict())
  images, sample = inputs
  want_mean, want_logvar, want_decoded = reference
  model = AutoencoderKL(config)
  mean, logvar = _apply(model, "encode")(params, images)
  assert _rel_err(mean, want_mean) < 1e-4
  assert _rel_err(logvar, want_logvar) < 1e-4
  assert _rel_err(_apply(model, "decode")(params, sample), want_decoded) < 1e-4


def test_legacy_attention_names_and_conv_layout(torch_vae, loaded):
  config, params, _ = loaded
  renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
  legacy = {}
  for key, value in _torch_tensors(torch_vae).items():
    for new, old in renames.items():
      marker = f".attentions.0.{new}."
      if marker in key:
        key = key.replace(marker, f".attentions.0.{old}.")
        value = value[:, :, None, None] if value.ndim == 2 else value
    legacy[key] = value
  assert "encoder.mid_block.attentions.0.proj_attn.weight" in legacy
  got, _ = params_from_diffusers(legacy, config)
  jax.tree.map(np.testing.assert_array_equal, got, params)


def test_missing_and_misshaped_tensors_are_named(torch_vae, loaded):
  config = loaded[0]
  tensors = _torch_tensors(torch_vae)
  missing = {k: v for k, v in tensors.items() if k != "decoder.up_blocks.1.resnets.1.conv1.bias"}
  with pytest.raises(TalkjaxError, match=r"^some/vae: .*1 missing: "
                                         r"decoder/up_blocks_1/resnets_1/conv1/bias"):
    params_from_diffusers(missing, config, path="some/vae")
  misshaped = dict(tensors)
  misshaped["encoder.conv_in.weight"] = tensors["encoder.conv_in.weight"][:16]
  with pytest.raises(TalkjaxError, match=r"mis-shaped: encoder\.conv_in\.weight \(16, 3, 3, 3\)"):
    params_from_diffusers(misshaped, config)


def test_config_fields(tmp_path):
  base = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.30.0", "act_fn": "silu",
          "block_out_channels": [128, 256, 512, 512], "down_block_types": [
              "DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
          "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
          "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215,
          "force_upcast": True}
  config = config_from_diffusers(base)
  assert config.block_out_channels == (128, 256, 512, 512) and config.downsample_factor == 8
  hash(config)  # usable as a static jit argument
  for change, message in [({"_class_name": "AutoencoderTiny"}, "AutoencoderTiny"),
                          ({"down_block_types": ["AttnDownEncoderBlock2D"] * 4},
                           "AttnDownEncoderBlock2D"),
                          ({"act_fn": "gelu"}, "act_fn"),
                          ({"block_out_channels": [128, 256, 500, 512]}, "divisible"),
                          ({"up_block_types": ["UpDecoderBlock2D"] * 3}, "3 entries"),
                          ({"spatial_compression": 8}, "spatial_compression")]:
    with pytest.raises(TalkjaxError, match=message):
      config_from_diffusers({**base, **change}, path="cfg.json")
  with pytest.raises(TalkjaxError, match="no config.json"):
    load_diffusers_vae(tmp_path)
  # a shift (SD3, FLUX) and per-channel statistics (Playground v2.5) invert exactly
  z = np.random.default_rng(0).standard_normal((2, 3, 3, 4)).astype(np.float32)
  for extra in ({"shift_factor": 0.1159, "scaling_factor": 0.3611},
                {"latents_mean": [0.1, -0.2, 0.3, 0.0], "latents_std": [1.0, 2.0, 0.5, 1.5]}):
    cfg = config_from_diffusers({**base, **extra})
    np.testing.assert_allclose(unscale_latents(cfg, scale_latents(cfg, z)), z, atol=1e-5)


def test_chunked_frames_equal_unchunked(loaded, inputs):
  config, params, _ = loaded
  images, sample = inputs
  model = AutoencoderKL(config)
  mean, logvar = _apply(model, "encode")(params, images)
  latents = model.encode_frames(params, images, chunk=2)  # 2 + 2 + 1 (padded) frames
  assert isinstance(latents, np.ndarray) and latents.shape == (T, SIZE // 2, SIZE // 2, 4)
  np.testing.assert_allclose(latents, np.asarray(mean) * config.scaling_factor,
                             rtol=1e-5, atol=1e-6)
  key = jax.random.key(1)
  drawn = model.encode_frames(params, images, chunk=2, sample=True, rng=key)
  # one noise draw for the whole video, whatever the chunk size: frame t gets noise[t]
  noise = (drawn / config.scaling_factor - mean) / np.exp(0.5 * np.asarray(logvar))
  np.testing.assert_allclose(noise, jax.random.normal(key, latents.shape), rtol=1e-3,
                             atol=1e-3)
  z = sample * config.scaling_factor
  frames = model.decode_frames(params, z, chunk=2)
  np.testing.assert_allclose(frames, _apply(model, "decode")(params, sample), rtol=1e-5,
                             atol=1e-5)
  with pytest.raises(TalkjaxError, match="channels"):
    model.decode_frames(params, images, chunk=2)
  with pytest.raises(TalkjaxError, match="uint8"):
    model.encode_frames(params, (images * 100).astype(np.uint8))


def test_sharded_params_and_decode(loaded):
  config, loaded_params, _ = loaded
  model = AutoencoderKL(config)
  rules = DEFAULT_AXIS_RULES
  mesh = make_mesh({"data": 2, "fsdp": 4, "tensor": 1})
  # the loaded weights go straight into their sharded layout (a random `model.init` would
  # do the same but spends ~20 s compiling its random number generation on this CPU)
  params, _ = shard_init(model.boxed_params, mesh, rules, loaded_params)
  init = lambda key: model.init(key, jnp.zeros((1, SIZE, SIZE, 3)))["params"]
  logical = logical_specs_of(jax.eval_shape(init, jax.random.key(0)))
  mesh_axes = dict(rules)
  leaves = jax.tree.leaves(logical, is_leaf=lambda spec: isinstance(spec, P))
  assert len(leaves) == len(jax.tree.leaves(params)) == len(jax.tree.leaves(loaded_params))
  for value, names in zip(jax.tree.leaves(params), leaves):
    want = P(*(mesh_axes[n] if n else None for n in names))
    assert value.sharding.spec == want, (names, value.sharding.spec)
  dec = params["decoder"]
  assert dec["conv_in"]["kernel"].sharding.spec == P(None, None, None, "fsdp")
  assert dec["mid_block"]["attentions_0"]["to_q"]["kernel"].sharding.spec == P("fsdp", None)
  assert dec["mid_block"]["attentions_0"]["group_norm"]["scale"].sharding.spec == P("fsdp")
  assert dec["conv_out"]["kernel"].sharding.spec == P(None, None, None, None)
  shard = dec["up_blocks_0"]["resnets_0"]["conv2"]["kernel"].addressable_shards[0]
  assert shard.data.shape == (3, 3, 64, 64 // 4)
  z = np.random.default_rng(2).standard_normal((8, SIZE // 2, SIZE // 2, 4)).astype(np.float32)
  batch = jax.device_put(z, jax.sharding.NamedSharding(mesh, P(("data", "fsdp"))))
  with use_mesh(mesh, rules):
    sharded = jax.jit(lambda p, z: model.apply({"params": p}, z, method="decode"))(params, batch)
  assert len(sharded.sharding.device_set) == 8
  unsharded = _apply(model, "decode")(loaded_params, z)
  assert _rel_err(sharded, np.asarray(unsharded)) < 1e-5


def test_bfloat16_compute_with_remat(loaded, inputs):
  config, params, _ = loaded
  images, sample = inputs
  model = AutoencoderKL(config, dtype=jnp.bfloat16, remat=True)
  shapes = jax.eval_shape(model.init, jax.random.key(0), images[:1])
  assert {a.dtype for a in jax.tree.leaves(nn.meta.unbox(shapes))} == {jnp.dtype(jnp.float32)}
  reference = AutoencoderKL(config)
  mean, _ = _apply(model, "encode")(params, images)
  assert mean.dtype == jnp.bfloat16
  assert _rel_err(mean, np.asarray(_apply(reference, "encode")(params, images)[0])) < 5e-2
  decoded = _apply(model, "decode")(params, sample)
  assert _rel_err(decoded, np.asarray(_apply(reference, "decode")(params, sample))) < 5e-2

