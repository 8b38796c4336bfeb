"""INFP's denoising transformer: motion latents of one chunk from noise, given the guidance.

Each block is [self-attention over the chunk's motion tokens -> motion-attention: cross-
attention to the guider's per-frame guidance -> temporal attention: cross-attention to the
motion just before the chunk (the previous chunk's last frames, or the portrait's motion
repeated for the first)] followed by an MLP, each sub-layer with adaLN-Zero modulation by
the diffusion timestep. Guidance and motion tokens share one positional table, so frame i's
motion finds frame i's guidance.

Each motion token also carries its own frame's guidance (concatenated at the input, as
IF-MDM's tokens carry their audio): a tiny model trained for minutes on a CPU aligns frames
from it faster than through attention alone (a deviation from the paper's description).

An anchor (`model.anchor`): the portrait's own motion code, added to the timestep's
conditioning vector so every block's adaLN and the final layer see it in every chunk. The
previous motion alone lets a long chain of chunks drift to the average resting face (a
resting mouth some emotion keeps open closed chunk by chunk); the portrait's motion holds
this person's rest in view throughout. Training windows give their clip's first frame, as
sampling gives the portrait. Not in the paper's description (a deviation).

A portrait feature (`model.portrait`, portrait.py): the mood the portrait's pixels show, which
the motion code barely carries, added to the same conditioning vector (a deviation too).

Condition dropout: `drop` (B, 2) booleans for (guidance, previous motion) swap each for
learned null tokens; dropping the guidance is classifier-free guidance's unconditional
branch.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from talkjax.diffusion import guidance, samplers
from talkjax.nn.attention import CrossAttention, SelfAttention
from talkjax.nn.dit import FinalLayer, TimestepEmbedding, modulation, plain_norm
from talkjax.nn.layers import Dense, logical_init

CONDITIONS = ("guidance", "previous")


class DenoiserBlock(nn.Module):
  heads: int
  mlp_ratio: int = 4
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x, cond, guidance, previous):
    h = x.shape[-1]
    mods = modulation(cond, 12, h, self.dtype, "modulation")
    sublayers = (
        ("self_attention", lambda y: SelfAttention(self.heads, h // self.heads, dtype=self.dtype,
                                                   name="self_attention")(y)),
        ("motion_attention", lambda y: CrossAttention(self.heads, h // self.heads,
                                                      dtype=self.dtype,
                                                      name="motion_attention")(y, guidance)),
        ("temporal_attention", lambda y: CrossAttention(self.heads, h // self.heads,
                                                        dtype=self.dtype,
                                                        name="temporal_attention")(y, previous)),
        ("mlp", lambda y: Dense(h, axes=("mlp", "embed"), dtype=self.dtype, name="mlp_out")(
            nn.gelu(Dense(h * self.mlp_ratio, axes=("embed", "mlp"), dtype=self.dtype,
                          name="mlp_in")(y)))),
    )
    for i, (_, fn) in enumerate(sublayers):
      shift, scale, gate = mods[3 * i:3 * i + 3]
      x = x + gate * fn(plain_norm(x) * (1 + scale) + shift)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class MotionDenoiser(nn.Module):
  """(x_t (B, W, D), t (B,), guidance (B, W, H), previous (B, P, D), drop (B, 2)
  [, anchor (B, D) when `anchor`][, portrait (B, H) when `portrait`]) -> (B, W, D)."""
  window: int
  previous: int
  hidden: int = 256
  layers: int = 4
  heads: int = 4
  mlp_ratio: int = 4
  dtype: jnp.dtype | None = None
  remat: bool = False
  anchor: bool = False
  portrait: bool = False

  @nn.compact
  def __call__(self, x_t, t, guidance, previous, drop, anchor=None, portrait=None):
    b, w, d = x_t.shape
    h = self.hidden
    drop = drop.astype(bool)
    null = lambda name, n: self.param(name, logical_init(nn.initializers.normal(0.02),
                                                         ("length", "embed")), (n, h))
    g = Dense(h, axes=("mlp", "embed"), dtype=self.dtype, name="guidance_in")(guidance)
    g = jnp.where(drop[:, 0, None, None], null("null_guidance", w)[None].astype(g.dtype), g)
    p = Dense(h, axes=(None, "embed"), dtype=self.dtype, name="previous_in")(previous)
    p = jnp.where(drop[:, 1, None, None], null("null_previous", self.previous)[None].astype(p.dtype), p)
    pos = self.param("positions", logical_init(nn.initializers.normal(0.02), ("length", "embed")),
                     (self.previous + self.window, h))
    p = p + pos[:self.previous].astype(p.dtype)
    g = g + pos[self.previous:].astype(g.dtype)
    x = Dense(h, axes=(None, "embed"), dtype=self.dtype, name="motion_in")(
        jnp.concatenate([x_t.astype(g.dtype), g], axis=-1)) + pos[self.previous:].astype(g.dtype)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    cond = TimestepEmbedding(h, dtype=self.dtype, name="time")(t)[:, None, :]
    if self.anchor:
      if anchor is None:
        raise ValueError("this denoiser is conditioned on the portrait's motion: pass anchor")
      cond = cond + Dense(h, axes=(None, "embed"), dtype=self.dtype, name="anchor_in")(
          anchor.astype(cond.dtype))[:, None, :]
    if self.portrait:
      if portrait is None:
        raise ValueError("this denoiser is conditioned on the portrait's features: pass portrait")
      cond = cond + portrait.astype(cond.dtype)[:, None, :]
    block = nn.remat(DenoiserBlock) if self.remat else DenoiserBlock
    for i in range(self.layers):
      x = block(self.heads, self.mlp_ratio, dtype=self.dtype, name=f"blocks_{i}")(x, cond, g, p)
    return FinalLayer(d, dtype=self.dtype, name="final")(x, cond).astype(jnp.float32)


def sample_chunk(denoiser: MotionDenoiser, params, guide, previous, anchor, noise, alphas, *,
                 steps: int, scale: float, prediction: str, portrait=None):
  """One chunk's motion by deterministic DDIM with classifier-free guidance on the tracks'
  guidance, in normalised motion units: what sampling runs for every chunk and what
  rollout training (tasks.py) runs for the chunk before a window."""
  b = guide.shape[0]
  cond = {"guidance": guide, "drop": jnp.zeros((b, 2), bool)}
  repeat = lambda x, n: None if x is None else jnp.concatenate([x] * n)

  def model(x_t, t, c):
    n = x_t.shape[0] // b
    return denoiser.apply({"params": params}, x_t, t, c["guidance"], repeat(previous, n),
                          c["drop"], repeat(anchor, n), repeat(portrait, n))

  unconditional = lambda c: {"guidance": c["guidance"], "drop": c["drop"].at[:, 0].set(True)}
  fn = guidance.guided(model, scale, unconditional)
  return samplers.ddim_sample(lambda x_t, t: fn(x_t, t, cond), noise, alphas, steps,
                              prediction=prediction)
