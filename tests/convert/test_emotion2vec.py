"""Flax emotion2vec against FunASR's PyTorch `Emotion2vec`, through the importer.

Each test writes a FunASR model folder (config.yaml in FunASR's format + a torch.save'd
model.pt of random weights), converts it, and compares features (float32, rel. error
< 1e-4). Two layouts: emotion2vec's own (post-LN, layer-norm conv stack, per-head ALiBi
scale, extra tokens, a pre-training decoder and the 9-class head that are dropped) and the
other branches the architecture allows (pre-LN, GroupNorm conv stack, per-layer ALiBi
scale, a pre-LN positional encoder with an even kernel, ALiBi on only some heads).
"""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from talkjax.audio.emotion2vec import Emotion2vec, frame_count, layer_norm_audio, pooled
from talkjax.convert import emotion2vec as e2v
from talkjax.errors import TalkjaxError

EMOTION2VEC_LAYOUT = dict(layer_norm_first="false", extractor_mode="layer_norm",
                          conv_pos_pre_ln="false", conv_pos_width=15, conv_pos_depth=3,
                          per_layer="false", alibi_heads=4, extra_tokens=3,
                          decoder=textwrap.indent(textwrap.dedent("""\
                              decoder:
                                decoder_dim: 16
                                decoder_groups: 4
                                decoder_kernel: 3
                                decoder_layers: 2
                                input_dropout: 0.1
                                add_positions_masked: false
                                add_positions_all: false
                                decoder_residual: true
                                projection_layers: 1
                                projection_ratio: 2.0"""), "      "))
OTHER_LAYOUT = dict(layer_norm_first="true", extractor_mode="default", conv_pos_pre_ln="true",
                    conv_pos_width=8, conv_pos_depth=2, per_layer="true", alibi_heads=2,
                    extra_tokens=0, decoder="      decoder: null")


def _config_yaml(layout):
  # FunASR's config.yaml keys (emotion2vec_base's file, at tiny widths)
  return textwrap.dedent("""\
      model: Emotion2vec
      model_conf:
        loss_beta: 0.0
        loss_scale: null
        depth: 2
        start_drop_path_rate: 0.0
        end_drop_path_rate: 0.0
        num_heads: 4
        norm_eps: 1e-05
        norm_affine: true
        encoder_dropout: 0.1
        post_mlp_drop: 0.1
        attention_dropout: 0.1
        activation_dropout: 0.0
        dropout_input: 0.0
        layerdrop: 0.05
        embed_dim: 32
        mlp_ratio: 4.0
        layer_norm_first: {layer_norm_first}
        average_top_k_layers: 2
        end_of_block_targets: false
        clone_batch: 8
        normalize: true
        modalities:
          audio:
            type: AUDIO
            prenet_depth: 2
            prenet_layerdrop: 0.05
            prenet_dropout: 0.1
            start_drop_path_rate: 0.0
            end_drop_path_rate: 0.0
            num_extra_tokens: {extra_tokens}
            init_extra_token_zero: true
            use_alibi_encoder: true
            alibi_scale: 1.0
            learned_alibi: false
            alibi_max_pos: null
            learned_alibi_scale: true
            learned_alibi_scale_per_head: true
            learned_alibi_scale_per_layer: {per_layer}
            num_alibi_heads: {alibi_heads}
            model_depth: 2
            local_grad_mult: 1.0
            extractor_mode: {extractor_mode}
            feature_encoder_spec: '[(16, 10, 5)] + [(16, 3, 2)] * 2 + [(16,2,2)]'
            conv_pos_width: {conv_pos_width}
            conv_pos_groups: 4
            conv_pos_depth: {conv_pos_depth}
            conv_pos_pre_ln: {conv_pos_pre_ln}
      {decoder}
      """).format(**layout)


def _reference(config_text, seed=0):
  from funasr.models.emotion2vec.model import Emotion2vec as Reference
  from omegaconf import OmegaConf
  torch.manual_seed(seed)
  # read as FunASR reads config.yaml (OmegaConf: `1e-05` is a float, not a string)
  conf = OmegaConf.to_container(OmegaConf.create(config_text))["model_conf"]
  model = Reference(model_conf=conf, vocab_size=9).eval()
  with torch.no_grad():   # every weight random, so each mapping is exercised
    for name, p in model.named_parameters():
      if "alibi_scale" in name:
        p.copy_(0.5 + torch.rand_like(p))
      elif name.endswith("bias") or "norm" in name or "extra_tokens" in name:
        p.add_(0.1 * torch.randn_like(p))
  return model


def _write_folder(folder, layout, *, wrap=True, seed=0):
  text = _config_yaml(layout)
  model = _reference(text, seed)
  folder.mkdir(parents=True)
  (folder / "config.yaml").write_text(text)
  state = model.state_dict()
  torch.save({"model": state} if wrap else state, folder / "model.pt")
  (folder / "tokens.txt").write_text("\n".join(["angry", "disgusted", "fearful", "happy",
                                                "neutral", "other", "sad", "surprised",
                                                "<unk>"]) + "\n")
  return model


