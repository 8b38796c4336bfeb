"""IF-MDM stage 2: the motion diffusion transformer (DiT with adaLN-Zero).

Tokens: [hint, mean, std, motion_1 .. motion_W]. The hint is the motion just before the
window (the input image's, or the previous chunk's last frame), mean and std describe the
window's motion (the controllability knobs at sampling time). Each motion token is the
noisy motion of its frame concatenated with the frame's two 50 Hz audio features; audio
also enters every block as per-frame adaLN conditioning, added to the timestep embedding.
The features are LayerNormed per frame, which removes a log-mel frame's loudness exactly;
with `level` (log-mel only) each half's loudness goes back in beside them, as INFP's guider
does (talkjax/audio/frame_features.py: the mouth follows the level within a syllable).

Condition dropout: `drop` (B, 4) booleans for (audio, hint, mean, std) swap each condition
for a learned null vector; dropping audio at sampling is classifier-free guidance's
unconditional branch.

`learn_sigma`: the output has 2 x D channels, the prediction and the reverse-process
variance interpolation (talkjax/diffusion/learned_variance.py), as in the paper's code.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from talkjax.audio import frame_features
from talkjax.nn.dit import FinalLayer, TimestepEmbedding, dit_trunk
from talkjax.nn.layers import Dense, logical_init

CONDITIONS = ("audio", "hint", "mean", "std")
SPECIAL_TOKENS = 3  # hint, mean, std


class MotionDiT(nn.Module):
  """(x_t (B, W, D), t (B,), audio (B, W, A), hint/mean/std (B, D), drop (B, 4)) -> (B, W, D)
  (B, W, 2D with `learn_sigma`)."""
  window: int
  hidden: int = 512
  layers: int = 6
  heads: int = 8
  mlp_ratio: int = 4
  dtype: jnp.dtype | None = None
  remat: bool = False
  learn_sigma: bool = False
  level: bool = False

  @nn.compact
  def __call__(self, x_t, t, audio, hint, mean, std, drop):
    b, w, d = x_t.shape
    h = self.hidden
    drop = drop.astype(bool)
    audio = audio.astype(jnp.float32)
    a = nn.LayerNorm(dtype=self.dtype, name="audio_norm")(audio)
    if self.level:
      a = jnp.concatenate([a, frame_features.level(audio).astype(a.dtype)], -1)
    a = Dense(h, axes=(None, "embed"), dtype=self.dtype, name="audio_in")(a)
    a = jnp.where(drop[:, 0, None, None], self.param(
        "null_audio", logical_init(nn.initializers.normal(0.02), ("embed",)), (h,)), a)

    def special(value, index, name):
      e = Dense(h, axes=(None, "embed"), dtype=self.dtype, name=f"{name}_in")(value)
      n = self.param(f"null_{name}", logical_init(nn.initializers.normal(0.02), ("embed",)), (h,))
      return jnp.where(drop[:, index, None], n, e)

    tokens = jnp.stack([special(hint, 1, "hint"), special(mean, 2, "mean"),
                        special(std, 3, "std")], axis=1)                         # (B, 3, H)
    motion = Dense(h, axes=(None, "embed"), dtype=self.dtype, name="motion_in")(
        jnp.concatenate([x_t.astype(a.dtype), a], axis=-1))                    # (B, W, H)
    x = jnp.concatenate([tokens.astype(motion.dtype), motion], axis=1)
    pos = self.param("positions", logical_init(nn.initializers.normal(0.02), ("length", "embed")),
                     (SPECIAL_TOKENS + self.window, h))
    x = nn.with_logical_constraint(x + pos[:x.shape[1]].astype(x.dtype), ("batch", "length", "embed"))

    temb = TimestepEmbedding(h, dtype=self.dtype, name="time")(t)              # (B, H)
    frame_cond = Dense(h, axes=("embed", "mlp"), dtype=self.dtype, name="audio_cond")(a)
    cond = jnp.concatenate([jnp.zeros((b, SPECIAL_TOKENS, h), frame_cond.dtype), frame_cond], 1)
    cond = cond + temb[:, None, :].astype(cond.dtype)
    x = dit_trunk(x, cond, layers=self.layers, heads=self.heads, mlp_ratio=self.mlp_ratio,
                  dtype=self.dtype, remat=self.remat)
    out = FinalLayer(2 * d if self.learn_sigma else d, dtype=self.dtype, name="final")(x, cond)
    return out[:, SPECIAL_TOKENS:].astype(jnp.float32)
