"""MEMO's networks (arXiv 2412.04448), named like the authors' released checkpoint.

- `reference_net`: a Stable Diffusion UNet (talkjax/nn/unet.py) run once per clip, at
  timestep 0, on the reference image and the P past frames (clean latents). It hands the
  DiffusionNet, per layer, the reference frame's features (for every spatial
  self-attention) and the past frames' (for the memory): the attn1 input of a layer's
  transformer, or the resnet output where a layer has no transformer.
- `diffusion_net`: the same UNet over the clip's frames with three hooks per layer, in the
  release's order: reference attention inside every attn1 (`ReferenceAttention`), the
  emotion-aware audio module after every transformer layer (`audio_modules_i`,
  talkjax/nn/audio_module.py, the audio stream carried from module to module) and the
  memory-guided temporal module after every layer (`motion_modules_i/temporal_transformer`,
  talkjax/nn/memory_attention.py). With `portrait_input` (a deviation, off in the paper
  configs) the portrait's latents also enter after conv_in (`portrait_in`, PortraitInput).
- `image_proj`: identity embedding (512) -> 4 tokens x 768, LayerNorm;
  `audio_proj`: a 5-frame window of 12 wav2vec2 layers x 768 -> 512 -> 512 -> 32 x 768.

Parameter paths equal the release's state-dict keys with "." -> "/" after a number
("down_blocks.0.audio_modules.0.proj_in" = down_blocks_0/audio_modules_0/proj_in), so the
import is a renaming plus the layout reshapes the SD UNet converter already does.

Quirk kept from the release: an audio module's inner width is the heads times the block's
*input* channels // heads (the layer's input for a down block's first layer, the up
block's `in_channels` for all its layers), so some audio modules run at half width.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from talkjax.nn.audio_module import AudioModule
from talkjax.nn.latent_blocks import conv
from talkjax.nn import convs
from talkjax.nn.layers import Dense
from talkjax.nn.memory_attention import TemporalMemoryTransformer
from talkjax.nn.unet import Hook, HookSite, UNet2DConditionModel, UNetConfig, layer_sites
from talkjax.nn.unet_blocks import layer_norm

AUDIO_SITES = r"attentions_\d+$"      # audio modules follow transformer layers only


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
  """The motion (memory) modules' settings: the release's `motion_module_kwargs`."""
  heads: int = 8
  blocks: int = 2                   # num_transformer_block
  attentions: int = 2               # len(attention_block_types): temporal self-attentions
  position_max_len: int = 0         # temporal_position_encoding(_max_len); 0 = off
  decay: float = 0.9
  groups: int = 32
  # Deviation when True (False in the release, which fine-tunes pretrained modules): the loss's
  # gradient also reaches the past frames' path into the memory (their ReferenceNet
  # features and the keys and values written), not only the queries that read it.
  backprop_past: bool = False


@dataclasses.dataclass(frozen=True)
class MemoConfig:
  """Everything that fixes MEMO's parameter shapes."""
  unet: UNetConfig                  # both nets' SD layout (the DiffusionNet's spatial part)
  memory: MemoryConfig = MemoryConfig()
  audio_dim: int = 768              # audio tokens' width (audio_attention_dim)
  audio_tokens: int = 32
  audio_window: int = 5             # frames i-2..i+2
  audio_layers: int = 12            # wav2vec2 hidden layers stacked
  audio_channels: int = 768
  audio_hidden: int = 512
  identity_dim: int = 512           # face embedding width
  image_tokens: int = 4
  emotions: int = 9                 # + 1 null class
  emotion_dropout: float = 0.3
  # The DiffusionNet's added modules: stage 1 (face-domain adaptation) trains with the
  # reference attention only; stage 2 adds the audio and memory modules.
  modules: tuple[str, ...] = ("reference", "audio", "memory")
  # What the DiffusionNet's output means (Memo.denoise): "velocity" (the release) or
  # "preconditioned" (EDM-style scalings around the net; no parameter changes shape).
  output: str = "velocity"
  # "last_past": the preconditioned output is a residual on the last past frame's latents
  # (Memo.denoise); anchor_std is that residual's assumed std. "none" = no anchor.
  anchor: str = "none"
  anchor_std: float = 1.0
  # Deviation when True (the release has no such path): the portrait's latents reach the
  # DiffusionNet's input too, through a zero-initialised 3x3 conv added to conv_in's output
  # (`PortraitInput`), beside the reference attention.
  portrait_input: bool = False

  @property
  def audio(self) -> bool:
    return "audio" in self.modules

  @property
  def memory_on(self) -> bool:
    return "memory" in self.modules

  @property
  def context_dim(self) -> int:
    return self.unet.cross_attention_dim[0]


