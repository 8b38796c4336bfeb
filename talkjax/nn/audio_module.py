"""MEMO's emotion-aware audio module (Zheng et al., arXiv 2412.04448), NHWC.

After a UNet layer, the video tokens of every frame and that frame's audio tokens attend to
each other jointly (SD3-style: one softmax over both token sets), every norm before an
attention being modulated by the clip's emotion label. The audio stream comes out updated,
so the next module sees audio refined by the video features before it.

Modules are named like their counterparts in the authors' PyTorch release, so a checkpoint
converts by renaming: "transformer_blocks.0.attn2.add_k_proj" is
transformer_blocks_0/attn2/add_k_proj here, and an nn.Sequential index k becomes the suffix
_k ("norm1.adaLN_modulation.1" is norm1/adaLN_modulation_1). Layouts differ as in
talkjax/nn/unet_blocks.py: attention projections keep heads as their own axis, (embed,
heads, kv) and (heads, kv, embed), and the GEGLU projection is (embed, 2, mlp).

Rows are frames folded into the batch, ordered (sample, frame): N = B * F rows for B labels.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.errors import TalkjaxError
from talkjax.nn.latent_blocks import MAP_AXES, group_norm
from talkjax.nn.layers import Dense, logical_init
from talkjax.nn.unet_blocks import (
  HEAD_AXES,
  TOKEN_AXES,
  Attention,
  FeedForward,
  attention,
  layer_norm,
)


def _rows_per_label(rows: int, labels) -> int:
  if labels.ndim != 1 or labels.shape[0] == 0 or rows % labels.shape[0]:
    raise TalkjaxError(f"{rows} token rows cannot be split evenly among emotion labels of "
                       f"shape {tuple(labels.shape)}",
                       fix="pass one label per sample, (B,), for B * frames rows")
  return rows // labels.shape[0]


def _check_width(x, width: int, what: str) -> None:
  if x.shape[-1] != width:
    raise TalkjaxError(f"{what} has {x.shape[-1]} channels, the module was built for {width}",
                       fix=f"build the module with the width of its {what}")


class LabelEmbedding(nn.Module):
  """One learned vector per emotion class, plus a last row for the null class (index
  `num_classes`): the label a dropped or unguided sample gets."""
  num_classes: int
  dim: int
  dtype: Any = None

  @nn.compact
  def __call__(self, labels):
    # torch's nn.Embedding init, N(0, 1)
    init = logical_init(nn.initializers.normal(1.0), (None, "embed"))
    return nn.Embed(self.num_classes + 1, self.dim, dtype=self.dtype, embedding_init=init,
                    name="embedding_table")(labels)


class EmoAdaLayerNorm(nn.Module):
  """LayerNorm without affine, modulated by the emotion label: LN(x) * (1 + scale) + shift,
  (shift, scale) = adaLN_modulation_1(silu(class embedding)).

  `__call__(x, labels)`: x is (N, L, dim), labels (B,) ints with N = B * r; the label of
  sample b applies to its r consecutive rows. When not deterministic, each label becomes
  the null class with probability `dropout` (classifier-free guidance training), drawn
  from the "dropout" rng.

  adaLN_modulation_1 starts at zero, kernel and bias, unlike the authors' default torch
  init: a freshly added module is then a plain LayerNorm for every label and does not
  disturb the pretrained UNet it is inserted into.
  """
  num_classes: int = 9
  dropout: float = 0.3
  deterministic: bool = True
  dtype: Any = None

  def _drop(self, labels):
    if self.deterministic or self.dropout <= 0.0:
      return labels
    drop = jax.random.bernoulli(self.make_rng("dropout"), self.dropout, labels.shape)
    return jnp.where(drop, self.num_classes, labels)

  @nn.compact
  def __call__(self, x, labels):
    labels = jnp.asarray(labels, jnp.int32)
    r = _rows_per_label(x.shape[0], labels)
    dim = x.shape[-1]
    emb = LabelEmbedding(self.num_classes, dim, self.dtype,
                         name="class_embedder")(self._drop(labels))
    mod = Dense(2 * dim, axes=("embed", "mlp"), dtype=self.dtype,
                kernel_init=nn.initializers.zeros, name="adaLN_modulation_1")(nn.silu(emb))
    shift, scale = jnp.split(jnp.repeat(mod, r, axis=0)[:, None, :], 2, axis=-1)
    h = nn.LayerNorm(epsilon=1e-5, use_bias=False, use_scale=False, dtype=self.dtype,
                     use_fast_variance=False)(x)
    return h * (1 + scale) + shift


class JointAttention(nn.Module):
  """Joint attention of x (N, Lx, dim) and context (N, Lc, context_dim): queries, keys and
  values of both token sets are concatenated, so each set attends to both in one softmax.
  Returns (to_out_0 of the x part, to_add_out of the context part, or None when `final`:
  the last module has no audio output to produce)."""
  heads: int
  head_dim: int
  context_dim: int
  final: bool = False
  dtype: Any = None
  implementation: str | None = None

  def _proj(self, name: str, t, bias: bool):
    out = Dense((self.heads, self.head_dim), axes=("embed", "heads", "kv"), use_bias=bias,
                dtype=self.dtype, name=name)(t)
    return nn.with_logical_constraint(out, HEAD_AXES)

  def _out(self, name: str, t, width: int):
    return Dense(width, axes=("heads", "kv", "embed"), dtype=self.dtype, name=name)(t)

  @nn.compact
  def __call__(self, x, context):
    _check_width(context, self.context_dim, "context")
    q, k, v = (jnp.concatenate([self._proj(f"to_{n}", x, False),
                                self._proj(f"add_{n}_proj", context, True)], axis=1)
               for n in ("q", "k", "v"))
    out = attention(q, k, v, self.implementation).astype(x.dtype if self.dtype is None
                                                         else self.dtype)
    out = nn.with_logical_constraint(out, HEAD_AXES)
    lx = x.shape[1]
    hx = self._out("to_out_0", out[:, :lx], x.shape[-1])
    if self.final:
      return hx, None
    return hx, self._out("to_add_out", out[:, lx:], self.context_dim)


class AudioTransformerBlock(nn.Module):
  """The authors' JointAudioTemporalBasicTransformerBlock (use_ada_layer_norm=True): video
  self-attention and audio self-attention, then joint attention of the two, then
  feed-forwards, each pre-normed and residual; the norms before the attentions are
  EmoAdaLayerNorms. `__call__(x, audio, labels)` with x (N, L, dim), audio
  (N, La, audio_dim), labels (B,); returns (x, audio, or None when `final`)."""
  dim: int
  heads: int
  head_dim: int
  audio_dim: int
  final: bool = False
  deterministic: bool = True
  emotion_dropout: float = 0.3
  num_classes: int = 9
  dtype: Any = None
  implementation: str | None = None

  def _emo_norm(self, name: str):
    return EmoAdaLayerNorm(self.num_classes, self.emotion_dropout, self.deterministic,
                           self.dtype, name=name)

  def _attn(self, name: str):
    return Attention(self.heads, self.head_dim, self.dtype, self.implementation, name=name)

  @nn.compact
  def __call__(self, x, audio, labels):
    _check_width(x, self.dim, "video tokens")
    _check_width(audio, self.audio_dim, "audio tokens")
    h, a = self._emo_norm("norm1")(x, labels), self._emo_norm("audio_norm1")(audio, labels)
    x = nn.with_logical_constraint(self._attn("attn1")(h, h) + x, TOKEN_AXES)
    audio = self._attn("audio_attn1")(a, a) + audio
    h, a = self._emo_norm("norm2")(x, labels), self._emo_norm("audio_norm2")(audio, labels)
    jx, ja = JointAttention(self.heads, self.head_dim, self.audio_dim, self.final, self.dtype,
                            self.implementation, name="attn2")(h, a)
    x = x + jx
    x = x + FeedForward(dtype=self.dtype, name="ff")(layer_norm(self.dtype, "norm3")(x))
    x = nn.with_logical_constraint(x, TOKEN_AXES)
    if self.final:
      return x, None
    audio = audio + ja
    audio = audio + FeedForward(dtype=self.dtype, name="audio_ff")(
        layer_norm(self.dtype, "audio_norm3")(audio))
    return x, audio


class AudioModule(nn.Module):
  """The authors' Transformer3DModel with use_audio_module=True: GroupNorm, proj_in, one
  AudioTransformerBlock over the H*W tokens of every frame, proj_out, residual.

  `__call__(x, audio, labels)`: x (N, H, W, C) with N = B * frames, audio (N, La,
  audio_dim), labels (B,). Returns (feature map, audio) where audio is the block's audio
  output plus the audio input (a second residual over the block's own, as the authors
  have it), or None when `final`. `inner_dim` is a field because the authors build it as
  heads * (channels of the block's input // heads), which differs from C at the first
  layer of a block whose width changes.
  """
  heads: int
  groups: int
  inner_dim: int
  audio_dim: int = 768
  final: bool = False
  deterministic: bool = True
  emotion_dropout: float = 0.3
  dtype: Any = None
  implementation: str | None = None
  num_classes: int = 9

  @nn.compact
  def __call__(self, x, audio, labels):
    n, height, width, c = x.shape
    h = group_norm(self.groups, 1e-6, self.dtype, "norm")(x).reshape(n, height * width, c)
    h = Dense(self.inner_dim, axes=("channels", "embed"), dtype=self.dtype, name="proj_in")(h)
    h, a = AudioTransformerBlock(self.inner_dim, self.heads, self.inner_dim // self.heads,
                                 self.audio_dim, self.final, self.deterministic,
                                 self.emotion_dropout, self.num_classes, self.dtype,
                                 self.implementation, name="transformer_blocks_0")(
                                     h, audio, labels)
    h = Dense(c, axes=("embed", "channels"), dtype=self.dtype, name="proj_out")(h)
    out = nn.with_logical_constraint(h.reshape(x.shape) + x, MAP_AXES)
    return out, (None if a is None else a + audio)
