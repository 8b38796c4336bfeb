"""The Stable Diffusion UNet (diffusers' `UNet2DConditionModel`: SD 1.x, 2.x) in Flax, NHWC.

It is the latent-diffusion backbone that reference-net video families (MEMO, Animate
Anyone, AnimateDiff) build on, so one module covers their three uses:

- the plain 2D model: `(sample (B, H, W, C), timesteps (B,), encoder_hidden_states
  (B, L, D))` -> the noise prediction (B, H, W, out_channels);
- the *reference* variant, `return_features=True`: also returns the input of every
  transformer block's self-attention (attn1, i.e. after norm1), a dict from the block's
  path ("down_blocks_0/attentions_0/transformer_blocks_0") to (B, H*W, C) at that
  block's resolution ((B*F, H*W, C) for a video sample); `feature_sites` gives the names
  in forward order (a jitted dict comes back key-sorted);
- the *video* variant: a (B, F, H, W, C) sample runs the same 2D blocks with the frames
  folded into the batch (timesteps and a (B, L, D) context repeat per frame; a
  (B, F, L, D) context gives each frame its own), and the `hooks` a family supplies run
  inside the blocks: at every attn1 (reference attention) and after every layer (audio
  cross-attention, temporal modules over the frame axis), and once after conv_in (a
  condition added at the input). See `Hook` for the contract.

A family adds its modules by name; their parameters sit beside the UNet's own, which stay
convertible from diffusers checkpoints (talkjax/convert/diffusers_unet.py):

    class ReferenceAttention(nn.Module):   # attn1 also attends to the reference features
      site: HookSite
      def __call__(self, x, inputs):       # x: (B*F, H*W, C)
        ref = jnp.repeat(inputs["reference"][self.site.name], self.site.frames, axis=0)
        return jnp.concatenate([x, ref], axis=1)

    class FrameMix(nn.Module):             # zero-initialised residual across the frames
      site: HookSite
      @nn.compact
      def __call__(self, x, inputs):       # x: (B, F, H, W, C)
        mean = jnp.broadcast_to(x.mean(axis=1, keepdims=True), x.shape)
        return x + Dense(self.site.channels, axes=("channels", "embed"),
                         kernel_init=nn.initializers.zeros)(mean)

    reference_net = UNet2DConditionModel(config)
    _, features = reference_net.apply(ref_params, ref_latent, t0, text, return_features=True)
    denoiser = UNet2DConditionModel(config, hooks={
        "reference": Hook("attn1", ReferenceAttention),
        "motion_modules": Hook("layer", FrameMix)})
    noise = denoiser.apply(params, video_latents, t, text, hook_inputs={"reference": features})

`attention_impl` picks how `jax.nn.dot_product_attention` runs: None (jax's choice,
currently its XLA path), "xla", "cudnn" (the fused flash kernel on NVIDIA GPUs, for
bfloat16/float16 compute), or "reference" (plain einsums, the path the others are checked
against). `dtype` is the
compute dtype (parameters stay float32); `remat=True` rematerialises each block in the
backward pass.

Naming note: as in diffusers, `attention_head_dim` is the number of attention heads per
block (SD 1.5: 8 heads of 40/80/160 channels), a historical misnomer kept so configs read
the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.errors import ConfigError
from talkjax.nn.layers import Dense
from talkjax.nn.unet_blocks import (
  MAP_AXES,
  BlockSpec,
  Hook,
  HookSite,
  UNetBlock,
  check_hooks,
  conv,
  group_norm,
  run_hooks,
  timestep_features,
)

__all__ = [
  "DOWN_BLOCK_TYPES",
  "MID_BLOCK_TYPES",
  "UP_BLOCK_TYPES",
  "Hook",
  "HookSite",
  "UNet2DConditionModel",
  "UNetConfig",
  "example_inputs",
  "feature_sites",
  "layer_sites",
  "param_shapes",
]

DOWN_BLOCK_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_BLOCK_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")
MID_BLOCK_TYPES = ("UNetMidBlock2DCrossAttn", None)


def _per_block(value, n: int, field: str) -> tuple:
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return (value,) * n
  value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
  if len(value) != n or not all(isinstance(v, (int, float)) for v in value):
    raise ConfigError(f"UNet config {field}={list(value)} needs one number per block ({n})",
                      fix=f"give {field} as one number or {n} numbers")
  return value


@dataclasses.dataclass(frozen=True)
class UNetConfig:
  """The fields of diffusers' UNet2DConditionModel config.json this model implements
  (defaults: Stable Diffusion 1.5). Per-block fields may be one value or one per block."""
  in_channels: int = 4
  out_channels: int = 4
  block_out_channels: Sequence[int] = (320, 640, 1280, 1280)
  down_block_types: Sequence[str] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
  mid_block_type: str | None = "UNetMidBlock2DCrossAttn"
  up_block_types: Sequence[str] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
  layers_per_block: int | Sequence[int] = 2
  transformer_layers_per_block: int | Sequence[int] = 1
  attention_head_dim: int | Sequence[int] = 8      # heads per block (diffusers' naming)
  cross_attention_dim: int | Sequence[int] = 768
  norm_num_groups: int = 32
  norm_eps: float = 1e-5
  use_linear_projection: bool = False     # only the checkpoint layout of proj_in/proj_out
  flip_sin_to_cos: bool = True
  freq_shift: float = 0
  downsample_padding: int = 1
  mid_block_scale_factor: float = 1.0
  center_input_sample: bool = False
  resnet_time_scale_shift: str = "default"    # "default" (add) | "scale_shift"
  time_embedding_dim: int | None = None       # None = 4 * block_out_channels[0]
  upcast_attention: bool = False              # attention in float32 under a low dtype
  sample_size: int | tuple[int, int] | None = None   # informational: trained latent size

  def __post_init__(self):
    n = len(self.block_out_channels)
    set_ = lambda k, v: object.__setattr__(self, k, v)
    for k in ("block_out_channels", "down_block_types", "up_block_types"):
      set_(k, tuple(getattr(self, k)))
    if isinstance(self.sample_size, list):
      set_("sample_size", tuple(self.sample_size))
    for k in ("layers_per_block", "transformer_layers_per_block", "attention_head_dim",
              "cross_attention_dim"):
      set_(k, tuple(int(v) for v in _per_block(getattr(self, k), n, k)))
    if n == 0 or len(self.down_block_types) != n or len(self.up_block_types) != n:
      raise ConfigError(f"UNet config has {n} block_out_channels, "
                        f"{len(self.down_block_types)} down and {len(self.up_block_types)} "
                        "up block types", fix="give one of each per resolution")
    for types, known in ((self.down_block_types, DOWN_BLOCK_TYPES),
                         (self.up_block_types, UP_BLOCK_TYPES), ((self.mid_block_type,),
                                                                 MID_BLOCK_TYPES)):
      bad = [t for t in types if t not in known]
      if bad:
        raise ConfigError(f"UNet block type(s) {bad} are not supported",
                          fix=f"supported: {[k for k in known if k]}")
    if self.resnet_time_scale_shift not in ("default", "scale_shift"):
      raise ConfigError(f"resnet_time_scale_shift={self.resnet_time_scale_shift!r} is not "
                        "supported", fix="use 'default' or 'scale_shift'")
    up_types = tuple(reversed(self.up_block_types))
    for i, c in enumerate(self.block_out_channels):
      attends = (self.down_block_types[i] == DOWN_BLOCK_TYPES[0]
                 or up_types[i] == UP_BLOCK_TYPES[0]
                 or (i == n - 1 and self.mid_block_type is not None))
      heads = self.attention_head_dim[i] if attends else 1
      if c % self.norm_num_groups or c % heads:
        raise ConfigError(f"block {i} has {c} channels, not divisible by norm_num_groups="
                          f"{self.norm_num_groups} and its {heads} attention heads",
                          fix="pick channel counts divisible by both")

  @property
  def time_embed_dim(self) -> int:
    return self.time_embedding_dim or 4 * self.block_out_channels[0]

  def down_specs(self) -> list[BlockSpec]:
    c, n = self.block_out_channels, len(self.block_out_channels)
    return [BlockSpec(c[i], self.layers_per_block[i], t == "CrossAttnDownBlock2D",
                      self.attention_head_dim[i], self.transformer_layers_per_block[i],
                      i < n - 1, self.norm_num_groups, self.norm_eps, self._shift,
                      downsample_padding=self.downsample_padding)
            for i, t in enumerate(self.down_block_types)]

  def mid_spec(self) -> BlockSpec | None:
    if self.mid_block_type is None:
      return None
    return BlockSpec(self.block_out_channels[-1], 1, True, self.attention_head_dim[-1],
                     self.transformer_layers_per_block[-1], False, self.norm_num_groups,
                     self.norm_eps, self._shift, self.mid_block_scale_factor)

  def up_specs(self) -> list[BlockSpec]:
    rev = lambda v: tuple(reversed(v))
    c, n = rev(self.block_out_channels), len(self.block_out_channels)
    return [BlockSpec(c[i], rev(self.layers_per_block)[i] + 1, t == "CrossAttnUpBlock2D",
                      rev(self.attention_head_dim)[i], rev(self.transformer_layers_per_block)[i],
                      i < n - 1, self.norm_num_groups, self.norm_eps, self._shift)
            for i, t in enumerate(self.up_block_types)]

  @property
  def _shift(self) -> bool:
    return self.resnet_time_scale_shift == "scale_shift"


def feature_sites(config: UNetConfig) -> list[str]:
  """The reference features' names (every transformer block's path), in forward order."""
  names = []
  blocks = [(f"down_blocks_{i}", s) for i, s in enumerate(config.down_specs())]
  if config.mid_block_type is not None:
    blocks.append(("mid_block", config.mid_spec()))
  blocks += [(f"up_blocks_{i}", s) for i, s in enumerate(config.up_specs())]
  for block, spec in blocks:
    if spec.attention:
      names += [f"{block}/attentions_{i}/transformer_blocks_{j}"
                for i in range(spec.layers) for j in range(spec.transformer_layers)]
  return names


def layer_sites(config: UNetConfig, frames: int, height: int, width: int) -> list[HookSite]:
  """Every "layer" hook site, in forward order, for a latent of height x width: a family
  that keeps per-layer state (MEMO's memory) lays it out from this list."""
  sizes = [(height, width)]
  for _ in config.block_out_channels[1:]:   # stride-2 3x3 convs, padding 1: ceil(h / 2)
    sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))
  sites = []
  def add(block, spec, size):
    what = "attentions" if spec.attention else "resnets"
    sites.extend(HookSite(f"{block}/{what}_{i}", "layer", frames, *size, spec.out_channels)
                 for i in range(spec.layers))
  for i, spec in enumerate(config.down_specs()):
    add(f"down_blocks_{i}", spec, sizes[i])
  if config.mid_block_type is not None:
    add("mid_block", config.mid_spec(), sizes[-1])
  for i, spec in enumerate(config.up_specs()):
    add(f"up_blocks_{i}", spec, sizes[-1 - i])
  return sites


