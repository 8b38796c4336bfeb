"""Diffusion-transformer parts: timestep embedding and adaLN-Zero blocks (Peebles & Xie).

Conditioning is per token: `cond` has the tokens' shape (B, L, H), so a model can give each
frame its own modulation (IF-MDM's per-frame audio + timestep) or broadcast one vector.
Every modulation projection starts at zero, so each block starts as the identity and the
final layer outputs zeros: the "Zero" of adaLN-Zero.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from talkjax.nn.attention import SelfAttention
from talkjax.nn.layers import Dense


def sinusoidal_embedding(t, dim: int, max_period: float = 10000.0):
  """(B,) timesteps (int or float) -> (B, dim) [cos | sin] features."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedding(nn.Module):
  """Sinusoidal features of t through a 2-layer MLP."""
  hidden: int
  frequency_dim: int = 256
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, t):
    h = sinusoidal_embedding(t, self.frequency_dim)
    h = Dense(self.hidden, axes=(None, "mlp"), dtype=self.dtype, name="fc_in")(h)
    return Dense(self.hidden, axes=("mlp", "embed"), dtype=self.dtype,
                 name="fc_out")(nn.silu(h))


def modulation(cond, count: int, hidden: int, dtype, name: str):
  out = Dense(count * hidden, axes=("embed", "mlp"), dtype=dtype, kernel_init=nn.initializers.zeros,
              name=name)(nn.silu(cond))
  return jnp.split(out, count, axis=-1)


def plain_norm(x):
  return nn.LayerNorm(use_bias=False, use_scale=False, epsilon=1e-6)(x)


class AdaLNZeroBlock(nn.Module):
  """x + gate * attn(modulate(norm x)); x + gate * mlp(modulate(norm x))."""
  heads: int
  mlp_ratio: int = 4
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x, cond, mask=None):
    hidden = x.shape[-1]
    shift1, scale1, gate1, shift2, scale2, gate2 = modulation(cond, 6, hidden, self.dtype,
                                                               "modulation")
    h = plain_norm(x) * (1 + scale1) + shift1
    x = x + gate1 * SelfAttention(self.heads, hidden // self.heads, dtype=self.dtype,
                                  name="attention")(h, mask)
    h = plain_norm(x) * (1 + scale2) + shift2
    h = Dense(hidden * self.mlp_ratio, axes=("embed", "mlp"), dtype=self.dtype, name="mlp_in")(h)
    h = Dense(hidden, axes=("mlp", "embed"), dtype=self.dtype, name="mlp_out")(nn.gelu(h))
    return nn.with_logical_constraint(x + gate2 * h, ("batch", "length", "embed"))


class FinalLayer(nn.Module):
  """Modulated norm, then a zero-initialised projection to the output channels."""
  features: int
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x, cond):
    shift, scale = modulation(cond, 2, x.shape[-1], self.dtype, "modulation")
    h = plain_norm(x) * (1 + scale) + shift
    return Dense(self.features, axes=("embed", None), dtype=self.dtype,
                 kernel_init=nn.initializers.zeros, name="out")(h)


def dit_trunk(x, cond, *, layers: int, heads: int, mlp_ratio: int = 4, dtype=None,
              remat: bool = False, parent_name: str = "blocks"):
  """Runs `layers` AdaLNZeroBlocks; call inside a compact module."""
  block = nn.remat(AdaLNZeroBlock) if remat else AdaLNZeroBlock
  for i in range(layers):
    x = block(heads, mlp_ratio, dtype=dtype, name=f"{parent_name}_{i}")(x, cond)
  return x