def _audio(batch, samples, seed=1):
  rng = np.random.default_rng(seed)
  t = np.arange(samples) / 16000
  return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 300, (batch, 1)) * t)
          + 0.05 * rng.standard_normal((batch, samples))).astype(np.float32)


def _rel(a, b):
  return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("layout", [EMOTION2VEC_LAYOUT, OTHER_LAYOUT],
                         ids=["emotion2vec", "other-branches"])
def test_features_match_funasr(tmp_path, layout):
  reference = _write_folder(tmp_path / "e2v", layout)
  folder, config, report = e2v.convert_folder(tmp_path / "e2v", tmp_path / "out")
  loaded_config, params = e2v.load_converted(folder)
  assert loaded_config == config
  audio = _audio(2, 8000)
  normed = np.asarray(layer_norm_audio(jnp.asarray(audio)))
  with torch.no_grad():
    want = np.stack([reference.extract_features(
        torch.nn.functional.layer_norm(torch.from_numpy(a), a.shape)[None])["x"][0].numpy()
        for a in audio])
  got, frames = Emotion2vec(config).apply({"params": params}, jnp.asarray(normed))
  assert got.shape == want.shape == (2, frame_count(config, 8000), 32)
  assert bool(frames.all())
  assert _rel(np.asarray(got), want) < 1e-4
  assert _rel(np.asarray(pooled(got, frames)), want.mean(1)) < 1e-4
  dropped = [line for line in report if "dropped" in line]
  assert any(line.startswith("proj.weight") for line in dropped)
  if layout is EMOTION2VEC_LAYOUT:
    assert any(".decoder." in line for line in dropped)
  mapped = len(report) - len(dropped)
  assert mapped == len(jax.tree.leaves(params))


def test_padding_mask_matches_funasr(tmp_path):
  """Audio followed by zeros: with the mask, the heard frames equal FunASR's with its
  padding mask (keys of padded frames left out of attention)."""
  reference = _write_folder(tmp_path / "e2v", EMOTION2VEC_LAYOUT, wrap=False)
  folder, config, _ = e2v.convert_folder(tmp_path / "e2v", tmp_path / "out")
  params = e2v.load_converted(folder)[1]
  heard = 5200
  audio = _audio(1, 8000)
  audio[:, heard:] = 0
  mask = np.zeros_like(audio, bool)
  mask[:, :heard] = True
  normed = layer_norm_audio(jnp.asarray(audio), jnp.asarray(mask))
  with torch.no_grad():
    want = reference.extract_features(torch.from_numpy(np.asarray(normed)),
                                      padding_mask=torch.from_numpy(~mask))["x"][0].numpy()
  got, frames = Emotion2vec(config).apply({"params": params}, normed, jnp.asarray(mask))
  valid = frame_count(config, heard)
  assert int(frames.sum()) == valid
  assert _rel(np.asarray(got[0, :valid]), want[:valid]) < 1e-4


def test_bad_folders_are_named(tmp_path):
  _write_folder(tmp_path / "e2v", EMOTION2VEC_LAYOUT)
  with pytest.raises(TalkjaxError, match="no config.yaml"):
    e2v.convert_folder(tmp_path, tmp_path / "out")
  # a tensor of the wrong shape, and one missing: one error names both
  state = torch.load(tmp_path / "e2v" / "model.pt")["model"]
  state["blocks.1.mlp.fc1.weight"] = torch.zeros(3, 3)
  del state["modality_encoders.AUDIO.extra_tokens"]
  torch.save(state, tmp_path / "e2v" / "model.pt")
  with pytest.raises(TalkjaxError, match=r"mis-shaped: blocks\.1\.mlp\.fc1\.weight.*missing: "
                                         r"extra_tokens"):
    e2v.convert_folder(tmp_path / "e2v", tmp_path / "out")
  # a truncated model.pt
  data = (tmp_path / "e2v" / "model.pt").read_bytes()
  (tmp_path / "e2v" / "model.pt").write_bytes(data[:len(data) // 2])
  with pytest.raises(TalkjaxError, match="zip-format"):
    e2v.convert_folder(tmp_path / "e2v", tmp_path / "out")
  # a config of another model, and a conv stack written as code
  text = _config_yaml(EMOTION2VEC_LAYOUT)
  (tmp_path / "e2v" / "config.yaml").write_text(text.replace("model: Emotion2vec",
                                                             "model: Paraformer"))
  with pytest.raises(TalkjaxError, match="'Paraformer' model, not Emotion2vec"):
    e2v.convert_folder(tmp_path / "e2v", tmp_path / "out")
  (tmp_path / "e2v" / "config.yaml").write_text(text.replace(
      "'[(16, 10, 5)] + [(16, 3, 2)] * 2 + [(16,2,2)]'", "'__import__(\"os\").getcwd()'"))
  with pytest.raises(TalkjaxError, match="cannot read feature_encoder_spec"):
    e2v.convert_folder(tmp_path / "e2v", tmp_path / "out")
  assert not (tmp_path / "out").exists()
