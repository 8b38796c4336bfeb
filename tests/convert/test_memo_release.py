"""`talkjax convert memo` on a random-weight checkpoint in the release's exact layout
(memo_release_layout.py): every tensor is accounted for, and the converted networks
compute what the release's do — the SD blocks against diffusers' PyTorch UNet (float32,
relative error < 1e-4), the custom modules against float64 NumPy written from the
release's equations and reading the release's tensors by their names."""

from __future__ import annotations

import json
import pickle
import re
import shutil
import zipfile

import jax
import jax.numpy as jnp
import memo_release_layout as layout
import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel as TorchUNet
from scipy.special import erf

from talkjax.cli import main
from talkjax.convert.memo_release import load_converted
from talkjax.convert.torch_names import flatten, unflatten
from talkjax.models.memo import networks
from talkjax.models.memo.builders import memo_config
from talkjax.models.memo.model import Memo
from talkjax.nn.audio_module import AudioModule
from talkjax.nn.unet import UNet2DConditionModel, UNetConfig

DECAY = 0.9


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  root = tmp_path_factory.mktemp("memo") / "release"
  return root, layout.write_release(root)


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
  out = tmp_path_factory.mktemp("memo") / "converted"
  assert main(["convert", "memo", "--src", str(release[0]), "--out", str(out)]) == 0
  model, params = load_converted(out)
  return out, model, params


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / np.abs(b).max())


def _memo(model):
  import ml_collections
  return Memo(memo_config(ml_collections.ConfigDict(dict(model, clip={"frames": 4, "past": 3}))))


# ---- accounting -----------------------------------------------------------------------

def test_every_release_tensor_is_mapped_once_and_nothing_is_missing(release, converted, capsys):
  root, written = release
  out, model, params = converted
  report = (out / "report.txt").read_text().splitlines()
  for sub, tensors in written.items():
    name = "emotion_classifier" if sub.startswith("misc/") else sub
    named = [line.split(" -> ")[0].split(": ", 1)[1] for line in report
             if line.startswith(name + ": ") and "-> zeros" not in line]
    assert sorted(named) == sorted(tensors), sub
  zeros = [line for line in report if "-> zeros" in line]
  assert len(zeros) == 24          # conv_norm_out, conv_out, the last transformer past norm1
  assert all(line.startswith("reference_net: ") for line in zeros)
  shapes = {k: v.shape for k, v in flatten(params["diffusion_net"]).items()}
  assert shapes[("down_blocks_1", "audio_modules_0", "proj_in", "kernel")] == (64, 32)
  assert model["memory"] == dict(heads=2, blocks=1, attentions=2, position_max_len=8,
                                 decay=0.9, groups=32)
  assert model["emotion"]["classes"] == 9 and model["identity"]["encoder"] == "given"
  assert json.loads((out / "config.json").read_text())["format"] == "talkjax.memo/1"


# ---- the SD blocks against diffusers ------------------------------------------------------

def _spatial_inputs(batch=2, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal((batch, 8, 8, 4)).astype(np.float32),
          np.array([3.0, 700.0][:batch], np.float32),
          rng.standard_normal((batch, 4, 32)).astype(np.float32))


def _torch_unet(tensors, fill_seed=None):
  torch.manual_seed(0)
  unet = TorchUNet(**layout.SPATIAL).eval()
  state = {k: torch.from_numpy(np.asarray(v)) for k, v in tensors.items()}
  if fill_seed is not None:      # parameters the release leaves out, random: they must not count
    g = torch.Generator().manual_seed(fill_seed)
    for k, v in unet.state_dict().items():
      state.setdefault(k, torch.randn(v.shape, generator=g))
  unet.load_state_dict(state, strict=True)
  return unet


