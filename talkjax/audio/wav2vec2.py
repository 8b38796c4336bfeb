"""wav2vec2 in Flax, with parameter names that mirror Hugging Face's `Wav2Vec2Model`.

Two layouts, chosen by the config as in `transformers`:
- base ("group" feature norm, post-LN transformer): GroupNorm on the first conv only, layer
  norm before the transformer, LN after attention and after the feed-forward;
- large / stable ("layer" feature norm, `do_stable_layer_norm`): LN after every conv,
  pre-LN transformer, a final LN at the end.

`num_frames` (optional) linearly interpolates the CNN features to the video frame count
before the transformer (align_corners=True, as MEMO and Hallo do), so each transformer
position is one video frame. All hidden states are returned: the transformer input and the
output of every layer (as `transformers` 5 reports them), plus `last_hidden_state` (after
the final LN in the stable layout). The weight-normalised positional conv is stored folded
(w = g v / |v|) by the importer; see talkjax/convert/wav2vec2.py.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.errors import ConfigError, TalkjaxError


@dataclasses.dataclass(frozen=True)
class Wav2Vec2Config:
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  conv_dim: Sequence[int] = (512,) * 7
  conv_kernel: Sequence[int] = (10, 3, 3, 3, 3, 2, 2)
  conv_stride: Sequence[int] = (5, 2, 2, 2, 2, 2, 2)
  conv_bias: bool = False
  feat_extract_norm: str = "group"
  do_stable_layer_norm: bool = False
  num_conv_pos_embeddings: int = 128
  num_conv_pos_embedding_groups: int = 16
  layer_norm_eps: float = 1e-5
  hidden_act: str = "gelu"
  feat_extract_activation: str = "gelu"

  @classmethod
  def base(cls) -> "Wav2Vec2Config":
    return cls()

  @classmethod
  def large(cls) -> "Wav2Vec2Config":
    """wav2vec2-large-lv60 / xlsr layout: 24 layers, 1024 wide, stable layer norm."""
    return cls(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
               intermediate_size=4096, conv_bias=True, feat_extract_norm="layer",
               do_stable_layer_norm=True)

  @classmethod
  def from_hf_dict(cls, d: dict, path: str | None = None) -> "Wav2Vec2Config":
    if d.get("add_adapter"):
      raise TalkjaxError("wav2vec2 checkpoints with an adapter are not supported", path=path,
                         fix="use a checkpoint without `add_adapter`")
    for key in ("hidden_act", "feat_extract_activation"):
      if d.get(key, "gelu") != "gelu":
        raise TalkjaxError(f"unsupported {key}={d[key]!r} (only gelu)", path=path,
                           fix="use a standard wav2vec2 checkpoint")
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    return cls(**kw)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

  def num_cnn_frames(self, num_samples: int) -> int:
    n = num_samples
    for k, s in zip(self.conv_kernel, self.conv_stride):
      n = (n - k) // s + 1
    return n


def _gelu(x):
  return jax.nn.gelu(x, approximate=False)


def _dense(features, name, dtype, axes):
  return nn.Dense(features, dtype=dtype, name=name,
                  kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]))


def _layer_norm(eps, name, dtype):
  return nn.LayerNorm(epsilon=eps, dtype=dtype, name=name)


class ConvLayer(nn.Module):
  config: Wav2Vec2Config
  index: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c, i = self.config, self.index
    dim = c.conv_dim[i]
    x = nn.Conv(dim, (c.conv_kernel[i],), strides=(c.conv_stride[i],), padding="VALID",
                use_bias=c.conv_bias, dtype=self.dtype, name="conv")(x)
    if c.feat_extract_norm == "layer":
      x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="layer_norm")(x)
    elif i == 0:
      # one group per channel: each channel normalised over time
      x = nn.GroupNorm(num_groups=dim, epsilon=1e-5, dtype=self.dtype, name="layer_norm")(x)
    return _gelu(x)


class FeatureEncoder(nn.Module):
  """The CNN over raw 16 kHz samples: (B, S) -> (B, T, conv_dim[-1]) at ~50 Hz."""
  config: Wav2Vec2Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, samples):
    x = samples[..., None].astype(self.dtype)
    for i in range(len(self.config.conv_dim)):
      x = ConvLayer(self.config, i, self.dtype, name=f"conv_layers_{i}")(x)
    return x


class PositionalConv(nn.Module):
  config: Wav2Vec2Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    k = c.num_conv_pos_embeddings
    y = nn.Conv(c.hidden_size, (k,), padding=[(k // 2, k // 2)],
                feature_group_count=c.num_conv_pos_embedding_groups, dtype=self.dtype,
                name="conv")(x)
    if k % 2 == 0:  # "same" padding of an even kernel yields one extra position
      y = y[:, :-1]
    return _gelu(y)


class Attention(nn.Module):
  config: Wav2Vec2Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    h, d = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    proj = lambda name: _dense(c.hidden_size, name, self.dtype, ("embed", "heads"))(x)
    split = lambda t: t.reshape(t.shape[:-1] + (h, d))
    q, k, v = split(proj("q_proj")), split(proj("k_proj")), split(proj("v_proj"))
    out = jax.nn.dot_product_attention(q, k, v)
    out = out.reshape(out.shape[:-2] + (c.hidden_size,))
    return _dense(c.hidden_size, "out_proj", self.dtype, ("heads", "embed"))(out)


class FeedForward(nn.Module):
  config: Wav2Vec2Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    x = _gelu(_dense(c.intermediate_size, "intermediate_dense", self.dtype, ("embed", "mlp"))(x))
    return _dense(c.hidden_size, "output_dense", self.dtype, ("mlp", "embed"))(x)


class EncoderLayer(nn.Module):
  config: Wav2Vec2Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    ln = lambda name: _layer_norm(c.layer_norm_eps, name, self.dtype)
    attn = Attention(c, self.dtype, name="attention")
    ff = FeedForward(c, self.dtype, name="feed_forward")
    if c.do_stable_layer_norm:
      x = x + attn(ln("layer_norm")(x))
      return x + ff(ln("final_layer_norm")(x))
    x = ln("layer_norm")(x + attn(x))
    return ln("final_layer_norm")(x + ff(x))


class Wav2Vec2Model(nn.Module):
  """(B, samples) 16 kHz audio -> dict(extract_features, hidden_states, last_hidden_state).

  Inputs are used as given: Hugging Face checkpoints whose feature extractor sets
  `do_normalize` expect zero-mean unit-variance audio (see `normalize_input`).
  """
  config: Wav2Vec2Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, samples, num_frames: int | None = None):
    c = self.config
    feats = FeatureEncoder(c, self.dtype, name="feature_extractor")(samples)
    if num_frames is not None:
      feats = interpolate_frames(feats, num_frames)
    feats = nn.with_logical_constraint(feats, ("batch", "length", "channels"))
    proj = FeatureProjection(c, self.dtype, name="feature_projection")
    normed, x = proj(feats)
    enc = Encoder(c, self.dtype, name="encoder")
    hidden_states, last = enc(x)
    return {"extract_features": normed, "hidden_states": hidden_states,
            "last_hidden_state": last}


class FeatureProjection(nn.Module):
  config: Wav2Vec2Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, feats):
    c = self.config
    normed = _layer_norm(c.layer_norm_eps, "layer_norm", self.dtype)(feats)
    return normed, _dense(c.hidden_size, "projection", self.dtype, ("channels", "embed"))(normed)


class Encoder(nn.Module):
  config: Wav2Vec2Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    x = x + PositionalConv(c, self.dtype, name="pos_conv_embed")(x)
    final_ln = _layer_norm(c.layer_norm_eps, "layer_norm", self.dtype)
    if not c.do_stable_layer_norm:
      x = final_ln(x)
    states = [x]
    for i in range(c.num_hidden_layers):
      x = EncoderLayer(c, self.dtype, name=f"layers_{i}")(x)
      x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
      states.append(x)
    last = final_ln(x) if c.do_stable_layer_norm else x
    return tuple(states), last


def interpolate_frames(feats, num_frames: int):
  """(B, T, C) -> (B, num_frames, C), linear with align_corners=True (MEMO/Hallo)."""
  t = feats.shape[1]
  if num_frames == 1 or t == 1:
    pos = np.zeros(num_frames)
  else:
    pos = np.arange(num_frames) * ((t - 1) / (num_frames - 1))
  lo = np.floor(pos).astype(np.int32)
  hi = np.minimum(lo + 1, t - 1)
  w = jnp.asarray(pos - lo, feats.dtype)[None, :, None]
  return feats[:, lo] * (1 - w) + feats[:, hi] * w


def normalize_input(samples, eps: float = 1e-7):
  """Zero mean, unit variance per clip: what `Wav2Vec2FeatureExtractor(do_normalize=True)` does."""
  mean = samples.mean(axis=-1, keepdims=True)
  var = samples.var(axis=-1, keepdims=True)
  return (samples - mean) / jnp.sqrt(var + eps)


def init_params(config: Wav2Vec2Config, seed: int = 0, num_samples: int = 16000):
  model = Wav2Vec2Model(config)
  variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, num_samples)))
  return nn.meta.unbox(variables["params"])


def read_config(folder: os.PathLike | str) -> Wav2Vec2Config:
  """The config of a folder written by `talkjax convert wav2vec2` (no weights are read)."""
  import json
  path = os.path.join(os.fspath(folder), "config.json")
  if not os.path.isfile(path):
    raise TalkjaxError("not a talkjax wav2vec2 folder (missing file)", path=path,
                       fix="create it with `talkjax convert wav2vec2 --src HF_DIR --out DIR`")
  with open(path) as f:
    return Wav2Vec2Config.from_hf_dict(json.load(f), path)


def load_pretrained(folder: os.PathLike | str) -> tuple[Wav2Vec2Config, dict]:
  """(config, params) from a folder written by `talkjax convert wav2vec2`."""
  from safetensors.numpy import load_file
  from talkjax import trees
  config = read_config(folder)
  params_path = os.path.join(os.fspath(folder), "params.safetensors")
  if not os.path.isfile(params_path):
    raise TalkjaxError("not a talkjax wav2vec2 folder (missing file)", path=params_path,
                       fix="create it with `talkjax convert wav2vec2 --src HF_DIR --out DIR`")
  return config, trees.unflatten(load_file(params_path))


def random_weights(model: "Wav2Vec2Model", rng) -> dict:
  """Boxed random weights of `model` (benchmarks, random generators)."""
  # one program (op by op, every layer's ops would compile alone)
  return jax.jit(model.init)(rng, jnp.zeros((1, 16000), jnp.float32))["params"]


def weights_of(folder) -> dict:
  """The weights of the converted folder a config's `model.audio.wav2vec2` names."""
  if not folder:
    raise ConfigError("model.audio.kind is 'wav2vec2' but model.audio.wav2vec2 names no folder",
                      fix="convert one (the papers': wav2vec2-base-960h) with `talkjax convert "
                          "wav2vec2` and set model.audio.wav2vec2=FOLDER")
  return load_pretrained(folder)[1]
