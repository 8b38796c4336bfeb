"""A small trainable audio encoder: the default when no pretrained wav2vec2 is given.

log-mel (100 frames/s, `DEFAULT_MEL`) -> two stride-2 convolutions (25 frames/s) ->
learned positions -> pre-LN transformer -> final LN. Like the wav2vec2 wrapper it returns
every hidden state and can resample its features to the video frame count (linearly,
before the transformer), so models can swap one encoder for the other. The mel runs inside
the module (JAX path), so a jitted sampler takes raw 16 kHz samples.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.audio.mel import DEFAULT_MEL, MelConfig, log_mel_jax
from talkjax.audio.wav2vec2 import interpolate_frames
from talkjax.nn.attention import SelfAttention
from talkjax.nn.layers import Dense


@dataclasses.dataclass(frozen=True)
class AudioEncoderConfig:
  hidden_size: int = 256
  num_layers: int = 4
  num_heads: int = 4
  mlp_ratio: int = 4
  max_positions: int = 4096   # transformer positions (frames); longer input is an error
  mel: MelConfig = DEFAULT_MEL

  @classmethod
  def tiny(cls) -> "AudioEncoderConfig":
    return cls(hidden_size=32, num_layers=2, num_heads=2, max_positions=1024)


class _Block(nn.Module):
  config: AudioEncoderConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    head_dim = c.hidden_size // c.num_heads
    x = x + SelfAttention(c.num_heads, head_dim, dtype=self.dtype, name="attention")(
        nn.LayerNorm(dtype=self.dtype, name="attention_norm")(x))
    h = nn.LayerNorm(dtype=self.dtype, name="mlp_norm")(x)
    h = Dense(c.hidden_size * c.mlp_ratio, axes=("embed", "mlp"), dtype=self.dtype,
              name="mlp_in")(h)
    h = Dense(c.hidden_size, axes=("mlp", "embed"), dtype=self.dtype,
              name="mlp_out")(jax.nn.gelu(h))
    return nn.with_logical_constraint(x + h, ("batch", "length", "embed"))


class AudioEncoder(nn.Module):
  """(B, samples) 16 kHz audio -> dict(hidden_states, last_hidden_state), 25 Hz or per frame."""
  config: AudioEncoderConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, samples, num_frames: int | None = None):
    c = self.config
    x = log_mel_jax(samples, c.mel).astype(self.dtype)  # (B, T_mel, n_mels)
    for i in range(2):
      x = nn.Conv(c.hidden_size, (3,), strides=(2,), padding=[(1, 1)], dtype=self.dtype,
                  kernel_init=nn.with_logical_partitioning(
                      nn.initializers.lecun_normal(), (None, "channels", "embed")),
                  name=f"conv_{i}")(x)
      x = jax.nn.gelu(x)
    if num_frames is not None:
      x = interpolate_frames(x, num_frames)
    if x.shape[1] > c.max_positions:
      raise ValueError(f"{x.shape[1]} encoder positions exceed max_positions={c.max_positions}")
    pos = self.param("positions", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("length", "embed")), (c.max_positions, c.hidden_size))
    x = x + pos[:x.shape[1]].astype(self.dtype)
    states = [x]
    for i in range(c.num_layers):
      x = _Block(c, self.dtype, name=f"layers_{i}")(x)
      states.append(x)
    last = nn.LayerNorm(dtype=self.dtype, name="final_norm")(x)
    return {"hidden_states": tuple(states), "last_hidden_state": last}

  @staticmethod
  def frame_rate(config: AudioEncoderConfig) -> float:
    return config.mel.frame_rate / 4


def encoder_from_config(kind: str, *, config=None, pretrained: str | None = None, dtype=jnp.float32):
  """(module, params or None) for 'wav2vec2' (params from a converted folder) or 'small'."""
  if pretrained is not None:
    if kind != "wav2vec2":
      raise ValueError(f"pretrained weights are only read for kind='wav2vec2', not {kind!r}")
    from talkjax.audio.wav2vec2 import Wav2Vec2Model, load_pretrained
    w2v_config, params = load_pretrained(pretrained)
    return Wav2Vec2Model(w2v_config, dtype=dtype), params
  if kind == "wav2vec2":
    from talkjax.audio.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
    return Wav2Vec2Model(config or Wav2Vec2Config.base(), dtype=dtype), None
  if kind == "small":
    return AudioEncoder(config or AudioEncoderConfig(), dtype=dtype), None
  raise ValueError(f"unknown audio encoder kind {kind!r}")
