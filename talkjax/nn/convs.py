"""Convolutional blocks for image encoders, decoders and discriminators (NHWC)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from talkjax.nn.layers import logical_init


def conv(features: int, kernel: int = 3, stride: int = 1, name: str | None = None,
         dtype=None, zero_init: bool = False, out_axis: str = "embed") -> nn.Conv:
  """A 'SAME' conv whose output channels carry the logical name `out_axis`: "embed"
  (FSDP-sharded) for feature maps, "out_channels" (replicated) for the few channels of an
  output head (RGB, flow + mask), which no mesh axis could split."""
  init = nn.initializers.zeros if zero_init else nn.initializers.lecun_normal()
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME",
                 dtype=dtype, name=name,
                 kernel_init=logical_init(init, (None, None, "channels", out_axis)),
                 bias_init=logical_init(nn.initializers.zeros, (out_axis,)))


class ResBlock(nn.Module):
  """Pre-activation residual block; `resample` = 'down' (stride 2), 'up' (x2) or None."""
  features: int
  resample: str | None = None
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    if self.resample == "up":
      b, h, w, c = x.shape
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    stride = 2 if self.resample == "down" else 1
    h = conv(self.features, 3, stride, dtype=self.dtype, name="conv1")(nn.silu(x))
    h = conv(self.features, 3, 1, dtype=self.dtype, name="conv2")(nn.silu(h))
    skip = x
    if stride == 2:
      skip = nn.avg_pool(skip, (2, 2), (2, 2))
    if skip.shape[-1] != self.features:
      skip = conv(self.features, 1, dtype=self.dtype, name="skip")(skip)
    return (skip + h) / jnp.sqrt(2.0)
