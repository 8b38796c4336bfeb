"""INFP's Interactive Motion Guider: which behaviour the two tracks call for, frame by frame.

Two learnable memory banks hold motion patterns: a verbal bank (speaking: articulation,
emphasis) and a non-verbal bank (listening: nods, smiles, attentive gaze). The agent's audio
queries the verbal bank and the partner's audio the non-verbal bank, each by cross-attention;
the two results fuse into one guidance feature per frame. Nothing says who is speaking: the
agent's own voice finds verbal patterns, the partner's voice non-verbal ones, and silence on
either track finds little, so the turn-taking falls out of the two tracks alone.

Each track's features are LayerNormed per frame before they query; with `level` (log-mel
features only) the frame's loudness, which the norm removes, is put back beside them, as
the mouth follows it within a syllable (`model.audio.level`; talkjax/audio/frame_features.py).

An optional motion-style vector (from a reference clip's motion, `StyleEncoder`) modulates
both banks (scale and shift per entry); without one a learned null style is used.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from talkjax.audio import frame_features
from talkjax.nn.attention import CrossAttention, SelfAttention
from talkjax.nn.layers import Dense, logical_init


class StyleEncoder(nn.Module):
  """Motion of a reference clip (B, T, D) -> a style vector (B, hidden)."""
  hidden: int
  heads: int = 4
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, motion):
    h = Dense(self.hidden, axes=(None, "embed"), dtype=self.dtype, name="motion_in")(motion)
    h = h + SelfAttention(self.heads, self.hidden // self.heads, dtype=self.dtype,
                          name="attention")(nn.LayerNorm(dtype=self.dtype, name="norm")(h))
    return Dense(self.hidden, axes=("mlp", "embed"), dtype=self.dtype,
                 name="out")(jnp.mean(h, axis=1))


class InteractiveMotionGuider(nn.Module):
  """(agent features (B, W, F), partner features (B, W, F), style (B, H) or None) ->
  (guidance (B, W, H), {"verbal": (B, W, H), "nonverbal": (B, W, H), "verbal_weights":
  (B, heads, W, Kv), "nonverbal_weights": (B, heads, W, Kn)})."""
  hidden: int
  verbal_slots: int = 32
  nonverbal_slots: int = 32
  heads: int = 4
  level: bool = False
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, agent, partner, style=None):
    h = self.hidden
    init = logical_init(nn.initializers.normal(1.0), (None, "embed"))
    banks = {"verbal": self.param("verbal_bank", init, (self.verbal_slots, h)),
             "nonverbal": self.param("nonverbal_bank", init, (self.nonverbal_slots, h))}
    b = agent.shape[0]
    if style is None:
      style = jnp.broadcast_to(self.param(
          "null_style", logical_init(nn.initializers.normal(0.02), ("embed",)), (h,)), (b, h))
    out = {}
    for name, track in (("verbal", agent), ("nonverbal", partner)):
      gamma, beta = jnp.split(Dense(2 * h, axes=("embed", "mlp"), dtype=self.dtype,
                                    kernel_init=nn.initializers.zeros,
                                    name=f"{name}_style")(style)[:, None, :], 2, axis=-1)
      bank = banks[name][None].astype(gamma.dtype) * (1 + gamma) + beta      # (B, K, H)
      track = track.astype(jnp.float32)
      heard = nn.LayerNorm(dtype=self.dtype, name=f"{name}_audio_norm")(track)
      if self.level:
        heard = jnp.concatenate([heard, frame_features.level(track)], -1)
      query = Dense(h, axes=(None, "embed"), dtype=self.dtype, name=f"{name}_query")(heard)
      read, weights = CrossAttention(self.heads, h // self.heads, dtype=self.dtype,
                                     name=f"{name}_read")(query, bank, return_weights=True)
      # A residual read, as in any attention block: the bank adds patterns to the query.
      out[name], out[f"{name}_weights"] = query + read, weights
    fused = Dense(h, axes=("mlp", "embed"), dtype=self.dtype, name="fuse")(
        jnp.concatenate([out["verbal"], out["nonverbal"]], axis=-1))
    guidance = nn.LayerNorm(dtype=self.dtype, name="norm")(nn.gelu(fused))
    return nn.with_logical_constraint(guidance, ("batch", "length", "embed")), out