def test_diffusion_net_spatial_layers_equal_diffusers_unet(release, converted):
  _, written = release
  _, model, params = converted
  spatial = {k: v for k, v in written["diffusion_net"].items()
             if ".audio_modules." not in k and ".motion_modules." not in k}
  x, t, ctx = _spatial_inputs()
  with torch.no_grad():
    want = _torch_unet(spatial)(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(t),
                                torch.from_numpy(ctx)).sample.numpy().transpose(0, 2, 3, 1)
  plain = {k: v for k, v in flatten(params["diffusion_net"]).items()
           if not any(p.startswith(("audio_modules_", "motion_modules_")) for p in k)}
  ours = UNet2DConditionModel(UNetConfig(**model["unet"]))
  got = jax.jit(ours.apply)({"params": unflatten(plain)}, x, t, ctx)
  assert _rel(got, want) < 1e-4


def test_reference_net_features_equal_diffusers_attn1_inputs_and_layer_outputs(release,
                                                                               converted):
  _, written = release
  _, model, params = converted
  torch_unet = _torch_unet(written["reference_net"], fill_seed=7)
  captured = {}

  def keep(name, pre):
    def hook(module, args, kwargs=None, output=None):
      captured[name] = (args[0] if pre else output).detach().numpy()
    return hook

  for name, module in torch_unet.named_modules():
    if name.endswith(".attn1"):
      module.register_forward_pre_hook(keep(name[:-len(".attn1")], True))
    elif ".resnets." in name and name.count(".") == 3 and ".attentions." not in name:
      module.register_forward_hook(lambda m, a, o, name=name: captured.__setitem__(
          name, o.detach().numpy()))
  rng = np.random.default_rng(1)
  b, p = 2, 3
  frames = rng.standard_normal((b, 1 + p, 8, 8, 4)).astype(np.float32)
  identity = rng.standard_normal((b, 12)).astype(np.float32)
  memo = _memo(model)
  tokens = memo.image_tokens(params, identity)
  reference, past = jax.jit(memo.condition_from)(params["reference_net"], frames[:, 0],
                                                 frames[:, 1:], tokens)
  flat = frames.reshape((b * (1 + p),) + frames.shape[2:]).transpose(0, 3, 1, 2)
  ctx = np.repeat(np.asarray(tokens), 1 + p, axis=0)
  with torch.no_grad():
    torch_unet(torch.from_numpy(flat), torch.zeros(b * (1 + p)), torch.from_numpy(ctx))
  torch_name = lambda site: re.sub(r"_(\d+)", r".\1", site).replace("/", ".")
  checked = 0
  for site, got in reference.items():
    want = captured[torch_name(site)].reshape((b, 1 + p) + got.shape[1:])[:, 0]
    assert _rel(got, want) < 1e-4, site
    checked += 1
  for site, got in past.items():
    key = torch_name(site)
    if ".resnets." in key:
      want = captured[key].transpose(0, 2, 3, 1)
    else:
      want = captured[torch_name(site + "/transformer_blocks_0")]
    want = want.reshape((b, 1 + p) + got.shape[2:])[:, 1:]
    assert _rel(got, want) < 1e-4, site
    checked += 1
  assert checked == len(reference) + len(past) > 10


# ---- custom modules against float64 NumPy, reading the release's tensors by name -----------

def _lin(x, sd, name):
  y = x @ np.asarray(sd[name + ".weight"], np.float64).T
  return y + sd[name + ".bias"] if name + ".bias" in sd else y


def _conv1x1(x, sd, name):              # x (N, H, W, C) channels last
  w = np.asarray(sd[name + ".weight"], np.float64)[:, :, 0, 0]
  return x @ w.T + sd[name + ".bias"]


def _ln(x, sd=None, name=None, eps=1e-5):
  y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
  return y if sd is None else y * sd[name + ".weight"] + sd[name + ".bias"]


