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
