"""MEMO's memory-guided temporal attention against a naive reference that keeps every past
frame: clip by clip, the memory's output must equal attention over all remembered keys
and values with each frame's decay weight written out from its age (float64 NumPy)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.nn.memory_attention import (
  TemporalMemoryTransformer,
  empty_state,
  key_map,
  memory_attention,
  query_map,
  update_state,
)

DECAY = 0.9


def _softmax(x, axis):
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def _rel(a, b):
  return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def _naive(q, k, v, past):
  """Attention of the clip's frames over themselves and every remembered frame.

  q, k, v: (batch, T, heads, d) raw projections; past: the remembered clips, oldest
  first, each (k, v) raw. A remembered frame j of a clip of P frames with A frames
  remembered after its clip weighs lambda^(1 + A + 2 (P-1-j)) in the numerator and
  lambda^(1 + A + (P-1-j)) in the normaliser; the clip's own frames weigh 1."""
  pq = _softmax(q, -1) * q.shape[-1] ** -0.5
  keys, values, wn, wd = [_softmax(k, 1)], [v], [np.ones(k.shape[1])], [np.ones(k.shape[1])]
  after = 0
  for pk, pv in reversed(past):
    p = pk.shape[1]
    age = np.arange(p - 1, -1, -1)
    keys.insert(0, _softmax(pk, 1))
    values.insert(0, pv)
    wn.insert(0, DECAY ** (1 + after + 2 * age))
    wd.insert(0, DECAY ** (1 + after + age))
    after += p
  keys, values = np.concatenate(keys, 1), np.concatenate(values, 1)
  wn, wd = np.concatenate(wn), np.concatenate(wd)
  scores = np.einsum("bthd,bshd->bhts", pq, keys)          # O(T x every frame seen)
  num = np.einsum("bhts,s,bshe->bthe", scores, wn, values)
  den = np.einsum("bhts,s->bth", scores, wd)
  return num / np.maximum(den, 1e-10)[..., None]


def test_memory_equals_attention_over_every_past_frame_clip_by_clip():
  rng = np.random.default_rng(0)
  b, h, d, t = 3, 2, 8, 16
  step = jax.jit(lambda s, q, k, v, pk, pv: (
      memory_attention(query_map(q), key_map(k), v, update_state(s, key_map(pk), pv, DECAY),
                       DECAY), update_state(s, key_map(pk), pv, DECAY)))
  state, past = empty_state(b, h, d), []
  worst = 0.0
  for clip in range(12):              # clips of varying past lengths, as after a resume
    p = (16, 16, 4, 16)[clip % 4]
    q, k, v = (rng.standard_normal((b, t, h, d)) * 2 for _ in range(3))
    pk, pv = (rng.standard_normal((b, p, h, d)) * 2 for _ in range(2))
    past.append((pk, pv))
    out, state = step(state, *(np.float32(a) for a in (q, k, v, pk, pv)))
    worst = max(worst, _rel(out, _naive(q, k, v, past)))
  assert worst < 1e-5
  assert state["kv"].shape == (b, h, d, d) and state["z"].shape == (b, h, d)


def test_an_empty_memory_is_plain_bidirectional_linear_attention():
  rng = np.random.default_rng(1)
  q, k, v = (rng.standard_normal((2, 5, 2, 4)) for _ in range(3))
  got = jax.jit(lambda q, k, v: memory_attention(query_map(q), key_map(k), v,
                                                 empty_state(2, 2, 4)))(*np.float32([q, k, v]))
  assert _rel(got, _naive(q, k, v, [])) < 1e-5


# ---- the whole temporal module against a NumPy transcription of the same equations ----

