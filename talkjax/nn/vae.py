"""The Stable Diffusion autoencoder (AutoencoderKL) in Flax, for latent diffusion on video.

Latent-diffusion talking heads denoise in the latent space of a pretrained image VAE, so
the VAE has to reproduce the published weights exactly. The module tree mirrors diffusers'
`AutoencoderKL` module names (encoder/down_blocks_0/resnets_1/conv2, ...), which makes the
weight import in talkjax/convert/diffusers_vae.py a mechanical renaming.

Architecture (images NHWC, values in [-1, 1]):
- encoder: conv_in, one down block per entry of `block_out_channels` (`layers_per_block`
  residual blocks, then a stride-2 conv except after the last), a mid block (residual,
  single-head self-attention over all pixels, residual), GroupNorm, SiLU, conv_out to
  2 * latent_channels, then the 1x1 `quant_conv`: the mean and log-variance of a diagonal
  Gaussian (log-variance clipped to [-30, 20]);
- decoder: 1x1 `post_quant_conv`, conv_in, mid block, up blocks in reverse channel order
  (`layers_per_block + 1` residual blocks, then nearest x2 and a conv except after the
  last), GroupNorm, SiLU, conv_out.
Residual blocks are GroupNorm -> SiLU -> conv3x3 twice, with a 1x1 shortcut when the channel
count changes. Every GroupNorm uses eps 1e-6.

Diffusion models see scaled latents: z = (sample - shift_factor) * scaling_factor (0.18215
for SD 1.x/2.x; shift 0 unless the config names one), undone before decoding.
`encode_frames` / `decode_frames` run a long video (T, H, W, C) through one jitted call per
chunk of frames and bring each chunk's result back to the host, so (given host frames) the
device never holds more than one chunk of full-resolution activations or frames.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.errors import TalkjaxError
from talkjax.nn.latent_blocks import (MAP_AXES, Downsample2D, ResnetBlock2D, Upsample2D, conv,
                                      group_norm)
from talkjax.nn.layers import Dense

_EPS = 1e-6



@dataclasses.dataclass(frozen=True)
class VAEConfig:
  """The fields of diffusers' AutoencoderKL config.json that decide shapes and scaling.

  `force_upcast` is informational (diffusers runs such VAEs in float32); `sample_size` is
  the training resolution and does not restrict the input size.
  """
  in_channels: int = 3
  out_channels: int = 3
  block_out_channels: tuple[int, ...] = (64,)
  layers_per_block: int = 1
  latent_channels: int = 4
  norm_num_groups: int = 32
  sample_size: int | tuple[int, ...] = 32
  scaling_factor: float = 0.18215
  shift_factor: float | None = None
  latents_mean: tuple[float, ...] | None = None
  latents_std: tuple[float, ...] | None = None
  use_quant_conv: bool = True
  use_post_quant_conv: bool = True
  mid_block_add_attention: bool = True
  force_upcast: bool = True

  @property
  def downsample_factor(self) -> int:
    """Image pixels per latent pixel along each spatial axis."""
    return 2 ** (len(self.block_out_channels) - 1)

  def validate(self, path=None) -> VAEConfig:
    """Raises TalkjaxError for a config no AutoencoderKL can be built from; returns self."""
    fix = "correct config.json (it must describe a diffusers AutoencoderKL)"
    if not self.block_out_channels or any(int(c) <= 0 for c in self.block_out_channels):
      raise TalkjaxError(f"block_out_channels {self.block_out_channels} must be a non-empty "
                         "list of positive channel counts", path=path, fix=fix)
    bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
    if self.norm_num_groups <= 0 or bad:
      raise TalkjaxError(f"block_out_channels {self.block_out_channels} are not all divisible "
                         f"by norm_num_groups {self.norm_num_groups}", path=path, fix=fix)
    for name in ("in_channels", "out_channels", "latent_channels", "layers_per_block"):
      if int(getattr(self, name)) <= 0:
        raise TalkjaxError(f"{name} is {getattr(self, name)}, it must be positive", path=path,
                           fix=fix)
    if self.scaling_factor == 0:
      raise TalkjaxError("scaling_factor is 0", path=path, fix=fix)
    for name in ("latents_mean", "latents_std"):
      value = getattr(self, name)
      if value is not None and len(value) != self.latent_channels:
        raise TalkjaxError(f"{name} has {len(value)} entries for {self.latent_channels} latent "
                           "channels", path=path, fix=fix)
    return self


def scale_latents(config: VAEConfig, sample):
  """Posterior sample -> the latents a diffusion model sees."""
  if config.latents_mean is not None and config.latents_std is not None:
    mean = jnp.asarray(config.latents_mean, jnp.float32)
    std = jnp.asarray(config.latents_std, jnp.float32)
    return (sample - mean) * config.scaling_factor / std
  return (sample - (config.shift_factor or 0.0)) * config.scaling_factor


def unscale_latents(config: VAEConfig, z):
  """Inverse of `scale_latents`: diffusion latents -> the decoder's input."""
  if config.latents_mean is not None and config.latents_std is not None:
    mean = jnp.asarray(config.latents_mean, jnp.float32)
    std = jnp.asarray(config.latents_std, jnp.float32)
    return z * std / config.scaling_factor + mean
  return z / config.scaling_factor + (config.shift_factor or 0.0)