def _gn(x, sd, name, groups, eps=1e-6):
  n, h, w, c = x.shape
  g = x.reshape(n, h, w, groups, c // groups)
  g = (g - g.mean((1, 2, 4), keepdims=True)) / np.sqrt(g.var((1, 2, 4), keepdims=True) + eps)
  return g.reshape(x.shape) * sd[name + ".weight"] + sd[name + ".bias"]


def _geglu(x, sd, name):
  h = _lin(x, sd, name + ".net.0.proj")
  value, gate = np.split(h, 2, axis=-1)
  return _lin(value * 0.5 * gate * (1 + erf(gate / np.sqrt(2))), sd, name + ".net.2")


def _heads(x, heads):
  return x.reshape(x.shape[:-1] + (heads, x.shape[-1] // heads))


def _softmax(x, axis):
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def _attention(q, k, v, heads):
  q, k, v = (_heads(a, heads) for a in (q, k, v))
  w = _softmax(np.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(q.shape[-1]), -1)
  o = np.einsum("nhqk,nkhd->nqhd", w, v)
  return o.reshape(o.shape[:2] + (-1,))


def _sub(sd, prefix):
  return {k[len(prefix) + 1:]: np.asarray(v, np.float64) for k, v in sd.items()
          if k.startswith(prefix + ".")}


def _numpy_motion(sd, x, past, heads, groups=32):
  """The release's memory module on clip x (B, F, H, W, C) with one remembered clip `past`
  (B, P, H, W, C) folded into an empty memory: linear attention with softmax feature maps,
  the past frame j of P weighing decay^(1 + 2 (P-1-j)) above and decay^(1 + (P-1-j)) below,
  sinusoidal positions on the clip's own frames."""
  b, f, h, w, c = x.shape

  def tokens(a):
    n = a.shape[1]
    y = _lin(_gn(a.reshape(b * n, h, w, c), sd, "norm", groups), sd, "proj_in")
    return y.reshape(b, n, h * w, c).transpose(0, 2, 1, 3).reshape(b * h * w, n, c)

  y, pt = tokens(x), tokens(past)
  p = pt.shape[1]
  age = np.arange(p - 1, -1, -1)
  for i in range(2):
    a, norm = f"transformer_blocks.0.attention_blocks.{i}", f"transformer_blocks.0.norms.{i}"
    hn = _ln(y, sd, norm) + sd[a + ".pos_encoder.pe"][0, :f]
    q = _softmax(_heads(_lin(hn, sd, a + ".to_q"), heads), -1) * (c // heads) ** -0.5
    keys = [_heads(_lin(_ln(pt, sd, norm), sd, a + ".to_k"), heads), _heads(
        _lin(hn, sd, a + ".to_k"), heads)]
    values = [_heads(_lin(_ln(pt, sd, norm), sd, a + ".to_v"), heads),
              _heads(_lin(hn, sd, a + ".to_v"), heads)]
    keys = [_softmax(k, 1) for k in keys]
    k, v = np.concatenate(keys, 1), np.concatenate(values, 1)
    wn = np.concatenate([DECAY ** (1 + 2 * age), np.ones(f)])
    wd = np.concatenate([DECAY ** (1 + age), np.ones(f)])
    scores = np.einsum("nthd,nshd->nhts", q, k)
    out = np.einsum("nhts,s,nshe->nthe", scores, wn, v) / np.einsum(
        "nhts,s->nth", scores, wd)[..., None]
    y = _lin(out.reshape(out.shape[:2] + (-1,)), sd, a + ".to_out.0") + y
  y = _geglu(_ln(y, sd, "transformer_blocks.0.ff_norm"), sd, "transformer_blocks.0.ff") + y
  y = _lin(y, sd, "proj_out").reshape(b, h * w, f, c).transpose(0, 2, 1, 3)
  return y.reshape(x.shape) + x


def test_memory_module_equals_numpy_on_the_release_tensors(release, converted):
  _, written = release
  _, model, params = converted
  prefix = "down_blocks.1.motion_modules.0.temporal_transformer"
  module = networks.memory_module(networks.MemoryConfig(**model["memory"]), 64)
  p = params["diffusion_net"]["down_blocks_1"]["motion_modules_0"]["temporal_transformer"]
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 4, 2, 3, 64)).astype(np.float32)
  past = rng.standard_normal((2, 3, 2, 3, 64)).astype(np.float32)
  memory = jax.jit(lambda p, past: module.apply({"params": p}, module.empty_memory(2, 2, 3),
                                                past, method=type(module).remember))(p, past)
  got = jax.jit(module.apply)({"params": p}, x, memory)
  want = _numpy_motion(_sub(written["diffusion_net"], prefix), x, past, heads=2)
  assert _rel(np.asarray(got) - x, want - x) < 1e-4


def _emo_norm(x, labels, sd, name):
  emb = sd[name + ".class_embedder.embedding_table.weight"][labels]
  shift, scale = np.split(_lin(emb / (1 + np.exp(-emb)), sd, name + ".adaLN_modulation.1"), 2, -1)
  r = x.shape[0] // len(labels)
  return _ln(x) * (1 + np.repeat(scale, r, 0)[:, None]) + np.repeat(shift, r, 0)[:, None]


def _numpy_audio(sd, x, audio, labels, heads, final, groups=8):
  """The release's audio module: EmoAdaLN-normed self-attention per stream, one joint
  attention over [video; audio] (to_out / to_add_out per stream), GEGLU feed-forwards."""
  n, h, w, c = x.shape
  t = _conv1x1(_gn(x, sd, "norm", groups), sd, "proj_in").reshape(n, h * w, -1)
  blk = "transformer_blocks.0"
  a = audio
  hn, an = _emo_norm(t, labels, sd, blk + ".norm1"), _emo_norm(a, labels, sd, blk + ".audio_norm1")
  t = _lin(_attention(*(_lin(hn, sd, f"{blk}.attn1.to_{p}") for p in "qkv"), heads), sd,
           blk + ".attn1.to_out.0") + t
  a = _lin(_attention(*(_lin(an, sd, f"{blk}.audio_attn1.to_{p}") for p in "qkv"), heads), sd,
           blk + ".audio_attn1.to_out.0") + a
  hn, an = _emo_norm(t, labels, sd, blk + ".norm2"), _emo_norm(a, labels, sd, blk + ".audio_norm2")
  qkv = [np.concatenate([_lin(hn, sd, f"{blk}.attn2.to_{p}"),
                         _lin(an, sd, f"{blk}.attn2.add_{p}_proj")], axis=1) for p in "qkv"]
  o = _attention(*qkv, heads)
  t = _lin(o[:, :h * w], sd, blk + ".attn2.to_out.0") + t
  t = _geglu(_ln(t, sd, blk + ".norm3"), sd, blk + ".ff") + t
  out = _conv1x1(t.reshape(n, h, w, -1), sd, "proj_out") + x
  if final:
    return out, None
  a = _lin(o[:, h * w:], sd, blk + ".attn2.to_add_out") + a
  a = _geglu(_ln(a, sd, blk + ".audio_norm3"), sd, blk + ".audio_ff") + a
  return out, a + audio


@pytest.mark.parametrize("site, channels, final", [("down_blocks.1.audio_modules.0", 64, False),
                                                    ("up_blocks.2.audio_modules.1", 32, True)])
def test_audio_module_equals_numpy_on_the_release_tensors(release, converted, site, channels,
                                                          final):
  _, written = release
  _, model, params = converted
  sd = _sub(written["diffusion_net"], site)
  inner = sd["proj_in.weight"].shape[0]
  parts = site.split(".")
  p = params["diffusion_net"][f"{parts[0]}_{parts[1]}"][f"audio_modules_{parts[3]}"]
  module = AudioModule(layout.HEADS, 8, inner, layout.AUDIO_DIM, final=final,
                       num_classes=model["emotion"]["classes"])
  rng = np.random.default_rng(3)
  labels = np.array([2, 9])                       # one emotion, one null
  x = rng.standard_normal((4, 2, 3, channels)).astype(np.float32)   # 2 samples x 2 frames
  audio = rng.standard_normal((4, 5, layout.AUDIO_DIM)).astype(np.float32)
  got, got_audio = jax.jit(module.apply)({"params": p}, x, audio, labels)
  want, want_audio = _numpy_audio(sd, x.astype(np.float64), audio.astype(np.float64), labels,
                                  layout.HEADS, final)
  assert _rel(np.asarray(got) - x, want - x) < 1e-4
  if final:
    assert got_audio is None
  else:
    assert _rel(got_audio, want_audio) < 1e-4


def test_projections_equal_numpy_on_the_release_tensors(release, converted):
  _, written = release
  _, model, params = converted
  memo = _memo(model)
  rng = np.random.default_rng(4)
  identity = rng.standard_normal((3, 12)).astype(np.float32)
  sd = {k: np.asarray(v, np.float64) for k, v in written["image_proj"].items()}
  want = _ln(_lin(identity, sd, "proj").reshape(3, 4, 32), sd, "norm")
  assert _rel(memo.image_tokens(params, identity), want) < 1e-4
  speech = rng.standard_normal((2, 3, 5, 2, 8)).astype(np.float32)   # (B, F, window, layers, C)
  sd = {k: np.asarray(v, np.float64) for k, v in written["audio_proj"].items()}
  h = np.maximum(_lin(speech.reshape(6, -1), sd, "proj1"), 0)
  h = np.maximum(_lin(h, sd, "proj2"), 0)
  want = _ln(_lin(h, sd, "proj3").reshape(2, 3, 4, layout.AUDIO_DIM), sd, "norm")
  assert _rel(memo.audio_tokens(params, speech), want) < 1e-4
  sd = {k: np.asarray(v, np.float64) for k, v in written["misc/audio_emotion_classifier"].items()}
  features = rng.standard_normal((3, 1024))
  want = _lin(np.maximum(_lin(features, sd, "layers.fc1"), 0), sd, "layers.fc2")
  c = params["emotion_classifier"]["layers"]
  got = np.maximum(features @ c["fc1"]["kernel"] + c["fc1"]["bias"], 0) @ c["fc2"]["kernel"] \
      + c["fc2"]["bias"]
  assert _rel(got, want) < 1e-6


# ---- bad input ------------------------------------------------------------------------

def _copy(release, tmp_path):
  src = tmp_path / "release"
  shutil.copytree(release[0], src)
  return src


def _fails(src, tmp_path, capsys, *phrases):
  out = tmp_path / "out"
  assert main(["convert", "memo", "--src", str(src), "--out", str(out)]) == 2
  err = capsys.readouterr().err
  for phrase in phrases:
    assert phrase in err, err
  assert not (out / "params").exists()
  return err


def test_a_missing_subfolder_is_named(release, tmp_path, capsys):
  src = _copy(release, tmp_path)
  shutil.rmtree(src / "audio_proj")
  _fails(src, tmp_path, capsys, "missing audio_proj/", "huggingface-cli download")


def test_a_truncated_weight_file_names_the_file(release, tmp_path, capsys):
  src = _copy(release, tmp_path)
  weights = src / "diffusion_net" / "diffusion_pytorch_model.safetensors"
  weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
  _fails(src, tmp_path, capsys, "diffusion_pytorch_model.safetensors", "cannot read")


def test_a_misshapen_tensor_is_named_with_both_shapes(release, tmp_path, capsys):
  from safetensors.numpy import save_file
  src = _copy(release, tmp_path)
  tensors = dict(release[1]["image_proj"])
  tensors["proj.weight"] = np.zeros((128, 13), np.float32)
  save_file(tensors, str(src / "image_proj" / "diffusion_pytorch_model.safetensors"))
  _fails(src, tmp_path, capsys, "mis-shaped", "proj.weight (128, 13)", "(12, 128)")


def test_a_bin_with_executable_pickle_content_is_refused(release, tmp_path, capsys):
  src = _copy(release, tmp_path)
  folder = src / "audio_proj"
  (folder / "diffusion_pytorch_model.safetensors").unlink()

  class Payload:
    def __reduce__(self):
      import os
      return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

  with zipfile.ZipFile(folder / "diffusion_pytorch_model.bin", "w") as archive:
    archive.writestr("archive/data.pkl", pickle.dumps({"proj1.weight": Payload()}))
  _fails(src, tmp_path, capsys, "diffusion_pytorch_model.bin", "refusing to run it")
  assert not (tmp_path / "pwned").exists()


def test_a_config_talkjax_cannot_run_is_refused_by_name(release, tmp_path, capsys):
  src = _copy(release, tmp_path)
  config = json.loads((src / "diffusion_net" / "config.json").read_text())
  config["use_inflated_groupnorm"] = False
  (src / "diffusion_net" / "config.json").write_text(json.dumps(config))
  _fails(src, tmp_path, capsys, "use_inflated_groupnorm=false")


# ---- sampling the converted release ---------------------------------------------------------

@pytest.fixture(scope="module")
def sampling_parts(release, tmp_path_factory):
  """What the release samples with beside its networks, tiny and random, in their formats:
  a diffusers VAE folder, a Hugging Face wav2vec2 folder (2 layers x 8, the width the tiny
  audio_proj reads) and the face recogniser in misc/ (12-d: the tiny image_proj's input)."""
  from diffusers import AutoencoderKL
  from transformers import Wav2Vec2Config, Wav2Vec2Model
  folder = tmp_path_factory.mktemp("parts")
  torch.manual_seed(0)
  AutoencoderKL(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2).save_pretrained(folder / "vae")
  config = Wav2Vec2Config(hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=16, conv_dim=(8, 8, 8), conv_kernel=(10, 3, 3),
                          conv_stride=(5, 2, 2), num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=2, vocab_size=12)
  Wav2Vec2Model(config).eval().save_pretrained(folder / "wav2vec2")
  net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.Flatten(),
                            torch.nn.Linear(4 * 14 * 14, 12)).eval()
  face = release[0] / "misc" / "face_analysis" / "models" / "glintr100.onnx"
  face.parent.mkdir(parents=True, exist_ok=True)
  torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(face), opset_version=11,
                    input_names=["input.1"], output_names=["embedding"],
                    dynamic_axes={"input.1": {0: "batch"}}, dynamo=False)
  return folder


