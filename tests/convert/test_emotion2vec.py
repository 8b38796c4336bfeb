"""Flax emotion2vec against FunASR's PyTorch `Emotion2vec`, through the importer.

Each test writes a FunASR model folder (config.yaml in FunASR's format + a torch.save'd
model.pt of random weights), converts it, and compares features (float32, rel. error
< 1e-4). Two layouts: emotion2vec's own (post-LN, layer-norm conv stack, per-head ALiBi
scale, extra tokens, a pre-training decoder and the 9-class head that are dropped) and the
other branches the architecture allows (pre-LN, GroupNorm conv stack, per-layer ALiBi
scale, a pre-LN positional encoder with an even kernel, ALiBi on only some heads).
"""

import emotion2vec_layout as layout
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from talkjax.audio.emotion2vec import Emotion2vec, frame_count, layer_norm_audio, pooled
from talkjax.convert import emotion2vec as e2v
from talkjax.errors import TalkjaxError

def _audio(batch, samples, seed=1):
  rng = np.random.default_rng(seed)
  t = np.arange(samples) / 16000
  return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 300, (batch, 1)) * t)
          + 0.05 * rng.standard_normal((batch, samples))).astype(np.float32)


def _rel(a, b):
  return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("variant", [layout.EMOTION2VEC, layout.OTHER],
                         ids=["emotion2vec", "other-branches"])
def test_features_match_funasr(tmp_path, variant):
  reference = layout.write_folder(tmp_path / "e2v", variant)
  folder, config, report = e2v.convert_folder(tmp_path / "e2v", tmp_path / "out")
  loaded_config, params = e2v.load_converted(folder)
  assert loaded_config == config
  audio = _audio(2, 8000)
  normed = np.asarray(jax.jit(layer_norm_audio)(jnp.asarray(audio)))
  with torch.no_grad():
    want = np.stack([reference.extract_features(
        torch.nn.functional.layer_norm(torch.from_numpy(a), a.shape)[None])["x"][0].numpy()
        for a in audio])
  model = Emotion2vec(config)
  got, frames = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, jnp.asarray(normed))
  assert got.shape == want.shape == (2, frame_count(config, 8000), 32)
  assert bool(frames.all())
  assert _rel(np.asarray(got), want) < 1e-4
  assert _rel(np.asarray(pooled(got, frames)), want.mean(1)) < 1e-4
  dropped = [line for line in report if "dropped" in line]
  assert any(line.startswith("proj.weight") for line in dropped)
  if variant is layout.EMOTION2VEC:
    assert any(".decoder." in line for line in dropped)
  mapped = len(report) - len(dropped)
  assert mapped == len(jax.tree.leaves(params))


def test_padding_mask_matches_funasr(tmp_path):
  """Audio followed by zeros: with the mask, the heard frames equal FunASR's with its
  padding mask (keys of padded frames left out of attention)."""
  reference = layout.write_folder(tmp_path / "e2v", layout.EMOTION2VEC, wrap=False)
  folder, config, _ = e2v.convert_folder(tmp_path / "e2v", tmp_path / "out")
  params = e2v.load_converted(folder)[1]
  heard = 5200
  audio = _audio(1, 8000)
  audio[:, heard:] = 0
  mask = np.zeros_like(audio, bool)
  mask[:, :heard] = True
  normed = jax.jit(layer_norm_audio)(jnp.asarray(audio), jnp.asarray(mask))
  with torch.no_grad():
    want = reference.extract_features(torch.from_numpy(np.asarray(normed)),
                                      padding_mask=torch.from_numpy(~mask))["x"][0].numpy()
  model = Emotion2vec(config)
  got, frames = jax.jit(lambda p, x, m: model.apply({"params": p}, x, m))(params, normed,
                                                                         jnp.asarray(mask))
  valid = frame_count(config, heard)
  assert int(frames.sum()) == valid
  assert _rel(np.asarray(got[0, :valid]), want[:valid]) < 1e-4


def test_bad_folders_are_named(tmp_path):
  layout.write_folder(tmp_path / "e2v", layout.EMOTION2VEC)
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
  text = layout.config_yaml(layout.EMOTION2VEC)
  (tmp_path / "e2v" / "config.yaml").write_text(text.replace("model: Emotion2vec",
                                                             "model: Paraformer"))
  with pytest.raises(TalkjaxError, match="'Paraformer' model, not Emotion2vec"):
    e2v.convert_folder(tmp_path / "e2v", tmp_path / "out")
  (tmp_path / "e2v" / "config.yaml").write_text(text.replace(
      "'[(16, 10, 5)] + [(16, 3, 2)] * 2 + [(16,2,2)]'", "'__import__(\"os\").getcwd()'"))
  with pytest.raises(TalkjaxError, match="cannot read feature_encoder_spec"):
    e2v.convert_folder(tmp_path / "e2v", tmp_path / "out")
  assert not (tmp_path / "out").exists()