class SpatialSelfAttention(nn.Module):
  """x + to_out(attention(norm x)) with one head as wide as the channels, over all pixels."""
  groups: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    t = group_norm(self.groups, _EPS, self.dtype, "group_norm")(x).reshape(b, h * w, c)
    proj = lambda name: Dense(c, axes=("embed", "kv"), dtype=self.dtype, name=name)(t)
    q, k, v = (proj(n).reshape(b, h * w, 1, c) for n in ("to_q", "to_k", "to_v"))
    q, k, v = (nn.with_logical_constraint(a, ("batch", "length", "heads", "kv"))
               for a in (q, k, v))
    out = jax.nn.dot_product_attention(q, k, v).reshape(b, h * w, c)
    out = Dense(c, axes=("kv", "embed"), dtype=self.dtype, name="to_out_0")(out)
    return nn.with_logical_constraint(x + out.reshape(b, h, w, c).astype(x.dtype), MAP_AXES)


class UNetMidBlock2D(nn.Module):
  """Residual block, self-attention (unless disabled), residual block."""
  groups: int
  add_attention: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    x = ResnetBlock2D(c, self.groups, _EPS, self.dtype, name="resnets_0")(x)
    if self.add_attention:
      x = SpatialSelfAttention(self.groups, self.dtype, name="attentions_0")(x)
    return ResnetBlock2D(c, self.groups, _EPS, self.dtype, name="resnets_1")(x)


class DownEncoderBlock2D(nn.Module):
  out_channels: int
  num_layers: int
  groups: int
  add_downsample: bool
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    for j in range(self.num_layers):
      x = ResnetBlock2D(self.out_channels, self.groups, _EPS, self.dtype, name=f"resnets_{j}")(x)
    if self.add_downsample:
      x = Downsample2D(self.out_channels, padding=0, dtype=self.dtype, name="downsamplers_0")(x)
    return x


class UpDecoderBlock2D(nn.Module):
  out_channels: int
  num_layers: int
  groups: int
  add_upsample: bool
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    for j in range(self.num_layers):
      x = ResnetBlock2D(self.out_channels, self.groups, _EPS, self.dtype, name=f"resnets_{j}")(x)
    if self.add_upsample:
      x = Upsample2D(self.out_channels, dtype=self.dtype, name="upsamplers_0")(x)
    return x


def _maybe_remat(cls, remat: bool):
  return nn.remat(cls) if remat else cls


class Encoder(nn.Module):
  """Image (B, H, W, in_channels) -> (B, H/f, W/f, 2 * latent_channels) moments."""
  config: VAEConfig
  dtype: Any = None
  remat: bool = False

  @nn.compact
  def __call__(self, x):
    cfg, channels = self.config, self.config.block_out_channels
    x = conv(channels[0], 3, self.dtype, "conv_in")(x)
    down = _maybe_remat(DownEncoderBlock2D, self.remat)
    for i, c in enumerate(channels):
      x = down(c, cfg.layers_per_block, cfg.norm_num_groups, i < len(channels) - 1,
               self.dtype, name=f"down_blocks_{i}")(x)
    x = _maybe_remat(UNetMidBlock2D, self.remat)(
        cfg.norm_num_groups, cfg.mid_block_add_attention, self.dtype, name="mid_block")(x)
    x = nn.silu(group_norm(cfg.norm_num_groups, _EPS, self.dtype, "conv_norm_out")(x))
    return conv(2 * cfg.latent_channels, 3, self.dtype, "conv_out",
                 out_axis="out_channels")(x)