@pytest.fixture(scope="module")
def sampling_release(release, sampling_parts, tmp_path_factory):
  """The release converted with everything it samples with (VAE, wav2vec2, the face
  recogniser, emotion2vec: 1024 wide as the classifier reads, one block so the file stays
  small), converted once for the sampling tests; -> (folder, what convert printed, the
  PyTorch emotion2vec)."""
  import contextlib
  import io
  import emotion2vec_layout
  folder = tmp_path_factory.mktemp("sampling")
  reference = emotion2vec_layout.write_folder(
      folder / "emotion2vec", emotion2vec_layout.EMOTION2VEC, embed_dim=1024, num_heads=16,
      depth=1, prenet_depth=0, mlp_ratio=1.0)
  out, printed = folder / "memo", io.StringIO()
  with contextlib.redirect_stdout(printed):
    assert main(["convert", "memo", "--src", str(release[0]), "--out", str(out),
                 "--vae", str(sampling_parts / "vae"), "--wav2vec2",
                 str(sampling_parts / "wav2vec2"), "--emotion2vec",
                 str(folder / "emotion2vec")]) == 0
  return out, printed.getvalue(), reference


@pytest.fixture(scope="module")
def sharded(sampling_release):
  """The converted model on 8 devices (FSDP x tensor): one compiled sampler for the tests."""
  from talkjax.models import load_generator
  from talkjax.pipelines.sampler import Sampler
  hook, params = load_generator(sampling_release[0])
  return hook, params, Sampler(hook, params, mesh={"data": 2, "fsdp": 2, "tensor": 2})