def audio_inner_dim(unet: UNetConfig, site: str) -> int:
  """Width of the audio module after layer `site` (the release's quirk, module doc)."""
  block, layer = site.split("/")
  c, n = unet.block_out_channels, len(unet.block_out_channels)
  i = int(layer.rsplit("_", 1)[1])
  if block == "mid_block":
    return c[-1]
  index = int(block.rsplit("_", 1)[1])
  if block.startswith("down"):
    return (c[index - 1] if index else c[0]) if i == 0 else c[index]
  return tuple(reversed(c))[min(index + 1, n - 1)]


def _heads(unet: UNetConfig, site: str) -> int:
  block = site.split("/")[0]
  heads = unet.attention_head_dim
  if block == "mid_block":
    return heads[-1]
  index = int(block.rsplit("_", 1)[1])
  return heads[index] if block.startswith("down") else tuple(reversed(heads))[index]


def _final_audio_site(unet: UNetConfig) -> str:
  n = len(unet.block_out_channels)
  return f"up_blocks_{n - 1}/attentions_{unet.up_specs()[-1].layers - 1}"


class ReferenceAttention(nn.Module):
  """attn1 also attends to the reference frame's features at the same site. Rows whose
  `reference_keep` is False (the unguided branch) attend to themselves only: keys [h; h]
  give exactly self-attention, so no mask and no second shape is needed."""
  site: HookSite

  def __call__(self, h, inputs):
    ref = jnp.repeat(inputs["reference"][self.site.name].astype(h.dtype), self.site.frames,
                     axis=0)
    keep = jnp.repeat(inputs["reference_keep"], self.site.frames)[:, None, None]
    return jnp.concatenate([h, jnp.where(keep, ref, h)], axis=1)


class PortraitInput(nn.Module):
  """The portrait's latents (B, h, w, C) through a 3x3 conv, zero at init, added to every
  frame's conv_in output: a pixel-aligned path for what the face looks like, where
  reference attention has to find each place by content. Rows whose `reference_keep` is
  False (the unguided branch) get nothing."""
  site: HookSite
  dtype: Any = None

  @nn.compact
  def __call__(self, x, inputs):
    keep = inputs["reference_keep"][:, None, None, None]
    y = convs.conv(self.site.channels, 3, name="conv", dtype=self.dtype,
                   zero_init=True)(inputs["portrait"].astype(x.dtype))
    return x + jnp.where(keep, y, 0.0)[:, None]


class AudioHook(nn.Module):
  """The audio module at a layer site; its parameters sit at the site (shared scope)."""
  site: HookSite
  config: MemoConfig
  train: bool = False
  dtype: Any = None
  implementation: str | None = None

  def setup(self):
    unet = self.config.unet
    self.module = AudioModule(_heads(unet, self.site.name), unet.norm_num_groups,
                              audio_inner_dim(unet, self.site.name), self.config.audio_dim,
                              final=self.site.name == _final_audio_site(unet),
                              deterministic=not self.train,
                              emotion_dropout=self.config.emotion_dropout, dtype=self.dtype,
                              implementation=self.implementation,
                              num_classes=self.config.emotions)
    nn.share_scope(self, self.module)

  def __call__(self, x, inputs):
    b, f, h, w, c = x.shape
    out, audio = self.module(x.reshape(b * f, h, w, c), inputs["audio"], inputs["emotion"])
    out = out.reshape(x.shape)
    return out if audio is None else (out, {"audio": audio})


class MotionHook(nn.Module):
  """The memory-guided temporal module at a layer site, reading that site's memory."""
  site: HookSite
  config: MemoryConfig
  dtype: Any = None

  def setup(self):
    self.temporal_transformer = memory_module(self.config, self.site.channels, self.dtype)

  def __call__(self, x, inputs):
    return self.temporal_transformer(x, inputs["memory"][self.site.name])


def memory_module(config: MemoryConfig, channels: int, dtype=None) -> TemporalMemoryTransformer:
  return TemporalMemoryTransformer(channels, heads=config.heads, blocks=config.blocks,
                                   attentions=config.attentions, groups=config.groups,
                                   decay=config.decay, position_max_len=config.position_max_len,
                                   backprop_past=config.backprop_past, dtype=dtype)


class Collect(nn.Module):
  """ReferenceNet hook: keeps a resnet-only layer's output (the memory's input there)."""
  site: HookSite

  def __call__(self, x, inputs):
    self.sow("intermediates", "features", x)
    return x


def reference_net(config: MemoConfig, dtype=jnp.float32, remat: bool = False,
                  implementation: str | None = None) -> UNet2DConditionModel:
  return UNet2DConditionModel(config.unet, dtype=dtype, remat=remat,
                              attention_impl=implementation,
                              hooks={"collect": Hook("layer", Collect, where=r"resnets_\d+$")})