class Decoder(nn.Module):
  """Latent (B, h, w, latent_channels) -> image (B, h*f, w*f, out_channels)."""
  config: VAEConfig
  dtype: Any = None
  remat: bool = False

  @nn.compact
  def __call__(self, z):
    cfg, channels = self.config, tuple(reversed(self.config.block_out_channels))
    x = conv(channels[0], 3, self.dtype, "conv_in")(z)
    x = _maybe_remat(UNetMidBlock2D, self.remat)(
        cfg.norm_num_groups, cfg.mid_block_add_attention, self.dtype, name="mid_block")(x)
    up = _maybe_remat(UpDecoderBlock2D, self.remat)
    for i, c in enumerate(channels):
      x = up(c, cfg.layers_per_block + 1, cfg.norm_num_groups, i < len(channels) - 1,
             self.dtype, name=f"up_blocks_{i}")(x)
    x = nn.silu(group_norm(cfg.norm_num_groups, _EPS, self.dtype, "conv_norm_out")(x))
    return conv(cfg.out_channels, 3, self.dtype, "conv_out",
                 out_axis="out_channels")(x)


class AutoencoderKL(nn.Module):
  """The KL-regularised image autoencoder of latent diffusion.

  `encode(x)` -> (mean, logvar) of the posterior; `decode(sample)` -> image. Both work on
  unscaled posterior samples, as diffusers' do; `encode_frames` / `decode_frames` work on
  the scaled latents a diffusion model sees. Parameters stay float32; `dtype` is the
  compute dtype. `remat` rematerialises each down, mid and up block in the backward pass.
  """
  config: VAEConfig
  dtype: Any = jnp.float32
  remat: bool = False

  def setup(self):
    cfg = self.config
    self.encoder = Encoder(cfg, self.dtype, self.remat)
    self.decoder = Decoder(cfg, self.dtype, self.remat)
    moments = 2 * cfg.latent_channels
    self.quant_conv = (conv(moments, 1, self.dtype, None, out_axis="out_channels")
                       if cfg.use_quant_conv else None)
    self.post_quant_conv = (conv(cfg.latent_channels, 1, self.dtype, None,
                                 out_axis="out_channels")
                            if cfg.use_post_quant_conv else None)

  def encode(self, x):
    """(B, H, W, in_channels) in [-1, 1] -> (mean, logvar), each (B, H/f, W/f, latent)."""
    h = self.encoder(x.astype(self.dtype))
    if self.quant_conv is not None:
      h = self.quant_conv(h)
    mean, logvar = jnp.split(h, 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)

  def decode(self, sample):
    """(B, h, w, latent_channels) posterior sample -> (B, h*f, w*f, out_channels)."""
    sample = sample.astype(self.dtype)
    if self.post_quant_conv is not None:
      sample = self.post_quant_conv(sample)
    return self.decoder(sample)

  def __call__(self, x):
    """Reconstruction from the posterior mean, with the posterior: (image, mean, logvar)."""
    mean, logvar = self.encode(x)
    return self.decode(mean), mean, logvar

  @nn.nowrap
  def encode_frames(self, params, frames, chunk: int = 8, *, sample: bool = False,
                    rng: jax.Array | None = None) -> np.ndarray:
    """Video (T, H, W, in_channels) in [-1, 1] -> scaled latents (T, H/f, W/f, latent).

    `sample=False` takes the posterior mean (mode); `sample=True` draws mean + std * noise
    with noise from `rng` for the whole video, so the result does not depend on `chunk`.
    `params` is the parameter tree (what `load_diffusers_vae` returns, without the
    "params" level). Returns float32 numpy.
    """
    frames = _check_video(frames, self.config.in_channels, "frames", "(T, H, W, C) images")
    chunk = _check_chunk(chunk)
    if sample and rng is None:
      raise TalkjaxError("sample=True needs a random key", fix="pass rng=jax.random.key(...)")
    one = jax.ShapeDtypeStruct((1,) + tuple(frames.shape[1:]), jnp.float32)
    mean = jax.eval_shape(partial(self.apply, method="encode"), {"params": params}, one)[0]
    shape = (frames.shape[0],) + mean.shape[1:]
    # the mode is the draw with zero noise, so both share one compiled function
    noise = (np.asarray(jax.random.normal(rng, shape, jnp.float32)) if sample
             else np.zeros(shape, np.float32))
    return _over_chunks(lambda x, n: _encode_chunk(self, params, x, n), frames, chunk, noise)

  @nn.nowrap
  def decode_frames(self, params, latents, chunk: int = 8) -> np.ndarray:
    """Scaled latents (T, h, w, latent_channels) -> frames (T, h*f, w*f, out_channels),
    float32 numpy (nominally in [-1, 1], not clipped)."""
    latents = _check_video(latents, self.config.latent_channels, "latents",
                           "(T, h, w, latent_channels) latents")
    chunk = _check_chunk(chunk)
    return _over_chunks(lambda z, _: _decode_chunk(self, params, z), latents, chunk, None)

  @nn.nowrap
  def boxed_params(self, params):
    """`params` with every leaf boxed in its logical axis names, as `init` boxes them, so
    `parallel.shard_init(model.boxed_params, mesh, rules, params)` lays loaded weights out
    on a mesh."""
    size = 2 * self.config.downsample_factor
    image = jax.ShapeDtypeStruct((1, size, size, self.config.in_channels), jnp.float32)
    boxes = jax.eval_shape(self.init, jax.random.key(0), image)["params"]
    is_box = lambda b: isinstance(b, nn.LogicallyPartitioned)
    return jax.tree.map(lambda box, value: box.replace_boxed(value), boxes, params,
                        is_leaf=is_box)


