"""MEMO's audio module against diffusers' PyTorch joint attention and float64 NumPy.

Joint attention is compared with diffusers' `Attention` + `JointAttnProcessor2_0` (what
the authors build it from), weights copied by name; the emotion norm, the transformer
block and the whole module with a NumPy transcription of the equations, reading the
weights from the Flax tree. Every parameter is perturbed first, the zero-initialised
modulations included, so a zero init cannot hide a wrong formula.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention as TorchAttention
from diffusers.models.attention_processor import JointAttnProcessor2_0
from scipy.special import erf

from talkjax.convert.torch_names import flatten, unflatten
from talkjax.errors import TalkjaxError
from talkjax.nn.audio_module import (
  AudioModule,
  AudioTransformerBlock,
  EmoAdaLayerNorm,
  JointAttention,
)

HEADS, HEAD_DIM, DIM, CONTEXT_DIM = 4, 4, 16, 24   # diffusers: heads * dim_head = out_dim
B, F, C, INNER, GROUPS, AUDIO_DIM, LA, H, W = 2, 3, 32, 16, 8, 24, 5, 4, 4
LABELS = np.array([3, 7], np.int32)


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / np.abs(b).max())


def _normal(rng, *shape):
  return rng.standard_normal(shape).astype(np.float32)


def _init(model, *args):
  return nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), *args)["params"])


def _apply(model):
  """model.apply({"params": p}, *args) as one jitted program."""
  return jax.jit(lambda p, *args: model.apply({"params": p}, *args))


def _random_params(model, seed, *args):
  """Every parameter random around its usual scale (norm scales near 1, the zero-initialised
  modulations and biases nonzero), shaped as the model's init would (without running it)."""
  shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), *args)["params"])
  rng = np.random.default_rng(seed)
  std = {"kernel": 0.15, "bias": 0.1, "scale": 0.1, "embedding": 1.0}
  return unflatten({k: (float(k[-1] == "scale") + std[k[-1]] * rng.standard_normal(v.shape))
                    .astype(np.float32) for k, v in flatten(shapes).items()})


def _perturb(params, seed, scale=0.1):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: (np.asarray(p) + scale * rng.standard_normal(p.shape))
                      .astype(np.float32), params)


def _np(params):
  return jax.tree.map(lambda p: np.asarray(p, np.float64), params)


# --- float64 NumPy transcription -------------------------------------------------------

def ln(x, eps=1e-5, p=None):
  y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
  return y if p is None else y * p["scale"] + p["bias"]