def diffusion_net(config: MemoConfig, *, train: bool = False, dtype=jnp.float32,
                  remat: bool = False, implementation: str | None = None) -> UNet2DConditionModel:
  audio = lambda site, name: AudioHook(site, config, train, dtype, implementation, name=name)
  motion = lambda site, name: MotionHook(site, config.memory, dtype, name=name)
  hooks = {"reference": Hook("attn1", ReferenceAttention)}
  if config.portrait_input:
    hooks["portrait_in"] = Hook("input", lambda site, name: PortraitInput(site, dtype,
                                                                            name=name))
  if config.audio:
    hooks["audio_modules"] = Hook("layer", audio, where=AUDIO_SITES)
  if config.memory_on:
    hooks["motion_modules"] = Hook("layer", motion)
  return UNet2DConditionModel(config.unet, dtype=dtype, remat=remat,
                              attention_impl=implementation, hooks=hooks)


class ImageProj(nn.Module):
  """Identity embedding -> `tokens` x context_dim, LayerNorm (the release's image_proj)."""
  tokens: int
  dim: int
  dtype: Any = None

  @nn.compact
  def __call__(self, embedding):
    x = Dense(self.tokens * self.dim, axes=("channels", "embed"), dtype=self.dtype,
              name="proj")(embedding)
    return layer_norm(self.dtype, "norm")(x.reshape(x.shape[:-1] + (self.tokens, self.dim)))


class AudioProj(nn.Module):
  """(..., window, layers, channels) speech features -> (..., tokens, dim) audio tokens."""
  hidden: int
  tokens: int
  dim: int
  dtype: Any = None

  @nn.compact
  def __call__(self, features):
    x = features.reshape(features.shape[:-3] + (-1,))
    x = nn.relu(Dense(self.hidden, axes=("channels", "mlp"), dtype=self.dtype, name="proj1")(x))
    x = nn.relu(Dense(self.hidden, axes=("mlp", "embed"), dtype=self.dtype, name="proj2")(x))
    x = Dense(self.tokens * self.dim, axes=("embed", "mlp"), dtype=self.dtype, name="proj3")(x)
    return layer_norm(self.dtype, "norm")(x.reshape(x.shape[:-1] + (self.tokens, self.dim)))


def image_proj(config: MemoConfig, dtype=None) -> ImageProj:
  return ImageProj(config.image_tokens, config.context_dim, dtype)


def audio_proj(config: MemoConfig, dtype=None) -> AudioProj:
  return AudioProj(config.audio_hidden, config.audio_tokens, config.audio_dim, dtype)


def reference_outputs(config: MemoConfig, attn1: dict, collected: dict, frames: int,
                      height: int, width: int) -> tuple[dict, dict]:
  """The ReferenceNet's outputs on `frames` = 1 + P frames (latents height x width) ->
  (reference: the reference frame's attn1 input per transformer site, (B, HW, C);
   past: the past frames' features per layer site, (B, P, H, W, C), what the memory reads:
   a transformer layer's first attn1 input, else the resnet output)."""
  sites = {s.name: s for s in layer_sites(config.unet, 1, height, width)}
  reference, past = {}, {}
  for name, f in attn1.items():
    f = f.reshape((-1, frames) + f.shape[1:])
    reference[name] = f[:, 0]
    layer, block = name.rsplit("/", 1)
    if block == "transformer_blocks_0":
      s = sites[layer]
      past[layer] = f[:, 1:].reshape(f.shape[:1] + (frames - 1, s.height, s.width, s.channels))
  for block, hooks in collected.items():   # {block: {collect_i: {"features": (maps,)}}}
    for hook, value in hooks.items():
      past[f"{block}/resnets_{hook.rsplit('_', 1)[1]}"] = value["features"][0][:, 1:]
  return reference, past


class IdentityEncoder(nn.Module):
  """The learned default identity encoder: the reference image -> an `dim` embedding
  (stride-2 3x3 convs with SiLU, global mean, Dense). Replace it with face embeddings
  (model.identity.encoder = "given") when a face recogniser's are available."""
  channels: tuple[int, ...]
  dim: int
  dtype: Any = None

  @nn.compact
  def __call__(self, image):
    x = image.astype(self.dtype or image.dtype)
    for i, c in enumerate(self.channels):
      x = nn.silu(conv(c, 3, self.dtype, f"conv_{i}", stride=2)(x))
    return Dense(self.dim, axes=("channels", "embed"), dtype=self.dtype,
                 name="proj")(x.mean(axis=(1, 2)))