class TimestepEmbedding(nn.Module):
  dim: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    h = Dense(self.dim, axes=("channels", "mlp"), dtype=self.dtype, name="linear_1")(x)
    return Dense(self.dim, axes=("mlp", "embed"), dtype=self.dtype, name="linear_2")(nn.silu(h))


class UNet2DConditionModel(nn.Module):
  """diffusers' UNet2DConditionModel, plus the reference and video variants (module doc)."""
  config: UNetConfig
  dtype: Any = jnp.float32
  remat: bool = False
  attention_impl: str | None = None
  hooks: Mapping[str, Hook] | None = None

  @nn.compact
  def __call__(self, sample, timesteps, encoder_hidden_states, hook_inputs=None,
               return_features: bool = False):
    cfg, dtype = self.config, jnp.dtype(self.dtype)
    check_hooks(self.hooks)
    video = sample.ndim == 5
    if sample.ndim not in (4, 5):
      raise ConfigError(f"UNet sample of shape {sample.shape} is neither (B, H, W, C) nor "
                        "(B, F, H, W, C)", fix="pass NHWC latents, or frames on axis 1")
    b, frames = sample.shape[0], (sample.shape[1] if video else 1)
    x = sample.reshape((b * frames,) + sample.shape[-3:])
    t = jnp.broadcast_to(jnp.asarray(timesteps), (b,))
    t = jnp.repeat(t, frames) if video else t
    context = encoder_hidden_states
    if video and context.ndim == 4:
      if context.shape[:2] != (b, frames):
        raise ConfigError(f"per-frame encoder_hidden_states {context.shape} do not match the "
                          f"sample's (batch, frames) = {(b, frames)}",
                          fix="pass (B, L, D) for all frames or (B, F, L, D), one per frame")
      context = context.reshape((b * frames,) + context.shape[2:])
    elif video:
      context = jnp.repeat(context, frames, axis=0)
    context = context.astype(dtype)

    if cfg.center_input_sample:
      x = 2 * x - 1.0
    temb = timestep_features(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)
    temb = TimestepEmbedding(cfg.time_embed_dim, dtype, name="time_embedding")(temb.astype(dtype))
    x = conv(cfg.block_out_channels[0], 3, dtype, "conv_in")(x.astype(dtype))
    site = HookSite("conv_in", "input", frames, *x.shape[1:])
    x, hook_inputs = run_hooks(self.hooks, site, x.reshape((b, frames) + x.shape[1:]),
                               hook_inputs)
    x = nn.with_logical_constraint(x.reshape((b * frames,) + x.shape[2:]), MAP_AXES)

    block_cls = nn.remat(UNetBlock) if self.remat else UNetBlock
    common = {"frames": frames, "dtype": dtype, "implementation": self.attention_impl,
              "upcast": cfg.upcast_attention, "hooks": self.hooks, "collect": return_features}
    feats, skips = {}, [x]
    for i, spec in enumerate(cfg.down_specs()):
      x, out, f, hook_inputs = block_cls("down", spec, f"down_blocks_{i}",
                                         name=f"down_blocks_{i}",
                                         **common)(x, temb, context, (), hook_inputs)
      skips += out
      feats.update(f)
    if cfg.mid_block_type is not None:
      x, _, f, hook_inputs = block_cls("mid", cfg.mid_spec(), "mid_block", name="mid_block",
                                       **common)(x, temb, context, (), hook_inputs)
      feats.update(f)
    for i, spec in enumerate(cfg.up_specs()):
      res, skips = tuple(skips[-spec.layers:]), skips[:-spec.layers]
      size = tuple(skips[-1].shape[1:3]) if spec.resample else None
      x, _, f, hook_inputs = block_cls("up", spec, f"up_blocks_{i}", upsample_size=size,
                                       name=f"up_blocks_{i}",
                                       **common)(x, temb, context, res, hook_inputs)
      feats.update(f)

    x = nn.silu(group_norm(cfg.norm_num_groups, cfg.norm_eps, dtype, "conv_norm_out")(x))
    x = conv(cfg.out_channels, 3, dtype, "conv_out", out_axis="out_channels")(x)
    if video:
      x = x.reshape((b, frames) + x.shape[1:])
    return (x, feats) if return_features else x


def example_inputs(config: UNetConfig, batch: int = 1, size: int | None = None):
  """Zeros of the shapes the model takes, for init and jax.eval_shape."""
  size = size or 2 ** (len(config.block_out_channels) - 1)
  return (jnp.zeros((batch, size, size, config.in_channels), jnp.float32),
          jnp.zeros((batch,), jnp.float32),
          jnp.zeros((batch, 1, config.cross_attention_dim[0]), jnp.float32))


def param_shapes(config: UNetConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Flat {Flax path: shape} of the plain model's parameters (no memory used)."""
  model = UNet2DConditionModel(config)
  abstract = jax.eval_shape(lambda: nn.meta.unbox(
      model.init(jax.random.PRNGKey(0), *example_inputs(config))["params"]))
  flat = jax.tree_util.tree_flatten_with_path(abstract)[0]
  return {tuple(k.key for k in path): tuple(v.shape) for path, v in flat}