def _group_norm(x, scale, bias, groups, eps=1e-6):
  n, hh, ww, c = x.shape
  g = x.reshape(n, hh, ww, groups, c // groups)
  mu = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  return ((g - mu) / np.sqrt(var + eps)).reshape(x.shape) * scale + bias


def _layer_norm(x, p):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _dense(x, p, n_in=1):
  k = p["kernel"]
  y = np.tensordot(x, k, axes=(list(range(x.ndim - n_in, x.ndim)), list(range(n_in))))
  return y + p["bias"] if "bias" in p else y


def _gelu(x):
  from scipy.special import erf
  return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _numpy_module(params, x, pasts, heads, groups, blocks=2, attentions=2):
  """The module on clip x (B, F, H, W, C), remembering every clip in `pasts` (oldest first)."""
  b, f, hh, ww, c = x.shape

  def tokens(a):
    n = a.shape[1]
    y = _group_norm(a.reshape(b * n, hh, ww, c), params["norm"]["scale"],
                    params["norm"]["bias"], groups)
    y = _dense(y, params["proj_in"])
    return y.reshape(b, n, hh * ww, -1).transpose(0, 2, 1, 3).reshape(b * hh * ww, n, -1)

  y, past_tokens = tokens(x), [tokens(p) for p in pasts]
  for j in range(blocks):
    bp = params[f"transformer_blocks_{j}"]
    for i in range(attentions):
      ap, norm = bp[f"attention_blocks_{i}"], bp[f"norms_{i}"]
      hn = _layer_norm(y, norm)
      qkv = [_dense(hn, ap[n]) for n in ("to_q", "to_k", "to_v")]
      remembered = [(_dense(_layer_norm(pt, norm), ap["to_k"]),
                     _dense(_layer_norm(pt, norm), ap["to_v"])) for pt in past_tokens]
      out = _naive(*qkv, remembered)
      y = _dense(out, ap["to_out_0"], n_in=2) + y
    ff = bp["ff"]
    hproj = _dense(_layer_norm(y, bp["ff_norm"]), ff["net_0"]["proj"])
    y = _dense(hproj[..., 0, :] * _gelu(hproj[..., 1, :]), ff["net_2"]) + y
  y = _dense(y, params["proj_out"]).reshape(b, hh * ww, f, c).transpose(0, 2, 1, 3)
  return y.reshape(x.shape) + x


def _random_params(params, rng):
  return jax.tree.map(lambda p: np.float32(rng.standard_normal(p.shape) * 0.3), params)


def test_temporal_module_over_many_clips_equals_the_naive_module():
  rng = np.random.default_rng(2)
  b, f, hh, ww, c, heads, groups = 2, 4, 2, 3, 16, 2, 4
  module = TemporalMemoryTransformer(c, heads=heads, groups=groups)
  x0 = jnp.zeros((b, f, hh, ww, c))
  memory = module.empty_memory(b, hh, ww)
  params = nn.meta.unbox(jax.jit(module.init)(jax.random.PRNGKey(0), x0, memory)["params"])
  forward = jax.jit(lambda p, x, m: module.apply({"params": p}, x, m))
  identity = forward(params, np.float32(rng.standard_normal(x0.shape)), memory)
  params = _random_params(params, rng)            # proj_out is zero at init: perturb it all
  remember = jax.jit(lambda p, m, past: module.apply({"params": p}, m, past,
                                                     method=TemporalMemoryTransformer.remember))
  clips = [rng.standard_normal((b, f, hh, ww, c)) for _ in range(8)]
  pasts, worst = [], 0.0
  for n, clip in enumerate(clips):
    if n:                                          # the previous clip becomes the past
      pasts.append(clips[n - 1])
      memory = remember(params, memory, np.float32(clips[n - 1]))
    got = forward(params, np.float32(clip), memory)
    worst = max(worst, _rel(got, _numpy_module(params, clip, pasts, heads, groups)))
  assert worst < 1e-5
  assert jax.tree.map(jnp.shape, memory) == jax.tree.map(jnp.shape, module.empty_memory(b, hh, ww))
  assert not np.allclose(identity, 0)


def test_new_module_is_the_identity_and_no_gradient_reaches_the_past():
  rng = np.random.default_rng(3)
  module = TemporalMemoryTransformer(16, heads=2, groups=4)
  x = np.float32(rng.standard_normal((1, 3, 2, 2, 16)))
  memory = module.empty_memory(1, 2, 2)
  params = nn.meta.unbox(jax.jit(module.init)(jax.random.PRNGKey(0), x, memory)["params"])
  forward = jax.jit(lambda p, x, m: module.apply({"params": p}, x, m))
  np.testing.assert_array_equal(forward(params, x, memory), x)
  params = _random_params(params, rng)

  def loss(past):
    m = module.apply({"params": params}, memory, past, method=TemporalMemoryTransformer.remember)
    return module.apply({"params": params}, x, m).sum()
  grad = jax.jit(jax.grad(loss))(np.float32(rng.standard_normal((1, 4, 2, 2, 16))))
  assert np.all(grad == 0)


def test_backprop_past_lets_the_exact_gradient_through_and_changes_no_value():
  rng = np.random.default_rng(4)
  shut, open_ = (TemporalMemoryTransformer(16, heads=2, groups=4, backprop_past=flag)
                 for flag in (False, True))
  x = np.float32(rng.standard_normal((1, 3, 2, 2, 16)))
  past = np.float32(rng.standard_normal((1, 4, 2, 2, 16)))
  direction = np.float32(rng.standard_normal(past.shape))
  memory = shut.empty_memory(1, 2, 2)
  params = nn.meta.unbox(jax.jit(shut.init)(jax.random.PRNGKey(0), x, memory)["params"])
  params = _random_params(params, rng)

  def loss(module):
    def total(past):
      m = module.apply({"params": params}, memory, past,
                       method=TemporalMemoryTransformer.remember)
      return (module.apply({"params": params}, x, m) ** 2).sum()
    return jax.jit(total)
  held, through = loss(shut), loss(open_)
  assert held(past) == through(past)
  grad = jax.jit(jax.grad(loss(open_)))(past)
  h = 1e-2       # a central difference along one direction (float32: h^2 truncation)
  numeric = (float(through(past + h * direction)) - float(through(past - h * direction))) / (2 * h)
  assert abs(float(np.sum(grad * direction)) - numeric) < 2e-3 * abs(numeric)
  assert abs(numeric) > 1.0
