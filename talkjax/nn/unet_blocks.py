"""The blocks of the Stable Diffusion UNet (NHWC), and the hook points inside them.

Every submodule is named like its counterpart in diffusers' `UNet2DConditionModel`
("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q" is
down_blocks_0/attentions_0/transformer_blocks_0/attn1/to_q here), so a diffusers state dict
converts by name (talkjax/convert/diffusers_unet.py). Layouts differ in three places, each
a reshape: attention projections keep heads as their own axis, (embed, heads, kv) and
(heads, kv, embed); the GEGLU projection is (embed, 2, mlp) (value half, gate half); and
`proj_in`/`proj_out` are always dense layers (diffusers' 1x1-conv variant computes the same).

Hooks are extra modules a model family runs inside these blocks (see `Hook`): reference
attention at every `attn1`, audio or temporal modules after every layer. The blocks only
know where a hook runs and what it is given; what it does belongs to the family.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.errors import TalkjaxError
from talkjax.nn.latent_blocks import (MAP_AXES, Downsample2D, ResnetBlock2D, Upsample2D,  # noqa: F401
                                      conv, group_norm, upsample_nearest)
from talkjax.nn.layers import Dense, logical_init

# None, "xla", "cudnn": jax.nn.dot_product_attention(implementation=...); "reference": einsums.
ATTENTION_IMPLEMENTATIONS = (None, "xla", "cudnn", "reference")
HOOK_POINTS = ("input", "attn1", "layer")
TOKEN_AXES = ("batch", "length", "embed")
HEAD_AXES = ("batch", "length", "heads", "kv")


@dataclasses.dataclass(frozen=True)
class HookSite:
  """Where a hook runs. `name` is "conv_in" for point "input", else the Flax path of the
  layer it follows (point "layer":
  "down_blocks_0/attentions_0", "down_blocks_1/resnets_0", "mid_block/attentions_0") or of
  the transformer block whose attn1 it feeds (point "attn1":
  "down_blocks_0/attentions_0/transformer_blocks_0")."""
  name: str
  point: str
  frames: int
  height: int
  width: int
  channels: int


@dataclasses.dataclass(frozen=True)
class Hook:
  """An extra module run at every site of one hook point whose name matches `where`.

  `make(site, name=...)` builds it (a Module class taking the site as its first field
  works as is); it is then called as `module(x, hook_inputs)`, `hook_inputs` being what
  the UNet call was given:
  - point "attn1": x is the attn1 input (batch*frames, height*width, channels); the
    module returns the tokens attn1 takes keys and values from (queries stay x), e.g.
    x with reference features appended along axis 1. Returning x changes nothing.
  - point "input": x is conv_in's output (batch, frames, height, width, channels), before
    the first block; the module returns the same shape (e.g. x plus a condition's
    features, SD-inpainting-style conditioning without widening conv_in).
  - point "layer": x is a layer's output (batch, frames, height, width, channels), frames
    being 1 for a 4-D sample; the module returns the same shape, or (x, updates): a dict
    whose entries replace those of `hook_inputs` for every hook after it in forward order
    (a stream carried from module to module, such as MEMO's audio tokens). A layer is a
    resnet and its transformer where the block has transformers (then the hook follows
    the transformer), else the resnet.
  Parameters live beside the site: <hook name> at the UNet's top for "input",
  .../transformer_blocks_0/<hook name> for "attn1",
  <block>/<hook name>_<layer index> for "layer" (AnimateDiff's motion_modules_0 layout).
  """
  point: str
  make: Callable[..., nn.Module]
  where: str = ""    # regular expression searched in the site name; "" = every site

  def applies(self, site: HookSite) -> bool:
    return self.point == site.point and re.search(self.where, site.name) is not None


def check_hooks(hooks: Mapping[str, Hook] | None) -> None:
  for name, hook in (hooks or {}).items():
    if not isinstance(hook, Hook) or hook.point not in HOOK_POINTS:
      raise TalkjaxError(f"UNet hook {name!r} is not a Hook at one of {HOOK_POINTS}",
                         fix="pass hooks={'name': Hook(point, factory)}, point 'input', "
                             "'attn1' or 'layer'")
    if not name.isidentifier() or name in _RESERVED or re.fullmatch(r".*_\d+", name):
      raise TalkjaxError(f"UNet hook name {name!r} would clash with the UNet's own modules",
                         fix="use a plain identifier such as 'reference' or 'motion_modules'")


_RESERVED = {"attn1", "attn2", "norm1", "norm2", "norm3", "ff", "norm", "proj_in", "proj_out",
             "resnets", "attentions", "downsamplers", "upsamplers", "conv", "time_embedding"}


def run_hooks(hooks, site: HookSite, x, inputs, suffix: str = ""):
  """Applies the matching hooks in order; call inside a compact module (their parent).
  Returns (x, the hook inputs with the updates "layer" hooks returned)."""
  for name, hook in (hooks or {}).items():
    if hook.applies(site):
      out = hook.make(site, name=name + suffix)(x, inputs)
      if isinstance(out, tuple) and site.point == "layer":
        x, updates = out
        inputs = {**(inputs or {}), **updates}
      else:
        x = out
  return x, inputs


def attention(q, k, v, implementation: str | None = None):
  """softmax(q k^T / sqrt(head_dim)) v for (batch, length, heads, head_dim) arrays."""
  if implementation not in ATTENTION_IMPLEMENTATIONS:
    raise TalkjaxError(f"attention implementation {implementation!r} is unknown",
                       fix=f"use one of {ATTENTION_IMPLEMENTATIONS}")
  if implementation == "reference":
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits * q.shape[-1] ** -0.5, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)
  return jax.nn.dot_product_attention(q, k, v, implementation=implementation)


def timestep_features(t, dim: int, flip_sin_to_cos: bool, freq_shift: float,
                      max_period: float = 10000.0):
  """(B,) timesteps -> (B, dim): sin/cos at frequencies exp(-ln(P) i / (dim/2 - shift))."""
  half = dim // 2
  freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half, dtype=jnp.float32)
                  / (half - freq_shift))
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  sin, cos = jnp.sin(args), jnp.cos(args)
  out = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
  return jnp.pad(out, ((0, 0), (0, dim % 2)))


def layer_norm(dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=1e-5, dtype=dtype, use_fast_variance=False,
                      scale_init=logical_init(nn.initializers.ones, ("embed",)),
                      bias_init=logical_init(nn.initializers.zeros, ("embed",)), name=name)


class Attention(nn.Module):
  """Multi-head attention of x over `context` (x itself for self-attention)."""
  heads: int
  head_dim: int
  dtype: Any = None
  implementation: str | None = None
  upcast: bool = False

  @nn.compact
  def __call__(self, x, context):
    proj = lambda name, t: nn.with_logical_constraint(
        Dense((self.heads, self.head_dim), axes=("embed", "heads", "kv"), use_bias=False,
              dtype=self.dtype, name=name)(t), HEAD_AXES)
    q, k, v = proj("to_q", x), proj("to_k", context), proj("to_v", context)
    if self.upcast:
      q, k, v = (t.astype(jnp.float32) for t in (q, k, v))
    out = attention(q, k, v, self.implementation).astype(x.dtype if self.dtype is None
                                                         else self.dtype)
    out = nn.with_logical_constraint(out, HEAD_AXES)
    return Dense(x.shape[-1], axes=("heads", "kv", "embed"), dtype=self.dtype,
                 name="to_out_0")(out)


class GEGLU(nn.Module):
  """value * gelu(gate), both halves from one (embed, 2, mlp) projection."""
  inner: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    h = Dense((2, self.inner), axes=("embed", None, "mlp"), dtype=self.dtype, name="proj")(x)
    h = h[..., 0, :] * nn.gelu(h[..., 1, :], approximate=False)
    return nn.with_logical_constraint(h, ("batch", "length", "mlp"))


class FeedForward(nn.Module):
  mult: int = 4
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    h = GEGLU(x.shape[-1] * self.mult, dtype=self.dtype, name="net_0")(x)
    return Dense(x.shape[-1], axes=("mlp", "embed"), dtype=self.dtype, name="net_2")(h)


class BasicTransformerBlock(nn.Module):
  """Pre-LN self-attention (with the "attn1" hooks), cross-attention, GEGLU feed-forward.
  Returns (tokens, the attn1 input or None)."""
  heads: int
  head_dim: int
  site: HookSite
  dtype: Any = None
  implementation: str | None = None
  upcast: bool = False
  hooks: Mapping[str, Hook] | None = None
  collect: bool = False

  @nn.compact
  def __call__(self, x, context, inputs=None):
    attn = lambda name: Attention(self.heads, self.head_dim, self.dtype, self.implementation,
                                  self.upcast, name=name)
    h = layer_norm(self.dtype, "norm1")(x)
    kv, _ = run_hooks(self.hooks, self.site, h, inputs)
    x = nn.with_logical_constraint(x + attn("attn1")(h, kv), TOKEN_AXES)
    x = x + attn("attn2")(layer_norm(self.dtype, "norm2")(x), context)
    x = x + FeedForward(dtype=self.dtype, name="ff")(layer_norm(self.dtype, "norm3")(x))
    return nn.with_logical_constraint(x, TOKEN_AXES), (h if self.collect else None)


class Transformer2DModel(nn.Module):
  """GroupNorm, proj_in, transformer blocks over the H*W tokens, proj_out, residual.
  Returns (feature map, {transformer block site name: attn1 input})."""
  heads: int
  layers: int
  groups: int
  site: str
  frames: int = 1
  dtype: Any = None
  implementation: str | None = None
  upcast: bool = False
  hooks: Mapping[str, Hook] | None = None
  collect: bool = False

  @nn.compact
  def __call__(self, x, context, inputs=None):
    n, height, width, c = x.shape
    h = group_norm(self.groups, 1e-6, self.dtype, "norm")(x).reshape(n, height * width, c)
    h = Dense(c, axes=("channels", "embed"), dtype=self.dtype, name="proj_in")(h)
    feats = {}
    for j in range(self.layers):
      site = HookSite(f"{self.site}/transformer_blocks_{j}", "attn1", self.frames, height,
                      width, c)
      h, f = BasicTransformerBlock(self.heads, c // self.heads, site, self.dtype,
                                   self.implementation, self.upcast, self.hooks, self.collect,
                                   name=f"transformer_blocks_{j}")(h, context, inputs)
      if self.collect:
        feats[site.name] = f
    h = Dense(c, axes=("embed", "channels"), dtype=self.dtype, name="proj_out")(h)
    return nn.with_logical_constraint(h.reshape(x.shape) + x, MAP_AXES), feats


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """What one down/mid/up block needs to know, resolved from the UNet config."""
  out_channels: int
  layers: int
  attention: bool
  heads: int
  transformer_layers: int
  resample: bool           # downsample after a down block, upsample after an up block
  groups: int
  eps: float
  time_scale_shift: bool = False
  output_scale_factor: float = 1.0
  downsample_padding: int = 1


class UNetBlock(nn.Module):
  """One of diffusers' CrossAttnDownBlock2D / DownBlock2D ("down"), UNetMidBlock2DCrossAttn
  ("mid"), UpBlock2D / CrossAttnUpBlock2D ("up"), with the "layer" hooks after each layer.

  Called as (x, temb, context, skips, inputs) on frames folded into the batch; returns
  (x, skip outputs (down blocks; else ()), {site name: attn1 input}, the hook inputs as
  the block's "layer" hooks left them).
  """
  kind: str
  spec: BlockSpec
  site: str
  frames: int = 1
  upsample_size: tuple[int, int] | None = None
  dtype: Any = None
  implementation: str | None = None
  upcast: bool = False
  hooks: Mapping[str, Hook] | None = None
  collect: bool = False

  def _transformer(self, i, x, context, inputs, feats):
    s = self.spec
    x, f = Transformer2DModel(s.heads, s.transformer_layers, s.groups, f"{self.site}/"
                              f"attentions_{i}", self.frames, self.dtype, self.implementation,
                              self.upcast, self.hooks, self.collect,
                              name=f"attentions_{i}")(x, context, inputs)
    feats.update(f)
    return x

  def _layer_hooks(self, i, what, x, inputs):
    if not self.hooks:
      return x, inputs
    n, height, width, c = x.shape
    site = HookSite(f"{self.site}/{what}_{i}", "layer", self.frames, height, width, c)
    video = x.reshape(n // self.frames, self.frames, height, width, c)
    video, inputs = run_hooks(self.hooks, site, video, inputs, suffix=f"_{i}")
    return video.reshape(x.shape), inputs

  @nn.compact
  def __call__(self, x, temb, context, skips=(), inputs=None):
    s = self.spec
    resnet = lambda i: ResnetBlock2D(s.out_channels, s.groups, s.eps, self.dtype,
                                     s.time_scale_shift, s.output_scale_factor,
                                     name=f"resnets_{i}")
    feats, outputs = {}, []
    if self.kind == "mid":
      x = resnet(0)(x, temb)
      x = self._transformer(0, x, context, inputs, feats)
      x, inputs = self._layer_hooks(0, "attentions", x, inputs)
      return resnet(1)(x, temb), (), feats, inputs
    skips = list(skips)
    for i in range(s.layers):
      if self.kind == "up":
        x = jnp.concatenate([x, skips.pop()], axis=-1)
      x = resnet(i)(x, temb)
      if s.attention:
        x = self._transformer(i, x, context, inputs, feats)
      x, inputs = self._layer_hooks(i, "attentions" if s.attention else "resnets", x, inputs)
      outputs.append(x)
    if s.resample and self.kind == "down":
      x = Downsample2D(s.out_channels, s.downsample_padding, self.dtype,
                       name="downsamplers_0")(x)
      outputs.append(x)
    elif s.resample:
      x = Upsample2D(s.out_channels, self.upsample_size, self.dtype, name="upsamplers_0")(x)
    return x, (tuple(outputs) if self.kind == "down" else ()), feats, inputs