def test_the_converted_release_samples_a_video_with_the_sample_command(sampling_release,
                                                                      sharded, tmp_path, capsys):
  import wave
  out, printed, _ = sampling_release
  assert "talkjax sample --checkpoint" in printed
  assert (out / "face" / "glintr100.onnx").is_file()
  rng = np.random.default_rng(0)
  image = tmp_path / "portrait.png"
  from PIL import Image
  Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(image)
  speech = tmp_path / "speech.wav"
  with wave.open(str(speech), "wb") as w:
    w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    w.writeframes((rng.standard_normal(16000) * 3000).astype(np.int16).tobytes())
  video = tmp_path / "video.mp4"
  assert main(["sample", "--checkpoint", str(out), "--image", str(image), "--audio",
               str(speech), "--out", str(video), "--emotion", "happy", "--set", "steps=2",
               "--png", "--mesh", "data=2", "fsdp=2", "tensor=2"]) == 0
  printed = capsys.readouterr()
  assert "no face found in the portrait" in printed.out + printed.err   # zeros, with a warning
  frames = sorted((tmp_path / "video").glob("*.png"))
  assert video.stat().st_size > 0 and len(frames) == 25               # 1 s at 25 fps
  first = np.asarray(Image.open(frames[0]))
  assert first.shape == (16, 16, 3)        # the UNet's sample_size 8 x the VAE's factor 2
  # The command laid the networks out over its 8 devices (FSDP x tensor) in bf16 as a
  # sampler given that mesh does, and made that sampler's video. (Sharded sampling equals
  # single-device sampling: tests/pipelines/test_sharded_sampling.py; one program here,
  # as a second compilation of the release's sampler cost the suite about a minute.)
  from talkjax.pipelines.pipeline import Pipeline
  hook, _, sampler = sharded
  assert hook.config.compute_dtype == "bfloat16"
  kernel = sampler.params["memo"]["diffusion_net"]["mid_block"]["resnets_0"]["conv1"]["kernel"]
  assert {s.data.shape for s in kernel.addressable_shards} != {kernel.shape}   # split
  result = Pipeline(sampler)(str(image), str(speech), emotion="happy", seed=0, steps=2)
  cli = np.stack([np.asarray(Image.open(f)) for f in frames])
  np.testing.assert_array_equal(result.frames, cli)


