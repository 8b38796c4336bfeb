"""Writes a random-weight MEMO release folder at tiny widths, in the release's layout.

What the release's model folder holds (its inference script loads it; names and shapes
read off the authors' public model code, written out here, not taken from talkjax):
- reference_net/: a Stable Diffusion UNet2DConditionModel state dict (the keys diffusers'
  own module has) that stops at the last transformer's attn1 input: no conv_norm_out /
  conv_out, no proj_out in the last attention, whose last transformer block keeps only
  norm1.
- diffusion_net/: the same spatial UNet (InflatedConv3d weights keep the 2D conv shape)
  plus, after every transformer layer, `audio_modules.i` (GroupNorm, 1x1 proj_in to an
  inner width, one joint video/audio transformer block with EmoAdaLN norms, 1x1 proj_out)
  and after every layer `motion_modules.i.temporal_transformer` (GroupNorm(32), linear
  proj_in, blocks of temporal self-attentions with `pos_encoder.pe` buffers, GEGLU ff).
  An audio module's inner width is the layer's resnet input channels in a down block and
  the block's `in_channels` in an up block; the UNet's very last audio module has no
  audio-stream outputs (to_add_out, audio_ff, audio_norm3).
- image_proj/, audio_proj/: Linear + LayerNorm projections; misc/audio_emotion_classifier/:
  Linear layers fc1..fc5 on 1024-d emotion2vec features.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from safetensors.numpy import save_file

CHANNELS = (32, 64, 64)
HEADS = 2                     # diffusers' attention_head_dim: heads per block
AUDIO_DIM = 16
CLASSES = 9                   # + the null class
POSITIONS = 8
MEMORY_HEADS = 2
SPATIAL = dict(block_out_channels=CHANNELS, layers_per_block=1, norm_num_groups=8,
               cross_attention_dim=32, attention_head_dim=HEADS, in_channels=4, out_channels=4,
               down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
               up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
               sample_size=8)
IMAGE = dict(cross_attention_dim=32, clip_embeddings_dim=12, clip_extra_context_tokens=4)
AUDIO = dict(seq_len=5, blocks=2, channels=8, intermediate_dim=16, output_dim=AUDIO_DIM,
             context_tokens=4)


def sinusoid(length: int, dim: int) -> np.ndarray:
  pos = np.arange(length)[:, None]
  div = np.exp(np.arange(0, dim, 2) * (-math.log(10000.0) / dim))
  pe = np.zeros((length, dim))
  pe[:, 0::2], pe[:, 1::2] = np.sin(pos * div), np.cos(pos * div)
  return pe[None].astype(np.float32)


def _linear(shapes, name, out, inp, bias=True):
  shapes[f"{name}.weight"] = (out, inp)
  if bias:
    shapes[f"{name}.bias"] = (out,)


def _norm(shapes, name, dim):
  shapes[f"{name}.weight"] = (dim,)
  shapes[f"{name}.bias"] = (dim,)


def audio_module(prefix: str, channels: int, inner: int, final: bool) -> dict:
  s, a = {}, AUDIO_DIM
  _norm(s, f"{prefix}.norm", channels)
  s[f"{prefix}.proj_in.weight"], s[f"{prefix}.proj_in.bias"] = (inner, channels, 1, 1), (inner,)
  t = f"{prefix}.transformer_blocks.0"
  for norm, dim in (("norm1", inner), ("audio_norm1", a), ("norm2", inner), ("audio_norm2", a)):
    s[f"{t}.{norm}.class_embedder.embedding_table.weight"] = (CLASSES + 1, dim)
    _linear(s, f"{t}.{norm}.adaLN_modulation.1", 2 * dim, dim)
  for attn, dim in (("attn1", inner), ("audio_attn1", a)):
    for p in "qkv":
      _linear(s, f"{t}.{attn}.to_{p}", inner, dim, bias=False)
    _linear(s, f"{t}.{attn}.to_out.0", dim, inner)
  for p in "qkv":
    _linear(s, f"{t}.attn2.to_{p}", inner, inner, bias=False)
    _linear(s, f"{t}.attn2.add_{p}_proj", inner, a)
  _linear(s, f"{t}.attn2.to_out.0", inner, inner)
  streams = (("", inner),) if final else (("", inner), ("audio_", a))
  if not final:
    _linear(s, f"{t}.attn2.to_add_out", a, inner)
  for stream, dim in streams:
    _linear(s, f"{t}.{stream}ff.net.0.proj", 8 * dim, dim)
    _linear(s, f"{t}.{stream}ff.net.2", dim, 4 * dim)
    _norm(s, f"{t}.{stream}norm3", dim)
  s[f"{prefix}.proj_out.weight"] = (channels, inner, 1, 1)
  s[f"{prefix}.proj_out.bias"] = (channels,)
  return s


def motion_module(prefix: str, channels: int) -> dict:
  s, m = {}, f"{prefix}.temporal_transformer"
  _norm(s, f"{m}.norm", channels)
  _linear(s, f"{m}.proj_in", channels, channels)
  b = f"{m}.transformer_blocks.0"
  for i in range(2):
    for p in "qkv":
      _linear(s, f"{b}.attention_blocks.{i}.to_{p}", channels, channels, bias=False)
    _linear(s, f"{b}.attention_blocks.{i}.to_out.0", channels, channels)
    s[f"{b}.attention_blocks.{i}.pos_encoder.pe"] = (1, POSITIONS, channels)
    _norm(s, f"{b}.norms.{i}", channels)
  _linear(s, f"{b}.ff.net.0.proj", 8 * channels, channels)
  _linear(s, f"{b}.ff.net.2", channels, 4 * channels)
  _norm(s, f"{b}.ff_norm", channels)
  _linear(s, f"{m}.proj_out", channels, channels)
  return s


def module_shapes() -> dict:
  """{release key: shape} of every audio and motion module of the tiny DiffusionNet."""
  c, n, s = CHANNELS, len(CHANNELS), {}
  attends_down = [t.startswith("CrossAttn") for t in SPATIAL["down_block_types"]]
  for i in range(n):
    for j in range(SPATIAL["layers_per_block"]):
      resnet_in = (c[i - 1] if i else c[0]) if j == 0 else c[i]
      if attends_down[i]:
        s.update(audio_module(f"down_blocks.{i}.audio_modules.{j}", c[i], resnet_in, False))
      s.update(motion_module(f"down_blocks.{i}.motion_modules.{j}", c[i]))
  s.update(audio_module("mid_block.audio_modules.0", c[-1], c[-1], False))
  s.update(motion_module("mid_block.motion_modules.0", c[-1]))
  rev = tuple(reversed(c))
  for i, t in enumerate(SPATIAL["up_block_types"]):
    block_in = rev[min(i + 1, n - 1)]
    for j in range(SPATIAL["layers_per_block"] + 1):
      if t.startswith("CrossAttn"):
        final = i == n - 1 and j == SPATIAL["layers_per_block"]
        s.update(audio_module(f"up_blocks.{i}.audio_modules.{j}", rev[i], block_in, final))
      s.update(motion_module(f"up_blocks.{i}.motion_modules.{j}", rev[i]))
  return s


def _random(shapes: dict, seed: int, scale=0.2) -> dict:
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in shapes.items():
    if key.endswith("pos_encoder.pe"):
      out[key] = sinusoid(shape[1], shape[2])
    elif key.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm3.weight")) or (
        ".norms." in key and key.endswith("weight")) or key.endswith("ff_norm.weight"):
      out[key] = (1 + scale * rng.standard_normal(shape)).astype(np.float32)
    else:
      out[key] = (scale * rng.standard_normal(shape)).astype(np.float32)
  return out


def spatial_state_dict(seed: int = 0) -> dict:
  """diffusers' own UNet2DConditionModel keys for the tiny layout, random weights (none
  zero: diffusers zero-initialises nothing here, but a random draw makes every map count)."""
  torch.manual_seed(seed)
  unet = UNet2DConditionModel(**SPATIAL)
  shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
  return _random(shapes, seed + 1, scale=0.1)


def reference_truncated(key: str) -> bool:
  """The release's ReferenceNet leaves these out (module doc)."""
  last = f"up_blocks.{len(CHANNELS) - 1}.attentions.{SPATIAL['layers_per_block']}."
  if key.startswith(("conv_norm_out.", "conv_out.")):
    return True
  if not key.startswith(last):
    return False
  rest = key[len(last):]
  return not rest.startswith(("norm.", "proj_in.", "transformer_blocks.0.norm1."))


