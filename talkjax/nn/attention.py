"""Attention blocks with logically named parameters and activations."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.nn.layers import Dense


class SelfAttention(nn.Module):
  """Multi-head softmax self-attention over the `length` axis of (batch, length, embed)."""
  heads: int
  head_dim: int
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x, mask=None):
    embed = x.shape[-1]
    proj = lambda name: Dense((self.heads, self.head_dim), axes=("embed", "heads", "kv"),
                              dtype=self.dtype, name=name)(x)
    q, k, v = proj("to_q"), proj("to_k"), proj("to_v")
    q, k, v = (nn.with_logical_constraint(t, ("batch", "length", "heads", "kv")) for t in (q, k, v))
    out = jax.nn.dot_product_attention(q, k, v, mask=mask)
    out = nn.with_logical_constraint(out, ("batch", "length", "heads", "kv"))
    return Dense(embed, axes=("heads", "kv", "embed"), dtype=self.dtype, name="to_out")(out)


class CrossAttention(nn.Module):
  """Multi-head softmax attention of queries `x` (batch, length, embed) to `context`
  (batch, keys, context_embed): keys and values come from the context only."""
  heads: int
  head_dim: int
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x, context, return_weights: bool = False):
    embed = x.shape[-1]
    proj = lambda name, src: Dense((self.heads, self.head_dim), axes=("embed", "heads", "kv"),
                                   dtype=self.dtype, name=name)(src)
    q, k, v = proj("to_q", x), proj("to_k", context), proj("to_v", context)
    q = nn.with_logical_constraint(q, ("batch", "length", "heads", "kv"))
    scale = 1.0 / jnp.sqrt(jnp.asarray(self.head_dim, jnp.float32)).astype(q.dtype)
    weights = jax.nn.softmax((jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale).astype(jnp.float32),
                             axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v)
    out = nn.with_logical_constraint(out, ("batch", "length", "heads", "kv"))
    out = Dense(embed, axes=("heads", "kv", "embed"), dtype=self.dtype, name="to_out")(out)
    return (out, weights) if return_weights else out
