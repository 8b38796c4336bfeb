"""emotion2vec (data2vec 2.0 audio encoder) in Flax: 16 kHz speech -> (B, T, D) features.

The speech-emotion encoder MEMO's release reads emotions with (`emotion2vec_plus_large`,
FunASR's `Emotion2vec`), inference path only (no masking, no decoder):
1. a convolutional feature encoder over the raw samples (FunASR's `feature_encoder_spec`,
   (channels, kernel, stride) per layer, no bias; "layer_norm" mode: LayerNorm over the
   channels after every conv, "default" mode: GroupNorm(C, C) after the first only; GELU);
2. LayerNorm + Linear to `embed_dim`;
3. a relative positional encoder added to it: `conv_pos_depth` grouped convs of kernel
   max(3, conv_pos_width // conv_pos_depth), each followed by a non-affine LayerNorm and
   GELU (the last sample dropped for even kernels, "SamePad");
4. `num_extra_tokens` learned tokens prepended;
5. the "prenet" (`prenet_depth` blocks, after a LayerNorm in the post-LN layout), then the
   `depth` main blocks; every attention gets an ALiBi bias on its first `num_alibi_heads`
   heads, -slope_h |i - j| scaled by the learned, non-negative `alibi_scale` (one per
   head, optionally one per layer), zero for the extra tokens;
6. the extra tokens removed.
A block is (post-LN, emotion2vec's layout) x = LN1(x + attn(x)); x = LN2(x + mlp(x)), or
(pre-LN) x = x + attn(LN1(x)); x = 2 mlp(LN2(x)), which is what the reference's pre-LN
branch computes (its residual is the MLP's output); attention has a fused qkv projection.

`mask` (B, samples) marks the samples that are audio (the generation layer pads zeros
before and after it): frames hearing none of them are left out of every attention's keys
and of `pooled`'s mean. Parameter names follow FunASR's modules; the importer is
talkjax/convert/emotion2vec.py.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.errors import TalkjaxError

# The keys of FunASR's model_conf (and its modalities.audio) that the inference path reads.
_MODEL_KEYS = ("embed_dim", "num_heads", "depth", "mlp_ratio", "norm_eps", "norm_affine",
               "layer_norm_first")
_AUDIO_KEYS = ("feature_encoder_spec", "extractor_mode", "conv_pos_width", "conv_pos_groups",
               "conv_pos_depth", "conv_pos_pre_ln", "prenet_depth", "num_extra_tokens",
               "use_alibi_encoder", "num_alibi_heads", "learned_alibi_scale_per_layer",
               "learned_alibi_scale_per_head")


@dataclasses.dataclass(frozen=True)
class Emotion2vecConfig:
  embed_dim: int = 1024
  num_heads: int = 16
  depth: int = 8
  mlp_ratio: float = 4.0
  norm_eps: float = 1e-5
  norm_affine: bool = True
  layer_norm_first: bool = False
  feature_encoder_spec: Sequence[Sequence[int]] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + (
      (512, 2, 2),) * 2
  extractor_mode: str = "layer_norm"
  conv_pos_width: int = 95
  conv_pos_groups: int = 16
  conv_pos_depth: int = 5
  conv_pos_pre_ln: bool = False
  prenet_depth: int = 4
  num_extra_tokens: int = 10
  use_alibi_encoder: bool = True
  num_alibi_heads: int = 16
  learned_alibi_scale_per_layer: bool = False
  learned_alibi_scale_per_head: bool = True

  @property
  def pos_kernel(self) -> int:
    return max(3, self.conv_pos_width // self.conv_pos_depth)

  @property
  def alibi_scale_shape(self) -> tuple[int, ...]:
    layers = self.prenet_depth + self.depth if self.learned_alibi_scale_per_layer else 1
    heads = self.num_alibi_heads if self.learned_alibi_scale_per_head else 1
    return (layers, 1, heads, 1, 1)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["feature_encoder_spec"] = [list(map(int, layer)) for layer in self.feature_encoder_spec]
    return d

  @classmethod
  def from_dict(cls, d: dict) -> "Emotion2vecConfig":
    d = dict(d)
    d["feature_encoder_spec"] = tuple(tuple(int(v) for v in layer)
                                      for layer in d["feature_encoder_spec"])
    return cls(**d)

  @classmethod
  def from_model_conf(cls, conf: dict, path=None) -> "Emotion2vecConfig":
    """From FunASR's `model_conf` (config.yaml of an emotion2vec model folder)."""
    fix = "pass the config.yaml that came with the emotion2vec model.pt"
    audio = (conf.get("modalities") or {}).get("audio")
    if not isinstance(audio, dict):
      raise TalkjaxError("model_conf has no modalities.audio", path=path, fix=fix)
    missing = [k for k in _MODEL_KEYS if k not in conf] + [
        f"modalities.audio.{k}" for k in _AUDIO_KEYS
        if k not in audio and k not in ("conv_pos_pre_ln", "learned_alibi_scale_per_layer")]
    if missing:
      raise TalkjaxError(f"model_conf lacks {', '.join(missing)}", path=path, fix=fix)
    if audio.get("learned_alibi"):
      raise TalkjaxError("learned_alibi=true (a stored ALiBi table) is not supported; "
                         "emotion2vec models compute it", path=path, fix=fix)
    mode = str(audio["extractor_mode"])
    if mode not in ("layer_norm", "default"):
      raise TalkjaxError(f"extractor_mode={mode!r}: expected layer_norm or default",
                         path=path, fix=fix)
    values = {k: conf[k] for k in _MODEL_KEYS}
    values.update({k: audio.get(k, False) for k in _AUDIO_KEYS})
    values["feature_encoder_spec"] = _parse_spec(audio["feature_encoder_spec"], path)
    values["extractor_mode"] = mode
    types = {f.name: type(f.default) for f in dataclasses.fields(cls)}
    try:
      cfg = cls(**{k: v if types[k] in (tuple, str) else types[k](v) for k, v in values.items()})
    except (TypeError, ValueError) as e:
      raise TalkjaxError(f"model_conf has a value of the wrong type ({e})", path=path,
                         fix=fix) from None
    if cfg.embed_dim % cfg.num_heads or cfg.num_alibi_heads > cfg.num_heads:
      raise TalkjaxError(f"embed_dim={cfg.embed_dim}, num_heads={cfg.num_heads}, "
                         f"num_alibi_heads={cfg.num_alibi_heads} do not fit together",
                         path=path, fix=fix)
    return cfg


