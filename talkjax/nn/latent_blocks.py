"""Convolutional blocks the SD VAE and UNet share (NHWC; named as in diffusers).

`ResnetBlock2D` takes a time embedding in the UNet and none in the VAE; downsampling is a
stride-2 3x3 conv (the VAE's pads one row and column at the bottom/right only, `padding=0`);
upsampling is nearest-neighbour, then a 3x3 conv. Convs pad like torch (kernel // 2 zeros
on every side) so converted weights see the same windows.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from talkjax.nn.layers import Dense, logical_init

MAP_AXES = ("batch", "height", "width", "embed")


def group_norm(groups: int, eps: float, dtype, name: str) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=groups, epsilon=eps, dtype=dtype, use_fast_variance=False,
                      scale_init=logical_init(nn.initializers.ones, ("embed",)),
                      bias_init=logical_init(nn.initializers.zeros, ("embed",)), name=name)


def conv(features: int, kernel: int, dtype, name: str, stride: int = 1, padding=None,
         out_axis: str = "embed") -> nn.Conv:
  """torch-style conv: `padding` (default kernel // 2) zeros on every side."""
  pad = kernel // 2 if padding is None else padding
  pad = ((pad, pad), (pad, pad)) if isinstance(pad, int) else pad
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=pad,
                 dtype=dtype, name=name,
                 kernel_init=logical_init(nn.initializers.lecun_normal(),
                                          (None, None, "channels", out_axis)),
                 bias_init=logical_init(nn.initializers.zeros, (out_axis,)))


class ResnetBlock2D(nn.Module):
  """norm-silu-conv, + time embedding when given (added, or scale/shift after norm2),
  norm-silu-conv, + (1x1-projected) input, all / output_scale_factor."""
  out_channels: int
  groups: int
  eps: float
  dtype: Any = None
  time_scale_shift: bool = False
  output_scale_factor: float = 1.0

  @nn.compact
  def __call__(self, x, temb=None):
    c = self.out_channels
    norm = lambda name: group_norm(self.groups, self.eps, self.dtype, name)
    h = conv(c, 3, self.dtype, "conv1")(nn.silu(norm("norm1")(x)))
    if temb is None:   # the VAE's blocks: no time embedding
      h = norm("norm2")(h)
    else:
      t = Dense(2 * c if self.time_scale_shift else c, axes=("embed", "channels"),
                dtype=self.dtype, name="time_emb_proj")(nn.silu(temb))[:, None, None, :]
      if self.time_scale_shift:
        scale, shift = jnp.split(t, 2, axis=-1)
        h = norm("norm2")(h) * (1 + scale) + shift
      else:
        h = norm("norm2")(h + t)
    h = conv(c, 3, self.dtype, "conv2")(nn.silu(h))
    if x.shape[-1] != c:
      x = conv(c, 1, self.dtype, "conv_shortcut")(x)
    return nn.with_logical_constraint((x + h) / self.output_scale_factor, MAP_AXES)


class Downsample2D(nn.Module):
  features: int
  padding: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    pad = ((0, 1), (0, 1)) if self.padding == 0 else self.padding
    return conv(self.features, 3, self.dtype, "conv", stride=2, padding=pad)(x)


def upsample_nearest(x, size: tuple[int, int]):
  """Nearest-neighbour resize of NHWC x to `size`: source index floor(i * in / out)."""
  for axis, out in ((1, size[0]), (2, size[1])):
    n = x.shape[axis]
    if out == 2 * n:
      x = jnp.repeat(x, 2, axis=axis)
    elif out != n:
      x = jnp.take(x, jnp.arange(out) * n // out, axis=axis)
  return x


class Upsample2D(nn.Module):
  features: int
  size: tuple[int, int] | None = None   # None = twice the input size
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    size = self.size or (2 * x.shape[1], 2 * x.shape[2])
    return conv(self.features, 3, self.dtype, "conv")(upsample_nearest(x, size))