def test_the_converted_release_reads_emotion_from_the_audio_as_the_release_does(
    release, sampling_release, sharded, tmp_path):
  """With --emotion2vec, a window's label comes from FunASR's emotion2vec and the release's
  classifier (logits equal the PyTorch pair's, layer-normed window, mean feature), and a
  video sampled without --emotion is the one sampled with the label read from its audio."""
  from PIL import Image

  from talkjax.models.memo.release_emotion import ReleaseEmotionReader
  from talkjax.pipelines.pipeline import Pipeline
  _, printed, reference = sampling_release
  assert "without --emotion2vec" not in printed
  hook, params, sampler = sharded
  assert isinstance(hook.emotion_reader, ReleaseEmotionReader)
  rng = np.random.default_rng(3)
  window = (0.3 * rng.standard_normal((2, hook.emotion_reader.window))).astype(np.float32)
  got = np.asarray(jax.jit(hook.emotion_reader.logits)(params["emotion"], jnp.asarray(window)))
  sd = {k: torch.from_numpy(v) for k, v in
        release[1]["misc/audio_emotion_classifier"].items()}
  with torch.no_grad():
    x = torch.from_numpy(window)
    feats = torch.stack([reference.extract_features(
        torch.nn.functional.layer_norm(row, row.shape)[None])["x"][0].mean(0) for row in x])
    hidden = torch.relu(feats @ sd["layers.fc1.weight"].T + sd["layers.fc1.bias"])
    want = (hidden @ sd["layers.fc2.weight"].T + sd["layers.fc2.bias"]).numpy()
  assert _rel(got, want) < 1e-4
  # without --emotion the video takes the label read from its audio (one clip: 0.64 s)
  image = tmp_path / "portrait.png"
  Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(image)
  speech = (0.3 * rng.standard_normal(10240)).astype(np.float32)
  read = Pipeline(sampler)(str(image), speech, seed=0, steps=2)
  padded = np.zeros((1, hook.emotion_reader.window), np.float32)
  start = (hook.emotion_reader.window - speech.size) // 2
  padded[0, start:start + speech.size] = speech
  label = int(jax.jit(hook.emotion_reader)(params["emotion"], jnp.asarray(padded))[0])
  from talkjax.audio.emotion import EMOTIONS
  given = Pipeline(sampler)(str(image), speech, emotion=EMOTIONS[label], seed=0, steps=2)
  other = Pipeline(sampler)(str(image), speech, emotion=EMOTIONS[(label + 1) % 9], seed=0,
                            steps=2)
  assert np.array_equal(read.frames, given.frames)
  assert not np.array_equal(read.frames, other.frames)