def _parse_spec(spec, path) -> tuple[tuple[int, int, int], ...]:
  """FunASR writes the conv stack as a Python expression, e.g.
  "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"; it is read here as
  data (literal lists of int triples joined by + and repeated by *), never evaluated."""
  import ast
  fix = "write modalities.audio.feature_encoder_spec as in FunASR's configs"

  def value(node):
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
      return value(node.left) + value(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
      return value(node.left) * ast.literal_eval(node.right)
    return list(ast.literal_eval(node))

  try:
    layers = value(ast.parse(spec, mode="eval").body) if isinstance(spec, str) else list(spec)
    layers = tuple(tuple(int(v) for v in layer) for layer in layers)
  except (SyntaxError, ValueError, TypeError):
    raise TalkjaxError(f"cannot read feature_encoder_spec {spec!r}", path=path,
                       fix=fix) from None
  if not layers or any(len(layer) != 3 for layer in layers):
    raise TalkjaxError(f"feature_encoder_spec {spec!r}: expected (channels, kernel, stride) "
                       "triples", path=path, fix=fix)
  return layers


def alibi_slopes(heads: int) -> np.ndarray:
  """ALiBi's geometric head slopes (for a head count that is not a power of two: those of
  the power below, then every other slope of twice that)."""
  def power_of_2(n):
    start = 2 ** (-(2 ** -(math.log2(n) - 3)))
    return [start * start ** i for i in range(n)]
  if math.log2(heads).is_integer():
    return np.asarray(power_of_2(heads))
  below = 2 ** math.floor(math.log2(heads))
  return np.asarray(power_of_2(below) + list(alibi_slopes(2 * below)[0::2][:heads - below]))


def frame_count(config: Emotion2vecConfig, samples: int) -> int:
  for _, kernel, stride in config.feature_encoder_spec:
    samples = (samples - kernel) // stride + 1
  return samples


def _layer_norm(name, eps=1e-5, affine=True):
  return nn.LayerNorm(epsilon=eps, use_scale=affine, use_bias=affine, name=name)


class AltBlock(nn.Module):
  config: Emotion2vecConfig

  @nn.compact
  def __call__(self, x, bias, key_mask):
    c = self.config
    b, t, d = x.shape
    heads = c.num_heads
    norm1 = _layer_norm("norm1", c.norm_eps, c.norm_affine)
    norm2 = _layer_norm("norm2", c.norm_eps, c.norm_affine)

    def attention(h):
      qkv = nn.Dense(3 * d, name="qkv")(h).reshape(b, t, 3, heads, d // heads)
      q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
      logits = (q * (d // heads) ** -0.5) @ k.transpose(0, 1, 3, 2)
      if bias is not None:
        logits = logits.at[:, :bias.shape[1]].add(bias)
      logits = jnp.where(key_mask[:, None, None, :], logits, -1e30)
      out = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype) @ v
      return nn.Dense(d, name="proj")(out.transpose(0, 2, 1, 3).reshape(b, t, d))

    def mlp(h):
      h = nn.gelu(nn.Dense(int(d * c.mlp_ratio), name="fc1")(h), approximate=False)
      return nn.Dense(d, name="fc2")(h)

    if c.layer_norm_first:
      x = x + _Named(attention, name="attn")(norm1(x))
      r = _Named(mlp, name="mlp")(norm2(x))
      return r + r
    x = norm1(x + _Named(attention, name="attn")(x))
    return norm2(x + _Named(mlp, name="mlp")(x))


class _Named(nn.Module):
  """Runs `fn` inside a named scope, so its Dense layers get FunASR's nesting (attn/qkv,
  mlp/fc1)."""
  fn: object

  @nn.compact
  def __call__(self, x):
    return self.fn(x)


class Emotion2vec(nn.Module):
  """(B, samples) 16 kHz audio (already layer-normed, as the release feeds it) -> features
  (B, T, embed_dim) and the (B, T) mask of the frames that hear audio."""
  config: Emotion2vecConfig

  @nn.compact
  def __call__(self, audio, mask=None):
    c = self.config
    x = audio[..., None].astype(jnp.float32)
    heard = jnp.ones(audio.shape, bool) if mask is None else mask.astype(bool)
    frames = heard[..., None].astype(jnp.float32)
    for i, (channels, kernel, stride) in enumerate(c.feature_encoder_spec):
      x = nn.Conv(channels, (kernel,), strides=(stride,), padding="VALID", use_bias=False,
                  name=f"conv_{i}")(x)
      # a frame is audio when every sample under its receptive field is (the lengths
      # FunASR derives from a padding mask)
      frames = jax.lax.reduce_window(frames, jnp.inf, jax.lax.min, (1, kernel, 1),
                                     (1, stride, 1), "VALID")
      if c.extractor_mode == "layer_norm":
        x = _layer_norm(f"conv_norm_{i}")(x)
      elif i == 0:
        x = nn.GroupNorm(num_groups=channels, epsilon=1e-5, name="conv_norm_0")(x)
      x = nn.gelu(x, approximate=False)
    key_mask = frames[..., 0] > 0
    x = _layer_norm("project_norm")(x)
    x = nn.Dense(c.embed_dim, name="project")(x)

    pos = x
    if c.conv_pos_pre_ln:
      pos = _layer_norm("pos_pre_norm")(pos)
    k = c.pos_kernel
    for i in range(c.conv_pos_depth):
      pos = nn.Conv(c.embed_dim, (k,), padding=[(k // 2, k // 2)],
                    feature_group_count=c.conv_pos_groups, name=f"pos_conv_{i}")(pos)
      if k % 2 == 0:
        pos = pos[:, :-1]
      pos = nn.gelu(_layer_norm(f"pos_norm_{i}", affine=False)(pos), approximate=False)
    x = x + pos

    b, t = x.shape[:2]
    n = c.num_extra_tokens
    biases = [None] * (c.prenet_depth + c.depth)
    if c.use_alibi_encoder:
      scale = jnp.maximum(self.param("alibi_scale", nn.initializers.ones, c.alibi_scale_shape),
                          0.0)
      distance = -np.abs(np.arange(t)[None] - np.arange(t)[:, None]).astype(np.float32)
      base = jnp.asarray(alibi_slopes(c.num_alibi_heads)[:, None, None] * distance, jnp.float32)
      base = jnp.pad(base, ((0, 0), (n, 0), (n, 0)))[None]        # (1, H, n+T, n+T)
      biases = [base * scale[min(i, scale.shape[0] - 1)] for i in range(len(biases))]
    if n:
      tokens = self.param("extra_tokens", nn.initializers.normal(1.0), (1, n, c.embed_dim))
      x = jnp.concatenate([jnp.broadcast_to(tokens, (b, n, c.embed_dim)), x], axis=1)
      key_mask = jnp.concatenate([jnp.ones((b, n), bool), key_mask], axis=1)

    if not c.layer_norm_first:   # the prenet's input norm (post-LN layout only)
      x = _layer_norm("context_norm", c.norm_eps, c.norm_affine)(x)
    for i in range(c.prenet_depth):
      x = AltBlock(c, name=f"prenet_{i}")(x, biases[i], key_mask)
    for i in range(c.depth):
      x = AltBlock(c, name=f"block_{i}")(x, biases[c.prenet_depth + i], key_mask)
    if c.layer_norm_first:
      x = _layer_norm("norm", c.norm_eps, c.norm_affine)(x)
    return x[:, n:], key_mask[:, n:]


def layer_norm_audio(audio, mask=None, eps: float = 1e-5):
  """(B, samples) -> zero mean, unit variance per row over the samples `mask` marks
  (F.layer_norm over the whole segment, the release's input normalisation); unmarked
  samples stay 0."""
  audio = audio.astype(jnp.float32)
  w = jnp.ones_like(audio) if mask is None else mask.astype(jnp.float32)
  count = jnp.maximum(w.sum(-1, keepdims=True), 1.0)
  mean = (audio * w).sum(-1, keepdims=True) / count
  var = (((audio - mean) * w) ** 2).sum(-1, keepdims=True) / count
  return (audio - mean) * jax.lax.rsqrt(var + eps) * w


def pooled(features, frame_mask):
  """(B, T, D) features -> (B, D): their mean over the frames that hear audio."""
  w = frame_mask.astype(features.dtype)[..., None]
  return (features * w).sum(1) / jnp.maximum(w.sum(1), 1.0)
