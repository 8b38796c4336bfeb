"""Memory-guided temporal attention (MEMO, arXiv 2412.04448): linear attention along time
whose state carries every earlier clip of the video at a fixed cost per frame.

Linear attention with softmax feature maps, per head of size d:
  phi(q) = softmax(q over the head dim) * d^-1/2,  phi(k) = softmax(k over the frames)
(the keys of the current clip and those of the past frames are softmaxed separately).
Each attention layer keeps a memory state S (d x d) and z (d) per spatial position and
head. When a clip's P past frames arrive (once per clip), with w_j = lambda^(P-1-j):
  S <- lambda^P S + sum_j (w_j k_j)(w_j v_j)^T,   z <- lambda^P z + sum_j w_j k_j
(the frame weight enters S twice, through the key and the value, as in the authors'
release). The clip's frames then attend bidirectionally to themselves and the memory:
  S_tot = lambda S + sum_n k_n v_n^T,  z_tot = lambda z + sum_n k_n,
  out_n = phi(q_n) S_tot / max(phi(q_n) . z_tot, 1e-10).
The state is an explicit pytree, passed in and returned (`Memory`): zeros for a new
audio, updated by `remember`, read by `__call__`. Its size and the cost per frame do not
depend on how many clips came before.

`TemporalMemoryTransformer` is the authors' TemporalLinearAttnTransformer: GroupNorm,
proj_in, transformer blocks of [LayerNorm -> memory attention] x n + GEGLU feed-forward,
proj_out (zero-initialised, so a new module starts as the identity), residual. Its
submodules are named like the release's (`transformer_blocks_0/attention_blocks_1/to_q`,
`norms_1`, `ff`, `ff_norm`) so a checkpoint converts by renaming. The past frames' features
go through the same GroupNorm, proj_in and per-attention LayerNorm, without gradients
(as the release trains it), or with them when `backprop_past` is set (a deviation for
models trained from scratch: the keys and values then learn what the memory should hold).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.nn.layers import Dense
from talkjax.nn.unet_blocks import FeedForward, group_norm, layer_norm

DECAY = 0.9
EPS = 1e-10


def query_map(q):
  """phi(q): softmax over the head dim, times d^-1/2. q: (..., heads, d)."""
  return jax.nn.softmax(q.astype(jnp.float32), axis=-1) * q.shape[-1] ** -0.5


def key_map(k, axis: int = 1):
  """phi(k): softmax over the frames (axis 1 of (batch, frames, heads, d))."""
  return jax.nn.softmax(k.astype(jnp.float32), axis=axis)


def empty_state(batch: int, heads: int, head_dim: int) -> dict:
  """The memory of a new audio: nothing remembered."""
  return {"kv": jnp.zeros((batch, heads, head_dim, head_dim), jnp.float32),
          "z": jnp.zeros((batch, heads, head_dim), jnp.float32)}


def update_state(state: dict, k_past, v_past, decay: float = DECAY) -> dict:
  """Adds P past frames to the memory. k_past = phi(k) and v_past: (batch, P, heads, d)."""
  p = k_past.shape[1]
  w = decay ** jnp.arange(p - 1, -1, -1, dtype=jnp.float32)[None, :, None, None]
  wk, wv = k_past * w, v_past.astype(jnp.float32) * w
  return {"kv": decay ** p * state["kv"] + jnp.einsum("bphd,bphe->bhde", wk, wv),
          "z": decay ** p * state["z"] + wk.sum(axis=1)}


def memory_attention(phi_q, phi_k, v, state: dict, decay: float = DECAY):
  """The clip's frames over themselves and the memory. phi_q, phi_k, v: (batch, T, heads,
  d) -> (batch, T, heads, d) float32."""
  kv = decay * state["kv"] + jnp.einsum("bthd,bthe->bhde", phi_k, v.astype(jnp.float32))
  z = decay * state["z"] + phi_k.sum(axis=1)
  num = jnp.einsum("bthd,bhde->bthe", phi_q, kv)
  den = jnp.einsum("bthd,bhd->bth", phi_q, z)
  return num / jnp.maximum(den, EPS)[..., None]


def sinusoid_positions(length: int, dim: int) -> jnp.ndarray:
  """(length, dim): sin at even channels, cos at odd, frequencies 10000^(-2i/dim)."""
  pos = jnp.arange(length, dtype=jnp.float32)[:, None]
  div = jnp.exp(jnp.arange(0, dim, 2, dtype=jnp.float32) * (-math.log(10000.0) / dim))
  pe = jnp.zeros((length, dim), jnp.float32)
  pe = pe.at[:, 0::2].set(jnp.sin(pos * div))
  return pe.at[:, 1::2].set(jnp.cos(pos * div)[:, :dim // 2])


class MemoryAttention(nn.Module):
  """One temporal attention layer of the memory (authors' MemoryLinearAttention)."""
  heads: int
  head_dim: int
  decay: float = DECAY
  position_max_len: int = 0      # > 0: sinusoidal positions on the current clip's frames
  dtype: Any = None

  def setup(self):
    proj = lambda: Dense((self.heads, self.head_dim), axes=("embed", "heads", "kv"),
                         use_bias=False, dtype=self.dtype)
    self.to_q, self.to_k, self.to_v = proj(), proj(), proj()
    self.to_out_0 = Dense(self.heads * self.head_dim, axes=("heads", "kv", "embed"),
                          dtype=self.dtype)

  def __call__(self, x, state):
    """x: (batch, T, dim) normalised frames of one spatial position -> (batch, T, dim)."""
    if self.position_max_len:
      x = x + sinusoid_positions(x.shape[1], x.shape[-1]).astype(x.dtype)
    out = memory_attention(query_map(self.to_q(x)), key_map(self.to_k(x)), self.to_v(x),
                           state, self.decay)
    return self.to_out_0(out.astype(x.dtype))

  def remember(self, state, past, gradient: bool = False):
    """past: (batch, P, dim) normalised past frames -> the updated state (no gradient
    unless `gradient`)."""
    hold = (lambda x: x) if gradient else jax.lax.stop_gradient
    past = hold(past)
    return hold(update_state(state, key_map(self.to_k(past)), self.to_v(past), self.decay))


class TemporalMemoryBlock(nn.Module):
  """[LayerNorm -> memory attention -> residual] per attention, then GEGLU feed-forward."""
  heads: int
  head_dim: int
  attentions: int = 2
  decay: float = DECAY
  position_max_len: int = 0
  dtype: Any = None

  def setup(self):
    self.attention_blocks = [MemoryAttention(self.heads, self.head_dim, self.decay,
                                             self.position_max_len, self.dtype)
                             for _ in range(self.attentions)]
    self.norms = [layer_norm(self.dtype, None) for _ in range(self.attentions)]
    self.ff = FeedForward(dtype=self.dtype)
    self.ff_norm = layer_norm(self.dtype, None)

  def __call__(self, x, states):
    for i, (attn, norm) in enumerate(zip(self.attention_blocks, self.norms)):
      x = attn(norm(x), states[f"attention_blocks_{i}"]) + x
    return self.ff(self.ff_norm(x)) + x

  def remember(self, states, past, gradient: bool = False):
    return {f"attention_blocks_{i}": attn.remember(states[f"attention_blocks_{i}"], norm(past),
                                                   gradient)
            for i, (attn, norm) in enumerate(zip(self.attention_blocks, self.norms))}


class TemporalMemoryTransformer(nn.Module):
  """GroupNorm -> proj_in -> memory blocks along time -> zero-init proj_out -> residual.

  `__call__(x, memory)`: x (batch, frames, height, width, channels), memory from
  `empty_memory` / `remember`; `remember(memory, past)`: past (batch, P, height, width,
  channels) are the past frames' features at this layer; it returns the new memory.
  """
  channels: int
  heads: int = 8
  blocks: int = 2
  attentions: int = 2
  groups: int = 32
  decay: float = DECAY
  position_max_len: int = 0
  head_dim_div: int = 1
  zero_init: bool = True
  backprop_past: bool = False    # gradients through `remember` (see the module's docstring)
  dtype: Any = None

  @property
  def head_dim(self) -> int:
    return self.channels // self.heads // self.head_dim_div

  def setup(self):
    inner = self.head_dim * self.heads
    self.norm = group_norm(self.groups, 1e-6, self.dtype, None)
    self.proj_in = Dense(inner, axes=("channels", "embed"), dtype=self.dtype)
    self.transformer_blocks = [
        TemporalMemoryBlock(self.heads, self.head_dim, self.attentions, self.decay,
                            self.position_max_len, self.dtype) for _ in range(self.blocks)]
    init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
    self.proj_out = Dense(self.channels, axes=("embed", "channels"), dtype=self.dtype,
                          kernel_init=init)

  def _tokens(self, x):
    """(B, F, H, W, C) -> (B*H*W, F, inner): GroupNorm per frame, proj_in."""
    b, f, h, w, c = x.shape
    y = self.proj_in(self.norm(x.reshape(b * f, h, w, c)))
    return y.reshape(b, f, h * w, -1).transpose(0, 2, 1, 3).reshape(b * h * w, f, -1)

  def __call__(self, x, memory):
    b, f, h, w, c = x.shape
    y = self._tokens(x)
    for j, block in enumerate(self.transformer_blocks):
      y = block(y, memory[f"transformer_blocks_{j}"])
    y = self.proj_out(y).reshape(b, h * w, f, c).transpose(0, 2, 1, 3).reshape(x.shape)
    return (y + x).astype(x.dtype)

  def remember(self, memory, past):
    tokens = self._tokens(past)
    return {f"transformer_blocks_{j}": block.remember(memory[f"transformer_blocks_{j}"], tokens,
                                                      self.backprop_past)
            for j, block in enumerate(self.transformer_blocks)}

  def empty_memory(self, batch: int, height: int, width: int) -> dict:
    """Zeros for a new audio: {transformer_blocks_j: {attention_blocks_i: {kv, z}}}."""
    one = empty_state(batch * height * width, self.heads, self.head_dim)
    return {f"transformer_blocks_{j}": {f"attention_blocks_{i}": dict(one)
                                        for i in range(self.attentions)}
            for j in range(self.blocks)}