def gn(x, groups, eps, p):
  n, h, w, c = x.shape
  g = x.reshape(n, h, w, groups, c // groups)
  g = (g - g.mean((1, 2, 4), keepdims=True)) / np.sqrt(g.var((1, 2, 4), keepdims=True) + eps)
  return g.reshape(x.shape) * p["scale"] + p["bias"]


def dense(x, p, n_in=1):
  y = np.tensordot(x, p["kernel"], axes=(list(range(x.ndim - n_in, x.ndim)),
                                         list(range(n_in))))
  return y + p["bias"] if "bias" in p else y


def softmax_attention(q, k, v):
  logits = np.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(q.shape[-1])
  w = np.exp(logits - logits.max(-1, keepdims=True))
  return np.einsum("nhqk,nkhd->nqhd", w / w.sum(-1, keepdims=True), v)


def self_attention(x, p):
  o = softmax_attention(dense(x, p["to_q"]), dense(x, p["to_k"]), dense(x, p["to_v"]))
  return dense(o, p["to_out_0"], 2)


def joint_attention(x, c, p, final):
  q, k, v = (np.concatenate([dense(x, p[f"to_{n}"]), dense(c, p[f"add_{n}_proj"])], axis=1)
             for n in "qkv")
  o = softmax_attention(q, k, v)
  lx = x.shape[1]
  ox = dense(o[:, :lx], p["to_out_0"], 2)
  return ox, (None if final else dense(o[:, lx:], p["to_add_out"], 2))


def geglu_ff(x, p):
  h = dense(x, p["net_0"]["proj"])
  gate = h[..., 1, :]
  return dense(h[..., 0, :] * 0.5 * gate * (1 + erf(gate / np.sqrt(2))), p["net_2"])


def emo_norm(x, labels, p):
  emb = p["class_embedder"]["embedding_table"]["embedding"][labels]
  mod = dense(emb / (1 + np.exp(-emb)), p["adaLN_modulation_1"])
  shift, scale = np.split(np.repeat(mod, x.shape[0] // len(labels), axis=0)[:, None], 2, -1)
  return ln(x) * (1 + scale) + shift


def block(x, audio, labels, p, final):
  h, a = emo_norm(x, labels, p["norm1"]), emo_norm(audio, labels, p["audio_norm1"])
  x = self_attention(h, p["attn1"]) + x
  audio = self_attention(a, p["audio_attn1"]) + audio
  h, a = emo_norm(x, labels, p["norm2"]), emo_norm(audio, labels, p["audio_norm2"])
  jx, ja = joint_attention(h, a, p["attn2"], final)
  x = jx + x
  x = geglu_ff(ln(x, p=p["norm3"]), p["ff"]) + x
  if final:
    return x, None
  audio = ja + audio
  return x, geglu_ff(ln(audio, p=p["audio_norm3"]), p["audio_ff"]) + audio


def audio_module(x, audio, labels, p, final):
  n, h, w, c = x.shape
  t = dense(gn(x, GROUPS, 1e-6, p["norm"]).reshape(n, h * w, c), p["proj_in"])
  t, a = block(t, audio, labels, p["transformer_blocks_0"], final)
  out = dense(t, p["proj_out"]).reshape(x.shape) + x
  return out, (None if final else a + audio)


# --- joint attention ----------------------------------------------------------------------

def _torch_joint(final):
  torch.manual_seed(int(final))
  return TorchAttention(query_dim=DIM, cross_attention_dim=DIM, added_kv_proj_dim=CONTEXT_DIM,
                        dim_head=HEAD_DIM, heads=HEADS, out_dim=DIM,
                        out_context_dim=CONTEXT_DIM, context_pre_only=final, bias=False,
                        processor=JointAttnProcessor2_0()).eval()


def _params_from_torch(module, expected):
  """torch Linear (out, in) -> (in, heads, head_dim) into heads, (heads, head_dim, out) out."""
  params = {}
  for name, lin in module.named_children():
    if not isinstance(lin, torch.nn.Linear) and name != "to_out":
      continue
    key, lin = ("to_out_0", lin[0]) if name == "to_out" else (name, lin)
    w = lin.weight.detach().numpy().T
    into_heads = key.startswith(("to_q", "to_k", "to_v", "add_"))
    p = {"kernel": w.reshape((w.shape[0], HEADS, HEAD_DIM) if into_heads
                             else (HEADS, HEAD_DIM, w.shape[1]))}
    if lin.bias is not None:
      b = lin.bias.detach().numpy()
      p["bias"] = b.reshape(HEADS, HEAD_DIM) if into_heads else b
    params[key] = p
  assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, expected)
  return params


def _joint_inputs(seed=0):
  rng = np.random.default_rng(seed)
  return _normal(rng, 3, 10, DIM), _normal(rng, 3, 6, CONTEXT_DIM)


@pytest.mark.parametrize("final", [False, True], ids=["joint", "final"])
def test_joint_attention_matches_diffusers(final):
  x, c = _joint_inputs()
  model = JointAttention(HEADS, HEAD_DIM, CONTEXT_DIM, final=final)
  torch_model = _torch_joint(final)
  params = _params_from_torch(torch_model, _init(model, x, c))
  assert ("to_add_out" in params) == (not final)
  assert {"add_q_proj", "add_k_proj", "add_v_proj", "to_out_0"} <= set(params)
  assert "bias" not in params["to_q"] and "bias" in params["add_q_proj"]
  with torch.no_grad():
    ref_x, ref_c = torch_model(torch.from_numpy(x), encoder_hidden_states=torch.from_numpy(c))
  out_x, out_c = _apply(model)(params, x, c)
  assert out_x.shape == x.shape
  assert _rel(out_x, ref_x.numpy()) < 1e-5
  if final:
    assert out_c is None
  else:
    assert out_c.shape == c.shape and _rel(out_c, ref_c.numpy()) < 1e-5


def test_joint_attention_matches_numpy_and_implementations_agree():
  x, c = _joint_inputs(1)
  model = JointAttention(HEADS, HEAD_DIM, CONTEXT_DIM)
  params = _perturb(_init(model, x, c), 1)
  ref_x, ref_c = joint_attention(np.float64(x), np.float64(c), _np(params), final=False)
  out = _apply(model)(params, x, c)
  assert _rel(out[0], ref_x) < 1e-5 and _rel(out[1], ref_c) < 1e-5
  einsum = _apply(JointAttention(HEADS, HEAD_DIM, CONTEXT_DIM, implementation="reference"))(
      params, x, c)
  for a, b in zip(einsum, out):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- emotion norm -------------------------------------------------------------------------

def test_emo_norm_starts_as_layer_norm_for_every_label():
  rng = np.random.default_rng(2)
  labels = np.arange(10, dtype=np.int32)            # the 9 emotions and the null class
  x = _normal(rng, 20, 7, DIM)
  norm = EmoAdaLayerNorm()
  params = _init(norm, x, labels)
  assert params["class_embedder"]["embedding_table"]["embedding"].shape == (10, DIM)
  assert not np.any(params["adaLN_modulation_1"]["kernel"])
  assert not np.any(params["adaLN_modulation_1"]["bias"])
  out = _apply(norm)(params, x, labels)
  assert float(np.abs(out - ln(np.float64(x))).max()) < 1e-5


def test_emo_norm_modulates_the_rows_of_each_sample_by_its_label():
  rng = np.random.default_rng(3)
  r, labels = 3, np.array([1, 5], np.int32)
  x = _normal(rng, 2 * r, 7, DIM)
  norm = EmoAdaLayerNorm()
  params = _perturb(_init(norm, x, labels), 3, scale=0.3)
  apply = _apply(norm)
  out = np.asarray(apply(params, x, labels))
  assert _rel(out, emo_norm(np.float64(x), labels, _np(params))) < 1e-5
  for b in range(2):                                # sample b's r rows use labels[b]
    rows = slice(b * r, (b + 1) * r)
    np.testing.assert_allclose(out[rows], apply(params, x[rows], labels[b:b + 1]),
                               rtol=1e-5, atol=1e-5)
  same = np.asarray(apply(params, x, labels[:1].repeat(2)))
  np.testing.assert_allclose(same[:r], out[:r], rtol=1e-5, atol=1e-5)
  assert _rel(same[r:], out[r:]) > 1e-2             # another label, another output
  with pytest.raises(TalkjaxError, match="cannot be split"):
    apply(params, x[:5], labels)


def _dropout_setup(batch, r=2, seed=4):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 9, batch).astype(np.int32)
  x = _normal(rng, batch * r, 1, 8)
  params = _perturb(_init(EmoAdaLayerNorm(), x, labels), seed, scale=1.0)
  run = jax.jit(lambda norm, p, x, lab, key: norm.apply(
      {"params": p}, x, lab, rngs={"dropout": jax.random.PRNGKey(key)}), static_argnums=0)
  apply = lambda norm, lab, key=0: np.asarray(run(norm, params, x, lab, key))
  det = apply(EmoAdaLayerNorm(), labels)
  null = apply(EmoAdaLayerNorm(), np.full_like(labels, 9))
  return labels, x, params, apply, det, null


def _dropped(out, det, null, r):
  """Per sample: True where its rows are the null-class output, False where unchanged."""
  is_null = np.all(np.isclose(out, null, atol=1e-6), axis=(1, 2)).reshape(-1, r)
  is_det = np.all(np.isclose(out, det, atol=1e-6), axis=(1, 2)).reshape(-1, r)
  assert np.all(is_null ^ is_det)                     # each row is one or the other
  assert np.all(is_null == is_null[:, :1])            # a sample's rows drop together
  return is_null[:, 0]


def test_emo_norm_label_dropout():
  labels, _, _, apply, det, null = _dropout_setup(2000)
  train = lambda p: EmoAdaLayerNorm(dropout=p, deterministic=False)
  np.testing.assert_allclose(apply(train(1.0), labels), null, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(apply(train(0.0), labels), det, rtol=1e-6, atol=1e-6)
  dropped = _dropped(apply(train(0.3), labels), det, null, 2)
  assert 0.2 < dropped.mean() < 0.4
  other_key = _dropped(apply(train(0.3), labels, key=1), det, null, 2)
  assert np.any(dropped != other_key)


class _TwoNorms(nn.Module):
  @nn.compact
  def __call__(self, x, labels):
    norm = lambda name: EmoAdaLayerNorm(dropout=0.5, deterministic=False, name=name)
    return norm("a")(x, labels), norm("b")(x, labels)


def test_every_emo_norm_draws_its_own_dropout():
  labels, x, params, _, det, null = _dropout_setup(400, r=1)
  a, b = jax.jit(lambda p, x, labels, key: _TwoNorms().apply(
      {"params": p}, x, labels, rngs={"dropout": key}))(
          {"a": params, "b": params}, x, labels, jax.random.PRNGKey(0))
  da, db = (_dropped(np.asarray(o), det, null, 1) for o in (a, b))
  assert 0.3 < da.mean() < 0.7 and 0.3 < db.mean() < 0.7
  assert np.any(da != db)


# --- block and module -----------------------------------------------------------------------

def _block_inputs(seed):
  rng = np.random.default_rng(seed)
  return (_normal(rng, B * F, H * W, INNER), _normal(rng, B * F, LA, AUDIO_DIM))


@pytest.mark.parametrize("final", [False, True], ids=["joint", "final"])
def test_transformer_block_matches_numpy(final):
  x, audio = _block_inputs(6)
  model = AudioTransformerBlock(INNER, HEADS, INNER // HEADS, AUDIO_DIM, final=final)
  params = _random_params(model, 6, x, audio, LABELS)
  ref_x, ref_a = block(np.float64(x), np.float64(audio), LABELS, _np(params), final)
  out_x, out_a = _apply(model)(params, x, audio, LABELS)
  assert out_x.shape == x.shape and _rel(out_x, ref_x) < 1e-4
  if final:
    assert out_a is None
  else:
    assert out_a.shape == audio.shape and _rel(out_a, ref_a) < 1e-4


def _module_inputs(seed):
  rng = np.random.default_rng(seed)
  return _normal(rng, B * F, H, W, C), _normal(rng, B * F, LA, AUDIO_DIM)


@pytest.mark.parametrize("final", [False, True], ids=["joint", "final"])
def test_audio_module_matches_numpy(final):
  x, audio = _module_inputs(7)
  model = AudioModule(HEADS, GROUPS, INNER, AUDIO_DIM, final=final)
  params = _random_params(model, 7, x, audio, LABELS)
  ref_x, ref_a = audio_module(np.float64(x), np.float64(audio), LABELS, _np(params), final)
  out_x, out_a = _apply(model)(params, x, audio, LABELS)
  assert out_x.shape == x.shape and _rel(out_x, ref_x) < 1e-4
  if final:
    assert out_a is None
  else:
    assert out_a.shape == audio.shape and _rel(out_a, ref_a) < 1e-4


def _expected_paths(final):
  emo = ["adaLN_modulation_1/kernel", "adaLN_modulation_1/bias",
         "class_embedder/embedding_table/embedding"]
  attn = ["to_q/kernel", "to_k/kernel", "to_v/kernel", "to_out_0/kernel", "to_out_0/bias"]
  joint = attn + [f"add_{n}_proj/{w}" for n in "qkv" for w in ("kernel", "bias")]
  ff = ["net_0/proj/kernel", "net_0/proj/bias", "net_2/kernel", "net_2/bias"]
  affine = ["scale", "bias"]
  parts = {"norm1": emo, "norm2": emo, "audio_norm1": emo, "audio_norm2": emo,
           "attn1": attn, "audio_attn1": attn, "attn2": joint, "norm3": affine, "ff": ff}
  if not final:
    parts.update({"audio_norm3": affine, "audio_ff": ff})
    joint.extend(["to_add_out/kernel", "to_add_out/bias"])
  paths = [f"transformer_blocks_0/{m}/{leaf}" for m, leaves in parts.items() for leaf in leaves]
  return sorted(paths + ["norm/scale", "norm/bias", "proj_in/kernel", "proj_in/bias",
                         "proj_out/kernel", "proj_out/bias"])


@pytest.mark.parametrize("final", [False, True], ids=["joint", "final"])
def test_parameter_names_shapes_and_axes(final):
  x, audio = _module_inputs(8)
  boxed = jax.eval_shape(AudioModule(HEADS, GROUPS, INNER, AUDIO_DIM, final=final).init,
                         jax.random.PRNGKey(0), x, audio, LABELS)["params"]
  flat = {"/".join(k): v for k, v in flatten(boxed).items()}
  assert sorted(flat) == _expected_paths(final)
  assert all(isinstance(v, nn.LogicallyPartitioned) and len(v.names) == v.value.ndim
             for v in flat.values())
  block_ = "transformer_blocks_0/"
  shape = lambda k: flat[block_ + k].value.shape
  assert flat["proj_in/kernel"].value.shape == (C, INNER)
  assert flat["proj_out/kernel"].value.shape == (INNER, C)
  assert shape("norm1/class_embedder/embedding_table/embedding") == (10, INNER)
  assert flat[block_ + "norm1/class_embedder/embedding_table/embedding"].names == (None,
                                                                                   "embed")
  assert shape("audio_norm2/adaLN_modulation_1/kernel") == (AUDIO_DIM, 2 * AUDIO_DIM)
  assert shape("attn2/add_k_proj/kernel") == (AUDIO_DIM, HEADS, INNER // HEADS)
  assert shape("attn2/add_k_proj/bias") == (HEADS, INNER // HEADS)
  assert shape("audio_attn1/to_out_0/kernel") == (HEADS, INNER // HEADS, AUDIO_DIM)
  if not final:
    assert shape("attn2/to_add_out/kernel") == (HEADS, INNER // HEADS, AUDIO_DIM)
    assert shape("audio_ff/net_0/proj/kernel") == (AUDIO_DIM, 2, 4 * AUDIO_DIM)