def _save(folder, config: dict, tensors: dict, weights="diffusion_pytorch_model.safetensors"):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps(config, indent=2))
  save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / weights))


def diffusion_net_config() -> dict:
  c = dict(SPATIAL, _class_name="UNet3DConditionModel", _diffusers_version="0.31.0")
  c["down_block_types"] = [t.replace("2D", "3D") for t in SPATIAL["down_block_types"]]
  c["up_block_types"] = [t.replace("2D", "3D") for t in SPATIAL["up_block_types"]]
  c.update(mid_block_type="UNetMidBlock3DCrossAttn", use_inflated_groupnorm=True,
           motion_module_resolutions=[1, 2, 4, 8], unet_use_cross_frame_attention=None,
           unet_use_temporal_attention=None, audio_attention_dim=AUDIO_DIM, emo_drop_rate=0.3,
           motion_module_kwargs=dict(num_attention_heads=MEMORY_HEADS, num_transformer_block=1,
                                     attention_block_types=["Temporal_Self", "Temporal_Self"],
                                     temporal_position_encoding=True,
                                     temporal_position_encoding_max_len=POSITIONS,
                                     temporal_attention_dim_div=1, zero_initialize=True))
  c.pop("sample_size")
  return c


def write_release(root, seed: int = 0) -> dict:
  """Writes the folder; returns {subfolder: {key: array}} as written."""
  spatial = spatial_state_dict(seed)
  written = {
      "reference_net": {k: v for k, v in spatial_state_dict(seed + 10).items()
                        if not reference_truncated(k)},
      "diffusion_net": dict(spatial, **_random(module_shapes(), seed + 2)),
      "image_proj": _random({"proj.weight": (IMAGE["clip_extra_context_tokens"] * 32, 12),
                             "proj.bias": (IMAGE["clip_extra_context_tokens"] * 32,),
                             "norm.weight": (32,), "norm.bias": (32,)}, seed + 3),
      "audio_proj": _random({"proj1.weight": (16, 5 * 2 * 8), "proj1.bias": (16,),
                             "proj2.weight": (16, 16), "proj2.bias": (16,),
                             "proj3.weight": (4 * AUDIO_DIM, 16), "proj3.bias": (4 * AUDIO_DIM,),
                             "norm.weight": (AUDIO_DIM,), "norm.bias": (AUDIO_DIM,)}, seed + 4),
      "misc/audio_emotion_classifier": _random(
          {"layers.fc1.weight": (32, 1024), "layers.fc1.bias": (32,),
           "layers.fc2.weight": (CLASSES, 32), "layers.fc2.bias": (CLASSES,)}, seed + 5),
  }
  ref_config = dict(SPATIAL, _class_name="UNet2DConditionModel", _diffusers_version="0.31.0")
  configs = {"reference_net": ref_config, "diffusion_net": diffusion_net_config(),
             "image_proj": dict(IMAGE, _class_name="ImageProjModel"),
             "audio_proj": dict(AUDIO, _class_name="AudioProjModel"),
             "misc/audio_emotion_classifier": {"_class_name": "AudioEmotionClassifierModel",
                                               "num_classifier_layers": 2,
                                               "num_classifier_channels": 32}}
  for name, tensors in written.items():
    _save(root / name, configs[name], tensors)
  return written
