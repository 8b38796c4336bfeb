"""Flax wav2vec2 against transformers' PyTorch Wav2Vec2Model, through `talkjax convert`."""

import json

import jax
import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config as HFConfig
from transformers import Wav2Vec2Model as HFModel

from talkjax.audio.align import interpolate_linear
from talkjax.audio.wav2vec2 import Wav2Vec2Model, load_pretrained
from talkjax.cli import main
from talkjax.errors import TalkjaxError


def _tiny_hf(stable: bool, seed: int = 0):
  config = HFConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3),
                    conv_stride=(5, 2, 2), conv_bias=stable, num_conv_pos_embeddings=16,
                    num_conv_pos_embedding_groups=4, vocab_size=12,
                    feat_extract_norm="layer" if stable else "group",
                    do_stable_layer_norm=stable)
  torch.manual_seed(seed)
  model = HFModel(config).eval()
  # random (not default-initialised) norms and biases, so every mapping is exercised
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias") or "norm" in name:
        p.add_(0.1 * torch.randn_like(p))
  return model


def _save(model, folder, fmt):
  if fmt == "safetensors":
    model.save_pretrained(folder)
  else:
    folder.mkdir(parents=True)
    model.config.to_json_file(folder / "config.json")
    state = model.state_dict()
    if fmt == "bin_legacy_names":  # checkpoints saved before torch's parametrizations
      prefix = "encoder.pos_conv_embed.conv."
      state[prefix + "weight_g"] = state.pop(prefix + "parametrizations.weight.original0")
      state[prefix + "weight_v"] = state.pop(prefix + "parametrizations.weight.original1")
      state = {"wav2vec2." + k: v for k, v in state.items()}  # as in Wav2Vec2ForCTC
      state["lm_head.weight"] = torch.zeros(12, 32)
    torch.save(state, folder / "pytorch_model.bin")


_COMPILED = {}


def _compiled_apply(config):
  """One compiled forward per config, shared by the tests of this file."""
  if config not in _COMPILED:
    _COMPILED[config] = jax.jit(Wav2Vec2Model(config).apply, static_argnames="num_frames")
  return _COMPILED[config]


def _rel_err(a, b):
  return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("stable", [False, True], ids=["base_group", "large_layer"])
@pytest.mark.parametrize("fmt", ["safetensors", "bin", "bin_legacy_names"])
def test_every_hidden_state_matches(tmp_path, stable, fmt):
  hf = _tiny_hf(stable)
  _save(hf, tmp_path / "hf", fmt)
  out = tmp_path / "tj"
  assert main(["convert", "wav2vec2", "--src", str(tmp_path / "hf"), "--out", str(out)]) == 0
  config, params = load_pretrained(out)
  assert config.do_stable_layer_norm == stable
  audio = np.random.default_rng(0).standard_normal((2, 4000)).astype(np.float32)
  with torch.no_grad():
    ref = hf(torch.from_numpy(audio), output_hidden_states=True)
  got = _compiled_apply(config)({"params": params}, audio)
  assert len(got["hidden_states"]) == len(ref.hidden_states) == 3
  for a, b in zip(got["hidden_states"], ref.hidden_states):
    assert _rel_err(a, b.numpy()) < 1e-4
  assert _rel_err(got["last_hidden_state"], ref.last_hidden_state.numpy()) < 1e-4
  assert _rel_err(got["extract_features"], ref.extract_features.numpy()) < 1e-4


def test_interpolation_to_frame_count(tmp_path):
  hf = _tiny_hf(False)
  _save(hf, tmp_path / "hf", "safetensors")
  main(["convert", "wav2vec2", "--src", str(tmp_path / "hf"), "--out", str(tmp_path / "tj")])
  config, params = load_pretrained(tmp_path / "tj")
  audio = np.random.default_rng(1).standard_normal((1, 6400)).astype(np.float32)  # 0.4 s
  # the CNN output (before interpolation) from the PyTorch model, as reference input
  with torch.no_grad():
    cnn = hf.feature_extractor(torch.from_numpy(audio)).transpose(1, 2)[0].numpy()
  apply = _compiled_apply(config)
  for frames in (12, 7):  # 30 fps, and fewer frames than CNN features
    got = apply({"params": params}, audio, num_frames=frames)
    assert got["last_hidden_state"].shape == (1, frames, 32)
    assert all(h.shape == (1, frames, 32) for h in got["hidden_states"])
    expected = interpolate_linear(cnn, frames, align_corners=True)
    # extract_features = LayerNorm(interpolated CNN features)
    mean, std = expected.mean(-1, keepdims=True), expected.std(-1, keepdims=True)
    ln = params["feature_projection"]["layer_norm"]
    ref = (expected - mean) / np.sqrt(std ** 2 + 1e-5) * ln["scale"] + ln["bias"]
    assert _rel_err(got["extract_features"][0], ref) < 1e-4
    # and the transformer on top matches PyTorch fed the same interpolated features
    with torch.no_grad():
      proj, _ = hf.feature_projection(torch.from_numpy(expected[None]))
      ref_out = hf.encoder(proj, output_hidden_states=True)
    assert _rel_err(got["last_hidden_state"], ref_out.last_hidden_state.numpy()) < 1e-4


def test_convert_errors(tmp_path):
  with pytest.raises(TalkjaxError, match="config.json not found"):
    main(["--debug", "convert", "wav2vec2", "--src", str(tmp_path), "--out", str(tmp_path / "o")])
  (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 32}))
  assert main(["convert", "wav2vec2", "--src", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize("layers,message", [(3, "weights missing"), (1, "no place in the model")])
def test_config_that_does_not_match_the_weights(tmp_path, layers, message):
  _save(_tiny_hf(False), tmp_path / "hf", "safetensors")
  config = json.loads((tmp_path / "hf" / "config.json").read_text())
  config["num_hidden_layers"] = layers
  (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
  with pytest.raises(TalkjaxError, match=message):
    main(["--debug", "convert", "wav2vec2", "--src", str(tmp_path / "hf"),
          "--out", str(tmp_path / "o")])