def _check_video(x, channels: int, what: str, layout: str):
  if not hasattr(x, "shape"):
    x = np.asarray(x, np.float32)
  if x.ndim != 4 or x.shape[-1] != channels:
    raise TalkjaxError(f"{what} have shape {tuple(x.shape)}, expected {layout} with "
                       f"{channels} channels", fix=f"pass {what} as one video, channels last")
  if x.shape[0] == 0:
    raise TalkjaxError(f"no {what} to process", fix=f"pass at least one of the {what}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TalkjaxError(f"{what} have dtype {x.dtype}, the VAE takes floats",
                       fix="pass float values (images in [-1, 1], e.g. uint8 / 127.5 - 1)")
  return x


def _check_chunk(chunk) -> int:
  if int(chunk) < 1:
    raise TalkjaxError(f"chunk is {chunk}, it must be at least 1",
                       fix="pass the number of frames to process per call")
  return int(chunk)


def _over_chunks(fn, x, chunk: int, noise):
  """fn(chunk of x, chunk of noise) for consecutive chunks, results on the host.

  Every call gets exactly `min(chunk, T)` frames (the last chunk is padded by repeating
  its final frame), so one compilation serves the whole video."""
  total = x.shape[0]
  chunk = min(chunk, total)
  outs = []
  for start in range(0, total, chunk):
    part = x[start:start + chunk]
    extra = noise[start:start + chunk] if noise is not None else None
    real = part.shape[0]
    if real < chunk:
      part = _pad_frames(part, chunk)
      extra = _pad_frames(extra, chunk) if extra is not None else None
    outs.append(np.asarray(jax.device_get(fn(part, extra)))[:real])
  return np.concatenate(outs, axis=0)


def _pad_frames(x, size: int):
  xp = jnp if isinstance(x, jax.Array) else np
  return xp.concatenate([x, xp.repeat(x[-1:], size - x.shape[0], axis=0)])


@partial(jax.jit, static_argnums=0)
def _encode_chunk(model: AutoencoderKL, params, x, noise):
  mean, logvar = model.apply({"params": params}, x, method="encode")
  mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
  return scale_latents(model.config, mean + jnp.exp(0.5 * logvar) * noise)


@partial(jax.jit, static_argnums=0)
def _decode_chunk(model: AutoencoderKL, params, z):
  sample = unscale_latents(model.config, jnp.asarray(z, jnp.float32))
  return model.apply({"params": params}, sample, method="decode").astype(jnp.float32)


def expected_shapes(config: VAEConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Flax path -> shape of every parameter of `AutoencoderKL(config)`."""
  size = 2 * config.downsample_factor
  shapes = jax.eval_shape(AutoencoderKL(config).init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, size, size, config.in_channels), jnp.float32))
  flat = jax.tree_util.tree_flatten_with_path(nn.meta.unbox(shapes)["params"])[0]
  return {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def param_count(config: VAEConfig) -> int:
  """Number of parameters of `AutoencoderKL(config)` (from shapes only)."""
  return sum(math.prod(shape) for shape in expected_shapes(config).values())

